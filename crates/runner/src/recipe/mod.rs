//! Audit recipes: TOML in, a validated [`Recipe`] out.
//!
//! Three phases, as in helix's and nushell's config handling:
//! 1. **parse** into raw serde structs ([`RawRecipe`]) with `deny_unknown_fields` and spans;
//! 2. **validate** against the [`Registry`], collecting *every* problem with its line and
//!    column, so a user fixes a recipe in one round instead of one error per run;
//! 3. the result, [`Recipe`], holds compiled regexes, globs and built metrics: nothing
//!    downstream re-checks it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobMatcher};
use regex::Regex;
use serde::Deserialize;
use toml::Spanned;
use weightkin_core::{Metric, MetricSpec, ParamValue, Params, Registry};

use crate::report::ReportFormat;

mod adhoc;

pub use adhoc::adhoc_recipe;

/// Metrics a `[[compare]]` uses when it lists none.
pub const DEFAULT_METRICS: &[&str] = &[
    weightkin_metrics::cosine::NAME,
    weightkin_metrics::pearson::NAME,
];

/// Report formats written when `[report]` lists none.
pub const DEFAULT_FORMATS: &[ReportFormat] = &[ReportFormat::Json, ReportFormat::Markdown];

// ---------------------------------------------------------------------------------------------
// Phase 1: raw structs.

