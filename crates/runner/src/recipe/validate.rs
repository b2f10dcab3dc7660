//! Phase 2: the raw recipe checked against the [`Registry`], every problem collected with its
//! span (a user fixes a recipe in one round, not one error per run), and compiled into the
//! validated [`Recipe`]. One function per table; checks run in source order within each, and
//! the diagnostics are sorted by position at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use globset::GlobMatcher;
use regex::Regex;
use toml::Spanned;
use weightkin_core::{ParamValue, Params, Registry};

use super::diagnostic::{suggest, Diagnostics};
use super::raw::{RawCompare, RawGrid, RawModel, RawRecipe, RawReport};
use super::{
    compile_glob, Align, BuiltMetric, CompareSpec, ComponentSpec, Found, GridSpec, ModelSpec,
    PairingMode, Permutation, Recipe, RenameRule, DEFAULT_FORMATS, DEFAULT_METRICS,
};
use crate::report::ReportFormat;

/// Validates `raw`; problems go to `diags` (the returned recipe is only used if there are
/// none).
pub(super) fn validate(
    raw: RawRecipe,
    base_dir: &Path,
    registry: &Registry,
    diags: &mut Diagnostics<'_>,
) -> Recipe {
    let audit_span = raw.audit.span();
    let audit = raw.audit.into_inner();
    if audit.name.get_ref().trim().is_empty() {
        diags.push(audit.name.span(), "`audit.name` must not be empty");
    }
    let models: BTreeMap<String, ModelSpec> = raw
        .models
        .into_iter()
        .map(|(name, model)| {
            let spec = model_spec(&name, model.into_inner(), base_dir, registry, diags);
            (name, spec)
        })
        .collect();
    if raw.compare.is_empty() {
        diags.push(
            audit_span,
            "the recipe has no `[[compare]]` table: nothing to audit",
        );
    }
    let compares = raw
        .compare
        .into_iter()
        .enumerate()
        .map(|(i, cmp)| compare_spec(i, cmp, &models, registry, diags))
        .collect();
    let formats = report_formats(raw.report, diags);
    Recipe {
        name: audit.name.into_inner(),
        description: audit.description,
        blake3: blake3::hash(diags.source.as_bytes()).to_hex().to_string(),
        source: diags.source.to_owned(),
        models,
        compares,
        formats,
    }
}

/// `[models.NAME]`.
fn model_spec(
    name: &str,
    model: RawModel,
    base_dir: &Path,
    registry: &Registry,
    diags: &mut Diagnostics<'_>,
) -> ModelSpec {
    if model.path.get_ref().is_empty() {
        diags.push(
            model.path.span(),
            format!("model `{name}`: `path` is empty"),
        );
    }
    let format = model.format.map(|f| {
        if registry.format(f.get_ref()).is_none() {
            diags.push(
                f.span(),
                format!(
                    "model `{name}`: unknown format `{}`{}",
                    f.get_ref(),
                    suggest(f.get_ref(), registry.formats().iter().map(|f| f.name()))
                ),
            );
        }
        f.into_inner()
    });
    let rename = model
        .rename
        .into_iter()
        .filter_map(|r| {
            let r = r.into_inner();
            let found = found(name, r.paired_by, r.candidates, diags);
            match Regex::new(r.from.get_ref()) {
                Ok(from) => Some(RenameRule {
                    from,
                    to: r.to,
                    found,
                }),
                Err(e) => {
                    diags.push(
                        r.from.span(),
                        format!("model `{name}`: invalid rename regex: {e}"),
                    );
                    None
                }
            }
        })
        .collect();
    let which = format!("model `{name}`");
    let split_m = globs(&model.split, &which, "split", diags);
    let transpose_m = globs(&model.transpose, &which, "transpose", diags);
    let heads = head_counts(&which, model.heads, model.kv_heads, diags);
    let span = model.path.span();
    let given = model.path.into_inner();
    // An `hf://` reference names a hub repository, never a file beside the recipe.
    let is_hub = weightkin_hub::HfRef::is_hf(&given);
    let hub = is_hub
        .then(|| weightkin_hub::HfRef::parse(&given))
        .and_then(|parsed| {
            parsed
                .map_err(|e| diags.push(span, format!("model `{name}`: {e}")))
                .ok()
        });
    ModelSpec {
        path: if is_hub {
            PathBuf::from(&given)
        } else {
            base_dir.join(&given)
        },
        hub,
        path_as_given: given,
        format,
        rename,
        split: unwrap_all(model.split),
        split_m,
        transpose: unwrap_all(model.transpose),
        transpose_m,
        heads,
    }
}

