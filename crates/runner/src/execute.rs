//! Executing a validated recipe: open models, pair, measure, summarise.
//!
//! Parallelism: tensor pairs run on the current rayon pool, and each pair's chunks run in
//! parallel within it ([`weightkin_core::pair_moments`]); rayon's work stealing keeps both
//! levels on one set of threads without oversubscription. Results are collected in pair order
//! and chunks merge in chunk order, so the report does not depend on the thread count.

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;
use weightkin_core::{
    pair_moments, read_tensor, Input, Limits, MappedFile, MetricValue, Moments, Needs, Registry,
    Tensors, WeightSource,
};

use crate::grid;
use crate::pairing::{self, Kind};
use crate::recipe::{Align, BuiltMetric, CompareSpec, Recipe};
use crate::report::{
    round, stats, AuditInfo, ClassSummary, Comparison, FileReport, ModelReport, Report, Summary,
    TensorRow, Tool, SCHEMA_VERSION,
};
use crate::Error;

/// Receives progress events; the CLI draws a bar from them. Calls are cheap and may come from
/// any thread.
pub trait Progress: Sync {
    /// A phase starts with `total` units of work (`unit` names them: "bytes", "elements").
    fn start(&self, phase: &str, total: u64, unit: &str) {
        let _ = (phase, total, unit);
    }
    /// `n` more units are done.
    fn advance(&self, n: u64) {
        let _ = n;
    }
    /// The phase is over.
    fn finish(&self) {}
}

/// A [`Progress`] that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Knobs that are not part of a recipe (they do not change the report).
pub struct RunOptions<'a> {
    /// Resource caps for opening model files.
    pub limits: Limits,
    /// Progress sink.
    pub progress: &'a dyn Progress,
}

impl Default for RunOptions<'_> {
    fn default() -> Self {
        RunOptions {
            limits: Limits::default(),
            progress: &NoProgress,
        }
    }
}

struct Opened {
    source: Box<dyn WeightSource>,
    report: ModelReport,
}

/// Runs `recipe` and returns its report.
pub fn run(recipe: &Recipe, registry: &Registry, opts: &RunOptions<'_>) -> Result<Report, Error> {
    let mut models = BTreeMap::new();
    for (name, spec) in &recipe.models {
        let source = registry
            .open(&spec.path, spec.format.as_deref(), &opts.limits)
            .map_err(|source| Error::OpenModel {
                model: name.clone(),
                path: spec.path_as_given.clone(),
                source: Box::new(source),
            })?;
        let report = describe(name, &spec.path_as_given, &spec.path, source.as_ref(), opts)?;
        models.insert(name.clone(), Opened { source, report });
    }

    let mut renamed = BTreeMap::new();
    for (name, m) in &models {
        let rules = recipe.models.get(name).map_or(&[][..], |s| &s.rename[..]);
        renamed.insert(name, pairing::renamed(name, m.source.as_ref(), rules)?);
    }

    let mut comparisons = Vec::new();
    for cmp in &recipe.compares {
        let (Some(a), Some(b), Some(na), Some(nb)) = (
            models.get(&cmp.a),
            models.get(&cmp.b),
            renamed.get(&cmp.a),
            renamed.get(&cmp.b),
        ) else {
            // Validation guarantees both names exist.
            return Err(Error::Internal("compare names a model that was not opened"));
        };
        comparisons.push(compare(
            cmp,
            a.source.as_ref(),
            na,
            b.source.as_ref(),
            nb,
            opts,
        )?);
    }

    Ok(Report {
        schema_version: SCHEMA_VERSION,
        tool: Tool {
            name: "weightkin",
            version: env!("CARGO_PKG_VERSION"),
        },
        audit: AuditInfo {
            name: recipe.name.clone(),
            description: recipe.description.clone(),
            recipe_blake3: recipe.blake3.clone(),
        },
        models: models.into_values().map(|m| m.report).collect(),
        comparisons,
    })
}