/// A recipe as written, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRecipe {
    audit: Spanned<RawAudit>,
    #[serde(default)]
    models: BTreeMap<String, Spanned<RawModel>>,
    #[serde(default)]
    compare: Vec<Spanned<RawCompare>>,
    #[serde(default)]
    report: Option<RawReport>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawAudit {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawModel {
    path: Spanned<String>,
    #[serde(default)]
    format: Option<Spanned<String>>,
    #[serde(default)]
    rename: Vec<Spanned<RawRename>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRename {
    from: Spanned<String>,
    to: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCompare {
    #[serde(default)]
    name: Option<String>,
    a: Spanned<String>,
    b: Spanned<String>,
    #[serde(default)]
    include: Vec<Spanned<String>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    #[serde(default)]
    metrics: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    params: BTreeMap<String, Spanned<toml::Table>>,
    #[serde(default)]
    grid: Option<Spanned<RawGrid>>,
    #[serde(default)]
    align: Option<Spanned<String>>,
    #[serde(default)]
    references: Vec<Spanned<String>>,
    #[serde(default)]
    evidence: Vec<Spanned<String>>,
    #[serde(default)]
    not_evidence: Vec<Spanned<String>>,
    #[serde(default)]
    components: Vec<Spanned<RawComponent>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawComponent {
    name: Spanned<String>,
    include: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawGrid {
    #[serde(default)]
    metric: Option<Spanned<String>>,
    #[serde(default)]
    classes: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawReport {
    #[serde(default)]
    formats: Option<Vec<Spanned<String>>>,
}

// ---------------------------------------------------------------------------------------------
// Phase 3 output: the validated recipe.

/// A validated recipe, ready to plan and run.
#[derive(Debug)]
pub struct Recipe {
    /// `[audit] name`.
    pub name: String,
    /// `[audit] description`.
    pub description: Option<String>,
    /// BLAKE3 of the recipe's bytes, hex.
    pub blake3: String,
    /// Models by name (sorted).
    pub models: BTreeMap<String, ModelSpec>,
    /// Comparisons in recipe order.
    pub compares: Vec<CompareSpec>,
    /// Report formats to write, deduplicated, in canonical order.
    pub formats: Vec<ReportFormat>,
}

/// One `[models.NAME]` table.
#[derive(Debug)]
pub struct ModelSpec {
    /// The path exactly as written in the recipe (shown in reports).
    pub path_as_given: String,
    /// The path to open: relative paths are resolved against the recipe's directory.
    pub path: PathBuf,
    /// Explicit format name, if given (already checked to be registered).
    pub format: Option<String>,
    /// Rename rules, applied in order with `replace_all`.
    pub rename: Vec<RenameRule>,
}

/// One rename rule.
#[derive(Debug, Clone)]
pub struct RenameRule {
    /// Compiled pattern.
    pub from: Regex,
    /// Replacement (`$1`-style groups allowed).
    pub to: String,
}

/// One `[[compare]]` table.
pub struct CompareSpec {
    /// Display name: the recipe's `name`, or "A ↔ B".
    pub name: String,
    /// Model on side A.
    pub a: String,
    /// Model on side B.
    pub b: String,
    /// Include globs as written (empty: everything).
    pub include: Vec<String>,
    /// Exclude globs as written.
    pub exclude: Vec<String>,
    include_m: Vec<GlobMatcher>,
    exclude_m: Vec<GlobMatcher>,
    /// Metrics to compute, in recipe order, with their built runtime objects.
    pub metrics: Vec<BuiltMetric>,
    /// Layer × layer grids to compute, if asked for.
    pub grid: Option<GridSpec>,
    /// Whether to pair layers along the alignment recovered from the grids.
    pub align: Align,
    /// Models declared independent of A, whose values form the null (`references`).
    pub references: Vec<String>,
    /// Globs of tensors that are evidence whatever the automatic checks say.
    pub evidence: Vec<String>,
    evidence_m: Vec<GlobMatcher>,
    /// Globs of tensors that are never evidence.
    pub not_evidence: Vec<String>,
    not_evidence_m: Vec<GlobMatcher>,
    /// Recipe-declared components, tried before the built-in patterns.
    pub components: Vec<ComponentSpec>,
}

/// A recipe-declared component: a name and the globs of its tensors.
pub struct ComponentSpec {
    /// Component name.
    pub name: String,
    /// Globs as written.
    pub include: Vec<String>,
    include_m: Vec<GlobMatcher>,
}

impl ComponentSpec {
    /// Whether a (renamed) tensor belongs to this component.
    pub fn selects(&self, name: &str) -> bool {
        let path = glob_path(name);
        self.include_m.iter().any(|g| g.is_match(&path))
    }
}

/// A metric as a compare uses it: its registered description and the runnable object built
/// from the recipe's parameters.
pub struct BuiltMetric {
    /// The registered spec (name, range, needs, …).
    pub spec: &'static MetricSpec,
    /// The built metric.
    pub metric: Box<dyn Metric>,
}

/// `grid = { … }` of a compare: which classes get a layer × layer grid, with which metric.
pub struct GridSpec {
    /// The metric computed in every cell.
    pub metric: BuiltMetric,
    /// Globs over class names (`model.layers.*.mlp.up_proj.weight`); empty: every class that
    /// has at least two layers in both models.
    pub classes: Vec<String>,
    classes_m: Vec<GlobMatcher>,
}

impl GridSpec {
    /// Whether a class gets a grid.
    pub fn selects(&self, class: &str) -> bool {
        let path = glob_path(class);
        self.classes_m.is_empty() || self.classes_m.iter().any(|g| g.is_match(&path))
    }
}

/// How a compare pairs layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Layer i of A with layer i of B (by name).
    Index,
    /// Layer f(j) of A with layer j of B, f the monotone alignment recovered from the grids.
    Auto,
}

impl fmt::Debug for CompareSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompareSpec")
            .field("name", &self.name)
            .field("a", &self.a)
            .field("b", &self.b)
            .field("include", &self.include)
            .field("exclude", &self.exclude)
            .field(
                "metrics",
                &self.metrics.iter().map(|m| m.spec.name).collect::<Vec<_>>(),
            )
            .field("grid", &self.grid.as_ref().map(|g| g.metric.spec.name))
            .field("align", &self.align)
            .finish()
    }
}

impl CompareSpec {
    /// Whether the recipe declares this tensor evidence.
    pub fn forced_evidence(&self, name: &str) -> bool {
        let path = glob_path(name);
        self.evidence_m.iter().any(|g| g.is_match(&path))
    }

    /// Whether the recipe declares this tensor not evidence.
    pub fn forced_not_evidence(&self, name: &str) -> bool {
        let path = glob_path(name);
        self.not_evidence_m.iter().any(|g| g.is_match(&path))
    }

    /// Whether a (renamed) tensor name passes the include/exclude filters.
    pub fn selects(&self, name: &str) -> bool {
        let path = glob_path(name);
        (self.include_m.is_empty() || self.include_m.iter().any(|g| g.is_match(&path)))
            && !self.exclude_m.iter().any(|g| g.is_match(&path))
    }
}

/// Tensor names are dotted; globs treat `.` as the segment separator, so `*` stays within one
/// segment and `**` spans any number (`model.layers.*.mlp.**`).
fn glob_path(s: &str) -> String {
    s.replace('.', "/")
}

fn compile_glob(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    globset::GlobBuilder::new(&glob_path(pattern))
        .literal_separator(true)
        .build()
        .map(|g: Glob| g.compile_matcher())
}

// ---------------------------------------------------------------------------------------------
// Diagnostics.

/// One problem in a recipe, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

/// All problems found in a recipe.
#[derive(Debug, thiserror::Error)]
pub struct RecipeError {
    /// The recipe file.
    pub path: PathBuf,
    /// Problems, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for RecipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.diagnostics.len();
        write!(
            f,
            "recipe {} has {n} problem{}:",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for d in &self.diagnostics {
            // Some messages (regex errors) span lines; indent the rest under the first.
            write!(
                f,
                "\n  {}:{}:{}: {}",
                self.path.display(),
                d.line,
                d.column,
                d.message.trim_end().replace('\n', "\n      ")
            )?;
        }
        Ok(())
    }
}

struct Diagnostics<'a> {
    source: &'a str,
    list: Vec<(usize, Diagnostic)>,
}

impl<'a> Diagnostics<'a> {
    fn push(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.source, span.start);
        self.list.push((
            span.start,
            Diagnostic {
                line,
                column,
                message: message.into(),
            },
        ));
    }

    fn finish(mut self, path: &Path) -> Result<(), RecipeError> {
        if self.list.is_empty() {
            return Ok(());
        }
        self.list.sort_by_key(|(offset, _)| *offset);
        Err(RecipeError {
            path: path.to_owned(),
            diagnostics: self.list.into_iter().map(|(_, d)| d).collect(),
        })
    }
}

/// 1-based line and column of byte `offset` in `source`.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset.min(source.len())).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// " (did you mean `x`?)" if some candidate is close to `word`, else the list of candidates.
pub fn suggest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> String {
    let candidates: Vec<&str> = candidates.into_iter().collect();
    let best = candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .min();
    match best {
        Some((d, c)) if d <= word.chars().count().max(3) / 3 + 1 => {
            format!(" (did you mean `{c}`?)")
        }
        _ => format!(" (expected one of: {})", candidates.join(", ")),
    }
}

// ---------------------------------------------------------------------------------------------
// Phase 2: validation.

/// Parses and validates a recipe. `path` names the file in diagnostics and anchors relative
/// model paths.
pub fn parse(path: &Path, source: &str, registry: &Registry) -> Result<Recipe, RecipeError> {
    let mut diags = Diagnostics {
        source,
        list: Vec::new(),
    };
    let raw: RawRecipe = match toml::from_str(source) {
        Ok(raw) => raw,
        Err(e) => {
            let (line, column) = line_col(source, e.span().map_or(0, |s| s.start));
            return Err(RecipeError {
                path: path.to_owned(),
                diagnostics: vec![Diagnostic {
                    line,
                    column,
                    message: e.message().trim().to_owned(),
                }],
            });
        }
    };
    let base_dir = path.parent().unwrap_or(Path::new(""));
    let recipe = validate(raw, base_dir, registry, &mut diags);
    diags.finish(path)?;
    Ok(recipe)
}

fn validate(
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

    let mut models = BTreeMap::new();
    for (name, model) in raw.models {
        let model = model.into_inner();
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
                match Regex::new(r.from.get_ref()) {
                    Ok(from) => Some(RenameRule { from, to: r.to }),
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
        let given = model.path.into_inner();
        models.insert(
            name,
            ModelSpec {
                path: base_dir.join(&given),
                path_as_given: given,
                format,
                rename,
            },
        );
    }

    if raw.compare.is_empty() {
        diags.push(
            audit_span,
            "the recipe has no `[[compare]]` table: nothing to audit",
        );
    }
    let mut compares = Vec::new();
    for (i, cmp) in raw.compare.into_iter().enumerate() {
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
        let globs = |list: &[Spanned<String>], what: &str, diags: &mut Diagnostics<'_>| {
            list.iter()
                .filter_map(|g| match compile_glob(g.get_ref()) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        diags.push(g.span(), format!("{which}: invalid {what} glob: {e}"));
                        None
                    }
                })
                .collect::<Vec<GlobMatcher>>()
        };
        let include_m = globs(&cmp.include, "include", diags);
        let exclude_m = globs(&cmp.exclude, "exclude", diags);

        let metric_names: Vec<Spanned<String>> = match cmp.metrics {
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
        // Looks a metric up and builds it with the compare's `params.NAME` table.
        let build = |m: &Spanned<String>, diags: &mut Diagnostics<'_>| -> Option<BuiltMetric> {
            let Some(spec) = registry.metric(m.get_ref()) else {
                diags.push(
                    m.span(),
                    format!(
                        "{which}: unknown metric `{}`{}",
                        m.get_ref(),
                        suggest(m.get_ref(), registry.metrics().iter().map(|s| s.name))
                    ),
                );
                return None;
            };
            let (params, span) = match cmp.params.get(spec.name) {
                Some(t) => (to_params(t.get_ref()), t.span()),
                None => (Ok(Params::new()), m.span()),
            };
            match params.and_then(|p| (spec.build)(&p).map_err(|e| e.to_string())) {
                Ok(metric) => Some(BuiltMetric { spec, metric }),
                Err(e) => {
                    diags.push(span, format!("{which}: {e}"));
                    None
                }
            }
        };
        let mut seen = BTreeSet::new();
        let mut metrics = Vec::new();
        for m in &metric_names {
            if !seen.insert(m.get_ref().clone()) {
                diags.push(
                    m.span(),
                    format!("{which}: metric `{}` is listed twice", m.get_ref()),
                );
                continue;
            }
            metrics.extend(build(m, diags));
        }
        let grid = cmp.grid.map(|g| {
            let span = g.span();
            let g = g.into_inner();
            let metric_name = g.metric.unwrap_or_else(|| {
                Spanned::new(span.clone(), weightkin_metrics::pearson::NAME.to_owned())
            });
            seen.insert(metric_name.get_ref().clone());
            let classes_m = globs(&g.classes, "grid class", diags);
            (
                build(&metric_name, diags),
                g.classes
                    .into_iter()
                    .map(Spanned::into_inner)
                    .collect::<Vec<_>>(),
                classes_m,
            )
        });
        let align = match cmp.align {
            None => Align::Index,
            Some(a) => match a.get_ref().as_str() {
                "index" => Align::Index,
                "auto" => {
                    if grid.is_none() {
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
            },
        };
        for r in &cmp.references {
            if !models.contains_key(r.get_ref()) {
                diags.push(
                    r.span(),
                    format!(
                        "{which}: no model named `{}` for `references`{}",
                        r.get_ref(),
                        suggest(r.get_ref(), models.keys().map(String::as_str))
                    ),
                );
            } else if r.get_ref() == cmp.a.get_ref() || r.get_ref() == cmp.b.get_ref() {
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
        let evidence_m = globs(&cmp.evidence, "evidence", diags);
        let not_evidence_m = globs(&cmp.not_evidence, "not-evidence", diags);
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
                    include_m: globs(&c.include, "component", diags),
                    name: c.name.into_inner(),
                    include: c.include.into_iter().map(Spanned::into_inner).collect(),
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
        compares.push(CompareSpec {
            name,
            a: cmp.a.into_inner(),
            b: cmp.b.into_inner(),
            include: cmp.include.into_iter().map(Spanned::into_inner).collect(),
            exclude: cmp.exclude.into_iter().map(Spanned::into_inner).collect(),
            include_m,
            exclude_m,
            metrics,
            grid: grid.and_then(|(metric, classes, classes_m)| {
                Some(GridSpec {
                    metric: metric?,
                    classes,
                    classes_m,
                })
            }),
            align,
            references: cmp
                .references
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
            evidence: cmp.evidence.into_iter().map(Spanned::into_inner).collect(),
            evidence_m,
            not_evidence: cmp
                .not_evidence
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
            not_evidence_m,
            components,
        });
    }

    let mut formats = BTreeSet::new();
    match raw.report.and_then(|r| r.formats) {
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

    Recipe {
        name: audit.name.into_inner(),
        description: audit.description,
        blake3: blake3::hash(diags.source.as_bytes()).to_hex().to_string(),
        models,
        compares,
        formats: formats.into_iter().collect(),
    }
}

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let s = "ab\ncdé f\n";
        assert_eq!(line_col(s, 0), (1, 1));
        assert_eq!(line_col(s, 3), (2, 1));
        assert_eq!(line_col(s, 8), (2, 5));
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("cosin", ["cosine", "pearson"]),
            " (did you mean `cosine`?)"
        );
        assert_eq!(
            suggest("xyz", ["cosine", "pearson"]),
            " (expected one of: cosine, pearson)"
        );
    }

    #[test]
    fn globs_use_dots_as_separators() {
        let g = compile_glob("model.layers.*.mlp.**").unwrap();
        assert!(g.is_match(glob_path("model.layers.3.mlp.up_proj.weight")));
        assert!(!g.is_match(glob_path("model.layers.3.attn.q.weight")));
        let g = compile_glob("**.weight").unwrap();
        assert!(g.is_match(glob_path("a.b.c.weight")));
        assert!(!g.is_match(glob_path("a.b.bias")));
    }
}