/// `heads` and `kv-heads`: positive, `kv-heads` dividing `heads` (default: equal), and
/// `kv-heads` only with `heads`.
fn head_counts(
    which: &str,
    heads: Option<Spanned<i64>>,
    kv: Option<Spanned<i64>>,
    diags: &mut Diagnostics,
) -> Option<(usize, usize)> {
    let Some(h) = heads else {
        if let Some(kv) = kv {
            diags.push(
                kv.span(),
                format!("{which}: `kv-heads` needs `heads` (the number of query heads)"),
            );
        }
        return None;
    };
    let (span, hv) = (h.span(), *h.get_ref());
    let kvv = kv.as_ref().map_or(hv, |k| *k.get_ref());
    let kv_span = kv.as_ref().map_or(span.clone(), |k| k.span());
    if !(1..=65_536).contains(&hv) {
        diags.push(
            span,
            format!("{which}: `heads` must be 1 to 65536, not {hv}"),
        );
        return None;
    }
    if kvv < 1 || hv % kvv != 0 {
        diags.push(
            kv_span,
            format!("{which}: `kv-heads` must be a positive divisor of `heads` ({hv}), not {kvv}"),
        );
        return None;
    }
    Some((hv as usize, kvv as usize))
}

/// A rename rule's `paired-by` and `candidates`: both or neither.
fn found(
    model: &str,
    paired_by: Option<Spanned<String>>,
    candidates: Option<Spanned<i64>>,
    diags: &mut Diagnostics<'_>,
) -> Option<Found> {
    use crate::report::PairMethod;
    let method = match &paired_by {
        None => None,
        Some(m) => match m.get_ref().as_str() {
            "normalised" => Some(PairMethod::Normalised),
            "structure" => Some(PairMethod::Structure),
            "content" => Some(PairMethod::Content),
            other => {
                diags.push(
                    m.span(),
                    format!(
                        "model `{model}`: unknown `paired-by` `{other}`: expected \
                         \"normalised\", \"structure\" or \"content\"{}",
                        suggest(other, ["normalised", "structure", "content"].into_iter())
                    ),
                );
                None
            }
        },
    };
    let candidates = match &candidates {
        None => None,
        Some(c) => match usize::try_from(*c.get_ref()) {
            Ok(k) if k >= 1 => Some(k),
            _ => {
                diags.push(
                    c.span(),
                    format!(
                        "model `{model}`: `candidates` must be a whole number ≥ 1, not {}",
                        c.get_ref()
                    ),
                );
                None
            }
        },
    };
    match (method, candidates, &paired_by) {
        (Some(method), Some(candidates), _) => Some(Found { method, candidates }),
        (Some(method), None, _) if method != PairMethod::Content => Some(Found {
            method,
            candidates: 1,
        }),
        (Some(_), None, Some(m)) => {
            diags.push(
                m.span(),
                format!(
                    "model `{model}`: a rename rule found by content needs `candidates` (how \
                     many the search chose among)"
                ),
            );
            None
        }
        _ => None,
    }
}

/// Compiles a list of globs; an invalid one is reported as "`which`: invalid `what` glob".
fn globs(
    list: &[Spanned<String>],
    which: &str,
    what: &str,
    diags: &mut Diagnostics<'_>,
) -> Vec<GlobMatcher> {
    list.iter()
        .filter_map(|g| match compile_glob(g.get_ref()) {
            Ok(m) => Some(m),
            Err(e) => {
                diags.push(g.span(), format!("{which}: invalid {what} glob: {e}"));
                None
            }
        })
        .collect()
}

fn unwrap_all(list: Vec<Spanned<String>>) -> Vec<String> {
    list.into_iter().map(Spanned::into_inner).collect()
}