/// Builds a model's report entry, hashing its files.
fn describe(
    name: &str,
    given: &str,
    path: &Path,
    source: &dyn WeightSource,
    opts: &RunOptions<'_>,
) -> Result<ModelReport, Error> {
    let total: u64 = source.files().iter().map(|f| f.size).sum();
    opts.progress
        .start(&format!("hashing {name}"), total, "bytes");
    let mut files = Vec::new();
    for f in source.files() {
        let map = MappedFile::open(&f.path).map_err(|source| Error::OpenModel {
            model: name.to_owned(),
            path: given.to_owned(),
            source: Box::new(source),
        })?;
        let mut hasher = blake3::Hasher::new();
        hasher.update_rayon(map.bytes());
        opts.progress.advance(map.len());
        let rel = f
            .path
            .strip_prefix(path)
            .ok()
            .filter(|p| !p.as_os_str().is_empty())
            .or_else(|| f.path.file_name().map(Path::new))
            .unwrap_or(&f.path);
        files.push(FileReport {
            path: rel.to_string_lossy().replace('\\', "/"),
            bytes: f.size,
            blake3: hasher.finalize().to_hex().to_string(),
        });
    }
    opts.progress.finish();
    let mut dtypes = BTreeMap::new();
    for t in source.tensors() {
        *dtypes.entry(t.dtype.to_string()).or_insert(0) += 1;
    }
    Ok(ModelReport {
        name: name.to_owned(),
        path: given.to_owned(),
        format: source.format(),
        files,
        tensors: source.tensors().len(),
        parameters: source.tensors().iter().map(|t| t.numel as u64).sum(),
        dtypes,
        transforms: source.transforms().to_vec(),
    })
}

/// Measures one tensor pair with `metrics`: a single streaming pass for moment metrics, or
/// both tensors read whole when any metric needs them (moments then come from the same
/// in-memory data, merged exactly as the streaming pass merges them).
pub(crate) fn measure(
    cmp: &CompareSpec,
    metrics: &[BuiltMetric],
    a: &dyn WeightSource,
    ia: usize,
    b: &dyn WeightSource,
    ib: usize,
    name: &str,
) -> Result<Vec<(&'static str, MetricValue)>, Error> {
    let fail = |source| Error::Measure {
        compare: cmp.name.clone(),
        tensor: name.to_owned(),
        source: Box::new(source),
    };
    let x = &a.tensors()[ia];
    let numel = x.numel;
    let evaluate = |input: &Input<'_>| {
        metrics
            .iter()
            .map(|m| (m.spec.name, m.metric.evaluate(input)))
            .collect()
    };
    if metrics.iter().any(|m| m.spec.needs == Needs::Tensors) {
        let (va, vb) = rayon::join(
            || read_tensor(a, ia, numel),
            || read_tensor(b, ib, numel),
        );
        let (va, vb) = (va.map_err(fail)?, vb.map_err(fail)?);
        let moments = Moments::of_tensors(&va, &vb);
        Ok(evaluate(&Input {
            moments: &moments,
            tensors: Some(Tensors {
                a: &va,
                b: &vb,
                shape: &x.shape,
            }),
        }))
    } else {
        let moments = pair_moments(a, ia, b, ib, numel).map_err(fail)?;
        Ok(evaluate(&Input {
            moments: &moments,
            tensors: None,
        }))
    }
}