/// Builds a compare's metrics: looks each up in the registry and builds it with the
/// compare's `params.NAME` table.
struct MetricBuilder<'r> {
    registry: &'r Registry,
    params: &'r BTreeMap<String, Spanned<toml::Table>>,
    which: &'r str,
}

impl MetricBuilder<'_> {
    fn build(&self, m: &Spanned<String>, diags: &mut Diagnostics<'_>) -> Option<BuiltMetric> {
        let which = self.which;
        let Some(spec) = self.registry.metric(m.get_ref()) else {
            diags.push(
                m.span(),
                format!(
                    "{which}: unknown metric `{}`{}",
                    m.get_ref(),
                    suggest(m.get_ref(), self.registry.metrics().iter().map(|s| s.name))
                ),
            );
            return None;
        };
        let (params, span) = match self.params.get(spec.name) {
            Some(t) => (to_params(t.get_ref()), t.span()),
            None => (Ok(Params::new()), m.span()),
        };
        match params.and_then(|p| {
            (spec.build)(&p)
                .map(|metric| (metric, p))
                .map_err(|e| e.to_string())
        }) {
            Ok((metric, params)) => Some(BuiltMetric {
                spec,
                metric,
                params,
            }),
            Err(e) => {
                diags.push(span, format!("{which}: {e}"));
                None
            }
        }
    }
}

/// One `[[compare]]` (the `i`-th).
fn compare_spec(
    i: usize,
    cmp: Spanned<RawCompare>,
    models: &BTreeMap<String, ModelSpec>,
    registry: &Registry,
    diags: &mut Diagnostics<'_>,
) -> CompareSpec {
    let cmp_span = cmp.span();
    let cmp = cmp.into_inner();
    let which = format!("compare #{}", i + 1);
    for side in [&cmp.a, &cmp.b] {
        if !models.contains_key(side.get_ref()) {
            diags.push(
                side.span(),
                format!(
                    "{which}: no model named `{}`{}",
                    side.get_ref(),
                    suggest(side.get_ref(), models.keys().map(String::as_str))
                ),
            );
        }
    }
    let include_m = globs(&cmp.include, &which, "include", diags);
    let exclude_m = globs(&cmp.exclude, &which, "exclude", diags);
    let builder = MetricBuilder {
        registry,
        params: &cmp.params,
        which: &which,
    };
    // Metric names seen, for the duplicate and the unused-`params` checks.
    let mut seen = BTreeSet::new();
    let metrics = metrics(cmp.metrics, cmp_span, &builder, &mut seen, diags);
    let grid_given = cmp.grid.is_some();
    let grid = cmp
        .grid
        .and_then(|g| grid_spec(g, &builder, &mut seen, diags));
    let align = align(cmp.align, grid_given, &which, diags);
    let pairing = pairing(cmp.pairing, &cmp.a, &cmp.b, models, &which, diags);
    let permutation = permutation(cmp.permutation, &which, diags);
    check_references(&cmp.references, &cmp.a, &cmp.b, models, &which, diags);
    let evidence_m = globs(&cmp.evidence, &which, "evidence", diags);
    let not_evidence_m = globs(&cmp.not_evidence, &which, "not-evidence", diags);
    let components: Vec<ComponentSpec> = cmp
        .components
        .into_iter()
        .map(|c| {
            let c = c.into_inner();
            if c.include.is_empty() {
                diags.push(
                    c.name.span(),
                    format!(
                        "{which}: component `{}` has no `include` globs",
                        c.name.get_ref()
                    ),
                );
            }
            ComponentSpec {
                include_m: globs(&c.include, &which, "component", diags),
                name: c.name.into_inner(),
                include: unwrap_all(c.include),
            }
        })
        .collect();
    for (name, table) in &cmp.params {
        if !seen.contains(name.as_str()) {
            diags.push(
                table.span(),
                format!(
                    "{which}: `params.{name}` given, but `{name}` is neither in `metrics` \
                     nor the grid metric"
                ),
            );
        }
    }
    let name = cmp
        .name
        .unwrap_or_else(|| format!("{} ↔ {}", cmp.a.get_ref(), cmp.b.get_ref()));
    CompareSpec {
        name,
        a: cmp.a.into_inner(),
        b: cmp.b.into_inner(),
        include: unwrap_all(cmp.include),
        exclude: unwrap_all(cmp.exclude),
        include_m,
        exclude_m,
        metrics,
        grid,
        align,
        pairing,
        permutation,
        references: unwrap_all(cmp.references),
        evidence: unwrap_all(cmp.evidence),
        evidence_m,
        not_evidence: unwrap_all(cmp.not_evidence),
        not_evidence_m,
        components,
    }
}

/// `permutation = "off" | "auto"`, default `off`: aligning units costs an assignment per
/// layer and its null (three per layer), and changes the null of the aligned classes.
fn permutation(
    given: Option<Spanned<String>>,
    which: &str,
    diags: &mut Diagnostics<'_>,
) -> Permutation {
    let Some(given) = given else {
        return Permutation::Off;
    };
    match given.get_ref().as_str() {
        "off" => Permutation::Off,
        "auto" => Permutation::Auto,
        other => {
            diags.push(
                given.span(),
                format!(
                    "{which}: unknown `permutation` `{other}`: expected \"off\" or \"auto\"{}",
                    suggest(other, ["off", "auto"].into_iter())
                ),
            );
            Permutation::Off
        }
    }
}

/// `pairing = "auto" | "names"`. The default is `auto`, unless a model of the compare has
/// rename rules: they say how the user pairs, so `names`. Asking for `auto` together with
/// rename rules is an error (the two would contradict each other).
fn pairing(
    given: Option<Spanned<String>>,
    a: &Spanned<String>,
    b: &Spanned<String>,
    models: &BTreeMap<String, ModelSpec>,
    which: &str,
    diags: &mut Diagnostics<'_>,
) -> PairingMode {
    let renamed: Vec<&str> = [a, b]
        .iter()
        .map(|s| s.get_ref().as_str())
        .filter(|m| models.get(*m).is_some_and(|s| !s.rename.is_empty()))
        .collect();
    let Some(given) = given else {
        return if renamed.is_empty() {
            PairingMode::Auto
        } else {
            PairingMode::Names
        };
    };
    match given.get_ref().as_str() {
        "names" => PairingMode::Names,
        "auto" => {
            if let Some(m) = renamed.first() {
                diags.push(
                    given.span(),
                    format!(
                        "{which}: `pairing = \"auto\"` cannot be combined with the rename \
                         rules of model `{m}`: remove the rules (automatic pairing finds the \
                         correspondence itself) or use `pairing = \"names\"`"
                    ),
                );
            }
            PairingMode::Auto
        }
        other => {
            diags.push(
                given.span(),
                format!(
                    "{which}: unknown `pairing` `{other}`: expected \"auto\" or \"names\"{}",
                    suggest(other, ["auto", "names"].into_iter())
                ),
            );
            PairingMode::Names
        }
    }
}

/// `metrics = [...]` (default [`DEFAULT_METRICS`], spanned at the compare table), each built
/// once; names go into `seen`.
fn metrics(
    list: Option<Spanned<Vec<Spanned<String>>>>,
    cmp_span: std::ops::Range<usize>,
    builder: &MetricBuilder<'_>,
    seen: &mut BTreeSet<String>,
    diags: &mut Diagnostics<'_>,
) -> Vec<BuiltMetric> {
    let which = builder.which;
    let names: Vec<Spanned<String>> = match list {
        Some(list) => {
            if list.get_ref().is_empty() {
                diags.push(list.span(), format!("{which}: `metrics` is empty"));
            }
            list.into_inner()
        }
        None => DEFAULT_METRICS
            .iter()
            .map(|m| Spanned::new(cmp_span.clone(), (*m).to_owned()))
            .collect(),
    };
    let mut metrics = Vec::new();
    for m in &names {
        if !seen.insert(m.get_ref().clone()) {
            diags.push(
                m.span(),
                format!("{which}: metric `{}` is listed twice", m.get_ref()),
            );
            continue;
        }
        metrics.extend(builder.build(m, diags));
    }
    metrics
}