fn compare(
    cmp: &CompareSpec,
    a: &dyn WeightSource,
    names_a: &BTreeMap<String, usize>,
    b: &dyn WeightSource,
    names_b: &BTreeMap<String, usize>,
    opts: &RunOptions<'_>,
) -> Result<Comparison, Error> {
    let (ta, tb) = (a.tensors(), b.tensors());

    // Layer grids and alignment come first: `align = "auto"` pairs along the alignment.
    let selected = |names: &'_ BTreeMap<String, usize>| -> BTreeMap<String, usize> {
        names
            .iter()
            .filter(|(n, _)| cmp.selects(n))
            .map(|(n, i)| (n.clone(), *i))
            .collect()
    };
    let (grids, skipped_grids, mut alignments) = match &cmp.grid {
        Some(spec) => {
            let (sa, sb) = (selected(names_a), selected(names_b));
            let la = grid::layered(&sa);
            let lb = grid::layered(&sb);
            let (grids, skipped) = grid::grids(cmp, spec, a, &la, b, &lb, opts)?;
            let alignments = grid::align(&grids);
            (grids, skipped, alignments)
        }
        None => (Vec::new(), Vec::new(), Vec::new()),
    };
    let mut remap: BTreeMap<(String, u32), u32> = BTreeMap::new();
    if cmp.align == Align::Auto {
        for al in &mut alignments {
            al.applied = true;
            for m in &al.mapping {
                remap.insert((al.stack.clone(), m.b), m.a);
            }
        }
    }
    let target = |name: &str| -> Option<String> {
        let (Some(layer), class) = pairing::layer_and_class(name) else {
            return None;
        };
        let to = remap.get(&(grid::stack_of(&class).to_owned(), layer))?;
        (*to != layer).then(|| class.replacen('*', &to.to_string(), 1))
    };
    let pairing = pairing::pair(cmp, a, names_a, b, names_b, &target);

    let elements: u64 = pairing.pairs.iter().map(|p| ta[p.a].numel as u64).sum();
    opts.progress
        .start(&format!("comparing {}", cmp.name), elements, "elements");
    let rows = pairing
        .pairs
        .par_iter()
        .map(|p| {
            let (x, y) = (&ta[p.a], &tb[p.b]);
            let measured = measure(cmp, &cmp.metrics, a, p.a, b, p.b, &p.name)?;
            opts.progress.advance(x.numel as u64);
            let mut values = BTreeMap::new();
            let mut undefined = BTreeMap::new();
            for (name, v) in measured {
                values.insert(name.to_owned(), v.value().map(round));
                if let MetricValue::Undefined(why) = v {
                    undefined.insert(name.to_owned(), why);
                }
            }
            Ok(TensorRow {
                name: p.name.clone(),
                a_name: (x.name != p.name).then(|| x.name.clone()),
                b_name: (y.name != p.name).then(|| y.name.clone()),
                class: p.class.clone(),
                layer: p.layer,
                shape: x.shape.clone(),
                dtype_a: x.dtype.to_string(),
                dtype_b: y.dtype.to_string(),
                values,
                undefined,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    opts.progress.finish();

    let metric_names: Vec<String> = cmp
        .metrics
        .iter()
        .map(|m| m.spec.name.to_owned())
        .collect();
    let mut by_class: BTreeMap<&str, Vec<&TensorRow>> = BTreeMap::new();
    for r in &rows {
        by_class.entry(&r.class).or_default().push(r);
    }
    let classes = by_class
        .into_iter()
        .map(|(class, members)| {
            // Within a class, names differ only in the layer index, so layers are unique.
            let mut layered: Vec<(u32, &TensorRow)> = members
                .iter()
                .filter_map(|r| r.layer.map(|l| (l, *r)))
                .collect();
            layered.sort_by_key(|(l, _)| *l);
            let layers: Vec<u32> = layered.iter().map(|(l, _)| *l).collect();
            let per_layer = if layered.is_empty() {
                BTreeMap::new()
            } else {
                metric_names
                    .iter()
                    .map(|m| {
                        let series = layered
                            .iter()
                            .map(|(_, r)| r.values.get(m).copied().flatten())
                            .collect();
                        (m.clone(), series)
                    })
                    .collect()
            };
            ClassSummary {
                per_layer,
                class: class.to_owned(),
                kind: Kind::of(class),
                count: members.len(),
                layers,
                stats: metric_names
                    .iter()
                    .map(|m| {
                        let vals: Vec<Option<f64>> = members
                            .iter()
                            .map(|r| r.values.get(m).copied().flatten())
                            .collect();
                        stats(m, &vals)
                    })
                    .collect(),
            }
        })
        .collect();

    let mut by_reason = BTreeMap::new();
    for u in &pairing.unpaired {
        *by_reason.entry(u.reason.text().to_owned()).or_insert(0) += 1;
    }
    Ok(Comparison {
        name: cmp.name.clone(),
        a: cmp.a.clone(),
        b: cmp.b.clone(),
        metrics: metric_names,
        include: cmp.include.clone(),
        exclude: cmp.exclude.clone(),
        summary: Summary {
            compared: rows.len(),
            elements,
            not_compared: pairing.unpaired.len(),
            not_compared_by_reason: by_reason,
        },
        classes,
        tensors: rows,
        not_compared: pairing.unpaired,
        grids,
        skipped_grids,
        alignments,
    })
}