/// `grid = { metric, classes }`; `None` when its metric cannot be built (reported).
fn grid_spec(
    g: Spanned<RawGrid>,
    builder: &MetricBuilder<'_>,
    seen: &mut BTreeSet<String>,
    diags: &mut Diagnostics<'_>,
) -> Option<GridSpec> {
    let span = g.span();
    let g = g.into_inner();
    let metric_name = g
        .metric
        .unwrap_or_else(|| Spanned::new(span, weightkin_metrics::pearson::NAME.to_owned()));
    seen.insert(metric_name.get_ref().clone());
    let classes_m = globs(&g.classes, builder.which, "grid class", diags);
    let metric = builder.build(&metric_name, diags)?;
    Some(GridSpec {
        metric,
        classes: unwrap_all(g.classes),
        classes_m,
    })
}

/// `align = "index" | "auto"` (`auto` needs a grid).
fn align(
    value: Option<Spanned<String>>,
    grid_given: bool,
    which: &str,
    diags: &mut Diagnostics<'_>,
) -> Align {
    let Some(a) = value else {
        return Align::Index;
    };
    match a.get_ref().as_str() {
        "index" => Align::Index,
        "auto" => {
            if !grid_given {
                diags.push(
                    a.span(),
                    format!(
                        "{which}: `align = \"auto\"` needs a `grid` to align from \
                         (add `grid = {{ metric = \"pearson\" }}`)"
                    ),
                );
            }
            Align::Auto
        }
        other => {
            diags.push(
                a.span(),
                format!(
                    "{which}: unknown `align` value `{other}`{}",
                    suggest(other, ["index", "auto"])
                ),
            );
            Align::Index
        }
    }
}

/// `references = [...]`: third models, declared, and not a side of the comparison.
fn check_references(
    references: &[Spanned<String>],
    a: &Spanned<String>,
    b: &Spanned<String>,
    models: &BTreeMap<String, ModelSpec>,
    which: &str,
    diags: &mut Diagnostics<'_>,
) {
    for r in references {
        if !models.contains_key(r.get_ref()) {
            diags.push(
                r.span(),
                format!(
                    "{which}: no model named `{}` for `references`{}",
                    r.get_ref(),
                    suggest(r.get_ref(), models.keys().map(String::as_str))
                ),
            );
        } else if r.get_ref() == a.get_ref() || r.get_ref() == b.get_ref() {
            diags.push(
                r.span(),
                format!(
                    "{which}: reference `{}` is a side of the comparison; a reference must \
                     be a third model known to be independent of A",
                    r.get_ref()
                ),
            );
        }
    }
}

/// `[report] formats` (default [`DEFAULT_FORMATS`]), sorted and deduplicated.
fn report_formats(report: Option<RawReport>, diags: &mut Diagnostics<'_>) -> Vec<ReportFormat> {
    let mut formats = BTreeSet::new();
    match report.and_then(|r| r.formats) {
        None => formats.extend(DEFAULT_FORMATS.iter().copied()),
        Some(list) => {
            for f in list {
                match ReportFormat::parse(f.get_ref()) {
                    Some(fmt) => {
                        formats.insert(fmt);
                    }
                    None => diags.push(
                        f.span(),
                        format!(
                            "unknown report format `{}`{}",
                            f.get_ref(),
                            suggest(f.get_ref(), ReportFormat::ALL.iter().map(|f| f.name()))
                        ),
                    ),
                }
            }
        }
    }
    formats.into_iter().collect()
}

/// A `params.NAME` table as metric parameters.
fn to_params(table: &toml::Table) -> Result<Params, String> {
    table
        .iter()
        .map(|(k, v)| {
            let v = match v {
                toml::Value::Boolean(b) => ParamValue::Bool(*b),
                toml::Value::Integer(i) => ParamValue::Integer(*i),
                toml::Value::Float(f) => ParamValue::Float(*f),
                toml::Value::String(s) => ParamValue::String(s.clone()),
                other => {
                    return Err(format!(
                        "parameter `{k}`: expected a boolean, integer, float or string, found {}",
                        other.type_str()
                    ))
                }
            };
            Ok((k.clone(), v))
        })
        .collect()
}
