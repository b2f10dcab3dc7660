//! Executing a validated recipe: open models, pair, measure, summarise.
//!
//! Parallelism: tensor pairs run on the current rayon pool, and each pair's chunks run in
//! parallel within it ([`weightkin_core::pair_moments`]); rayon's work stealing keeps both
//! levels on one set of threads without oversubscription. Results are collected in pair order
//! and chunks merge in chunk order, so the report does not depend on the thread count.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use weightkin_core::{
    pair_moments_sampled, pair_pass, read_examples, read_tensor, ExampleSample, FileHashers, Input,
    Limits, MappedFile, MetricValue, Moments, Needs, Registry, Samples, Taps, Tensors, Undefined,
    WeightSource,
};

use crate::grid;
use crate::hashcache::{HashCache, Lookup, Pending};
use crate::pairing::{self, Kind, Pair};
use crate::recipe::{Align, BuiltMetric, CompareSpec, Recipe};
use crate::report::MetricNull;
use crate::report::{
    round, stats, AuditInfo, ClassSummary, Comparison, FileReport, ModelReport, Report, Summary,
    TensorRow, Tool, SCHEMA_VERSION,
};
use crate::stats;
use crate::verdict::{self, NullKind, NullSamples};
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
    /// Where model files' BLAKE3 hashes are looked up before hashing them, and stored after
    /// (see [`HashCache`]); `None` hashes every file. A cached hash is the same string the
    /// hash pass would give, so reports are byte-identical either way.
    pub hash_cache: Option<HashCache>,
}

impl Default for RunOptions<'_> {
    /// No progress, default limits, and no hash cache (so that library callers and tests
    /// neither read nor write anything outside their inputs; the CLI turns the cache on).
    fn default() -> Self {
        RunOptions {
            limits: Limits::default(),
            progress: &NoProgress,
            hash_cache: None,
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
        let report = describe(name, &spec.path_as_given, &spec.path, source.as_ref());
        models.insert(name.clone(), Opened { source, report });
    }

    // Files' hashes: from the cache where it has them, else collected piecewise by the
    // comparisons' passes and completed after them (see `FileHashers`).
    let mut hashers = FileHashers::new();
    let mut pending = BTreeMap::new();
    for m in models.values_mut() {
        for (f, report) in m.source.files().iter().zip(&mut m.report.files) {
            let miss = match &opts.hash_cache {
                Some(cache) => match cache.begin(&f.path) {
                    Lookup::Hit(blake3) => {
                        report.blake3 = blake3;
                        continue;
                    }
                    Lookup::Miss(p) => Some(p),
                },
                None => None,
            };
            hashers.add(&f.path, f.size);
            if let Some(p) = miss {
                pending.insert(f.path.clone(), p);
            }
        }
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
        let mut references = Vec::new();
        for r in &cmp.references {
            let (Some(m), Some(names)) = (models.get(r), renamed.get(r)) else {
                return Err(Error::Internal(
                    "reference names a model that was not opened",
                ));
            };
            references.push((m.source.as_ref(), names));
        }
        comparisons.push(compare(
            cmp,
            (a.source.as_ref(), na),
            (b.source.as_ref(), nb),
            &references,
            &hashers,
            opts,
        )?);
    }
    finish_hashes(&mut models, &hashers, pending, opts)?;

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

/// Builds a model's report entry; file hashes are filled in by [`finish_hashes`].
fn describe(name: &str, given: &str, path: &Path, source: &dyn WeightSource) -> ModelReport {
    let files = source
        .files()
        .iter()
        .map(|f| {
            let rel = f
                .path
                .strip_prefix(path)
                .ok()
                .filter(|p| !p.as_os_str().is_empty())
                .or_else(|| f.path.file_name().map(Path::new))
                .unwrap_or(&f.path);
            FileReport {
                path: rel.to_string_lossy().replace('\\', "/"),
                bytes: f.size,
                blake3: String::new(),
            }
        })
        .collect();
    let mut dtypes = BTreeMap::new();
    for t in source.tensors() {
        *dtypes.entry(t.dtype.to_string()).or_insert(0) += 1;
    }
    ModelReport {
        name: name.to_owned(),
        path: given.to_owned(),
        format: source.format(),
        files,
        tensors: source.tensors().len(),
        parameters: source.tensors().iter().map(|t| t.numel as u64).sum(),
        dtypes,
        transforms: source.transforms().to_vec(),
    }
}

/// Completes every file hash the cache did not have: hashes what the comparisons' passes did
/// not read ([`weightkin_core::FileHasher::finish`]), stores the results in the cache, and
/// writes them into the model reports.
fn finish_hashes(
    models: &mut BTreeMap<String, Opened>,
    hashers: &FileHashers,
    mut pending: BTreeMap<PathBuf, Pending>,
    opts: &RunOptions<'_>,
) -> Result<(), Error> {
    let mut done: BTreeMap<PathBuf, String> = BTreeMap::new();
    let total: u64 = models
        .values()
        .flat_map(|m| m.source.files())
        .filter(|f| hashers.get(&f.path).is_some())
        .map(|f| f.size)
        .sum();
    opts.progress.start("hashing", total, "bytes");
    for (name, m) in models.iter_mut() {
        for (f, report) in m.source.files().iter().zip(&mut m.report.files) {
            let Some(hasher) = hashers.get(&f.path) else {
                continue; // from the cache
            };
            if let Some(blake3) = done.get(&f.path) {
                report.blake3.clone_from(blake3);
                continue;
            }
            let open_error = |source| Error::OpenModel {
                model: name.clone(),
                path: m.report.path.clone(),
                source: Box::new(source),
            };
            let map = MappedFile::open(&f.path).map_err(open_error)?;
            let blake3 = hasher.finish(&map).ok_or_else(|| {
                open_error(weightkin_core::Error::Io {
                    path: f.path.clone(),
                    action: "hash (its size changed while it was audited)",
                    source: std::io::ErrorKind::InvalidData.into(),
                })
            })?;
            opts.progress.advance(f.size);
            if let (Some(cache), Some(p)) = (&opts.hash_cache, pending.remove(&f.path)) {
                cache.complete(p, &blake3);
            }
            report.blake3.clone_from(&blake3);
            done.insert(f.path.clone(), blake3);
        }
    }
    opts.progress.finish();
    Ok(())
}

/// One metric's result on one pair.
pub(crate) struct MetricResult {
    /// Metric name.
    pub name: &'static str,
    /// Its value.
    pub value: MetricValue,
    /// Its values under the metric's own null (empty if it has none).
    pub null: Vec<f64>,
    /// The subset of examples a tensor metric was evaluated on, when the pair was larger
    /// than the metric's [`weightkin_core::Metric::max_elements`] (`None`: whole tensors, or
    /// a moment metric).
    pub subsample: Option<ExampleSample>,
}

/// Smallest null s.d. used for a metric's own null (a few permutations can agree closely).
const METRIC_NULL_SD_FLOOR: f64 = 1e-3;

/// What [`measure`] gives for one tensor pair.
pub(crate) struct Measurement {
    /// Moments of the whole pair.
    pub moments: Moments,
    /// One result per metric, in the order asked.
    pub results: Vec<MetricResult>,
    /// The calibration subsample, when asked for ([`Taps::samples`]).
    pub samples: Option<Samples>,
    /// BF16 ULP statistics, when asked for ([`Taps::ulp`]) and both sides are BF16.
    pub ulp: Option<weightkin_core::UlpStats>,
}

/// Measures one tensor pair with `metrics`.
///
/// * Moment metrics only: one streaming pass ([`pair_pass`]), keeping what `taps` asks for
///   on the way.
/// * A metric that needs tensors, and the pair fits every such metric's
///   [`weightkin_core::Metric::max_elements`]: both tensors read whole; moments and samples
///   come from the same in-memory data, exactly as the streaming pass computes them.
/// * A pair larger than some tensor metric's bound: the streaming pass, exactly as for
///   moment metrics (so moments, samples, ULP statistics and hashing do not depend on the
///   metrics asked for), then each tensor metric on the tensors whole if they fit its bound,
///   else on the same evenly strided subset of whole examples of both
///   ([`ExampleSample`], read by [`read_examples`]). One metric's input is held at a time, so
///   the working memory is bounded by the largest bound, whatever the tensor size.
#[allow(clippy::too_many_arguments)]
pub(crate) fn measure(
    cmp: &CompareSpec,
    metrics: &[BuiltMetric],
    a: &dyn WeightSource,
    ia: usize,
    b: &dyn WeightSource,
    ib: usize,
    name: &str,
    taps: &Taps,
) -> Result<Measurement, Error> {
    let fail = |source| Error::Measure {
        compare: cmp.name.clone(),
        tensor: name.to_owned(),
        source: Box::new(source),
    };
    let x = &a.tensors()[ia];
    let numel = x.numel;
    // `try_evaluate`: a metric running foreign code (a shared-library plugin) that fails
    // stops the audit with the plugin's own message, rather than leaving a silent gap.
    let evaluate_one = |m: &BuiltMetric, input: &Input<'_>, subsample| {
        Ok(MetricResult {
            name: m.spec.name,
            value: m.metric.try_evaluate(input).map_err(fail)?,
            null: m.metric.null_samples(input),
            subsample,
        })
    };
    let evaluate = |input: &Input<'_>| -> Result<Vec<MetricResult>, Error> {
        metrics
            .iter()
            .map(|m| evaluate_one(m, input, None))
            .collect()
    };
    let needs_tensors = |m: &&BuiltMetric| m.spec.needs == Needs::Tensors;
    // How each tensor metric sees this pair: `None` whole, else a subsample.
    let plan = |m: &BuiltMetric| {
        ExampleSample::plan(&x.shape, m.metric.example_axis(), m.metric.max_elements())
    };
    // Both tensors whole, as f32.
    let read_both = || -> Result<(Vec<f32>, Vec<f32>), Error> {
        let (va, vb) = rayon::join(|| read_tensor(a, ia, numel), || read_tensor(b, ib, numel));
        Ok((va.map_err(fail)?, vb.map_err(fail)?))
    };
    let tensor_metrics: Vec<&BuiltMetric> = metrics.iter().filter(needs_tensors).collect();
    if !tensor_metrics.is_empty() && tensor_metrics.iter().all(|m| plan(m).is_none()) {
        let (va, vb) = read_both()?;
        let moments = Moments::of_tensors(&va, &vb);
        let results = evaluate(&Input {
            moments: &moments,
            tensors: Some(Tensors {
                a: &va,
                b: &vb,
                shape: &x.shape,
            }),
        })?;
        return Ok(Measurement {
            moments,
            results,
            samples: taps
                .samples
                .and_then(|budget| Samples::of_tensors(&va, &vb, budget)),
            ulp: taps
                .ulp
                .and_then(|budget| weightkin_core::bf16_ulp_sampled(a, ia, b, ib, budget)),
        });
    }
    let pass = pair_pass(a, ia, b, ib, numel, taps).map_err(fail)?;
    let moments_only = Input {
        moments: &pass.moments,
        tensors: None,
    };
    let results = metrics
        .iter()
        .map(|m| {
            if m.spec.needs != Needs::Tensors {
                return evaluate_one(m, &moments_only, None);
            }
            let Some(sample) = plan(m) else {
                // Within this metric's bound (another's is smaller): whole tensors.
                let (va, vb) = read_both()?;
                return evaluate_one(
                    m,
                    &Input {
                        moments: &pass.moments,
                        tensors: Some(Tensors {
                            a: &va,
                            b: &vb,
                            shape: &x.shape,
                        }),
                    },
                    None,
                );
            };
            if sample.is_empty() {
                return Ok(MetricResult {
                    name: m.spec.name,
                    value: MetricValue::Undefined(Undefined::ExampleTooLarge),
                    null: Vec::new(),
                    subsample: None,
                });
            }
            let (va, vb) = rayon::join(
                || read_examples(a, ia, &sample),
                || read_examples(b, ib, &sample),
            );
            let (va, vb) = (va.map_err(fail)?, vb.map_err(fail)?);
            let shape = sample.shape(&x.shape);
            evaluate_one(
                m,
                &Input {
                    moments: &pass.moments,
                    tensors: Some(Tensors {
                        a: &va,
                        b: &vb,
                        shape: &shape,
                    }),
                },
                Some(sample),
            )
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(Measurement {
        moments: pass.moments,
        results,
        samples: pass.samples,
        ulp: pass.ulp,
    })
}

/// A model and its renamed tensor names.
type Named<'a> = (&'a dyn WeightSource, &'a BTreeMap<String, usize>);

/// A reference model (declared independent of A).
type Reference<'a> = Named<'a>;

fn compare(
    cmp: &CompareSpec,
    (a, names_a): Named<'_>,
    (b, names_b): Named<'_>,
    references: &[Reference<'_>],
    hashers: &FileHashers,
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
        for al in alignments.iter_mut().filter(|al| al.meaningful) {
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
    // One pass per pair measures it, keeps its calibration subsample and histograms its
    // ULP distances while the data is in cache. Pairs run in batches of whole classes (all
    // of a batch's pairs in parallel) holding at most `SAMPLE_MEMORY` bytes of subsamples:
    // each class's cross-layer null is computed when its batch is done, and the subsamples
    // dropped, so memory stays bounded however many tensors a model has.
    let pairs = &pairing.pairs;
    let mut classes_of: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, p) in pairs.iter().enumerate() {
        classes_of.entry(&p.class).or_default().push(i);
    }
    // (class, its members and its layered members in pair order, whether it gets a
    // cross-layer null)
    type Class<'c> = (&'c str, &'c [usize], Vec<usize>, bool);
    let classes: Vec<Class<'_>> = classes_of
        .iter()
        .map(|(class, members)| {
            let layered: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&i| pairs[i].layer.is_some())
                .collect();
            let calibrate = layered.len() >= CROSS_LAYER_MIN;
            (*class, &members[..], layered, calibrate)
        })
        .collect();
    // Upper bound of a class's subsample bytes (f32, both sides).
    let sample_bytes = |(_, _, layered, calibrate): &Class<'_>| -> usize {
        if !*calibrate {
            return 0;
        }
        layered
            .iter()
            .map(|&i| 8 * ta[pairs[i].a].numel.min(NULL_SAMPLE_BUDGET))
            .sum()
    };
    let mut batches: Vec<Vec<usize>> = Vec::new(); // indices into `classes`
    let mut held = 0;
    for (c, class) in classes.iter().enumerate() {
        let bytes = sample_bytes(class);
        match batches.last_mut() {
            Some(batch) if held + bytes <= SAMPLE_MEMORY => {
                batch.push(c);
                held += bytes;
            }
            _ => {
                batches.push(vec![c]);
                held = bytes;
            }
        }
    }
    let mut slots: Vec<Option<(TensorRow, Moments, Option<weightkin_core::UlpStats>)>> =
        (0..pairs.len()).map(|_| None).collect();
    let mut cross_layer: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for batch in &batches {
        let members: Vec<(usize, bool)> = batch
            .iter()
            .flat_map(|&c| {
                let (_, members, _, calibrate) = &classes[c];
                members.iter().map(move |&i| (i, *calibrate))
            })
            .collect();
        let done = members
            .par_iter()
            .map(|&(i, calibrate)| {
                let p = &pairs[i];
                let (x, y) = (&ta[p.a], &tb[p.b]);
                let taps = Taps {
                    samples: (calibrate && p.layer.is_some()).then_some(NULL_SAMPLE_BUDGET),
                    ulp: Some(ULP_SAMPLE_BUDGET),
                    observer: Some(hashers),
                };
                let m = measure(cmp, &cmp.metrics, a, p.a, b, p.b, &p.name, &taps)?;
                opts.progress.advance(x.numel as u64);
                let mut values = BTreeMap::new();
                let mut undefined = BTreeMap::new();
                let mut nulls = BTreeMap::new();
                let mut subsampled = BTreeMap::new();
                for r in m.results {
                    values.insert(r.name.to_owned(), r.value.value().map(round));
                    if let Some(s) = r.subsample {
                        subsampled.insert(r.name.to_owned(), s.into());
                    }
                    if let MetricValue::Undefined(why) = r.value {
                        undefined.insert(r.name.to_owned(), why);
                    }
                    if let (Some(v), Some((mean, sd))) = (r.value.value(), stats::mean_sd(&r.null))
                    {
                        let sd = sd.max(METRIC_NULL_SD_FLOOR);
                        let z = (v - mean) / sd;
                        nulls.insert(
                            r.name.to_owned(),
                            MetricNull {
                                samples: r.null.len(),
                                mean: round(mean),
                                sd: round(sd),
                                z: (z * 1e3).round() / 1e3,
                                p: stats::upper_tail(z),
                            },
                        );
                    }
                }
                let row = TensorRow {
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
                    metric_nulls: nulls,
                    subsampled,
                    evidence: None,
                };
                Ok((i, row, m.moments, m.ulp, m.samples))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let mut samples: BTreeMap<usize, Samples> = BTreeMap::new();
        for (i, row, moments, ulp, kept) in done {
            if let Some(kept) = kept {
                samples.insert(i, kept);
            }
            slots[i] = Some((row, moments, ulp));
        }
        for &c in batch {
            let (class, _, layered, calibrate) = &classes[c];
            if *calibrate {
                let values = cross_layer_null(layered, pairs, ta, tb, &samples)?;
                if !values.is_empty() {
                    cross_layer.insert((*class).to_owned(), values);
                }
            }
        }
    }
    opts.progress.finish();
    let mut rows = Vec::with_capacity(pairs.len());
    let mut moments = Vec::with_capacity(pairs.len());
    let mut ulps = Vec::with_capacity(pairs.len());
    for slot in slots {
        let Some((row, m, ulp)) = slot else {
            return Err(Error::Internal("a tensor pair was not measured"));
        };
        rows.push(row);
        moments.push(m);
        ulps.push(ulp);
    }

    // Calibration and verdicts.
    let nulls = nulls(cmp, a, names_a, cross_layer, references, opts)?;
    let measured: Vec<verdict::Measured<'_>> = pairing
        .pairs
        .iter()
        .zip(&moments)
        .zip(ulps)
        .map(|((pair, m), ulp)| verdict::Measured {
            pair,
            moments: *m,
            ulp,
        })
        .collect();
    let structured = |p: &pairing::Pair| structured(a, p.a);
    let (evidence, verdicts) =
        verdict::judge(cmp, &measured, &structured, &nulls, &pairing.unpaired);
    for (row, e) in rows.iter_mut().zip(evidence) {
        row.evidence = Some(e);
    }

    let metric_names: Vec<String> = cmp.metrics.iter().map(|m| m.spec.name.to_owned()).collect();
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
        verdicts,
    })
}

/// Largest tensor whose distinct values are counted to recognise a structured buffer.
const STRUCTURE_CHECK_MAX: usize = 1 << 22;

/// Whether tensor `i` of `source` takes few distinct values (at most max(16, n/50)): what a
/// mask, an index table or a fixed basis looks like, and a trained weight does not. Only
/// called for tensors identical in both models.
fn structured(source: &dyn WeightSource, i: usize) -> bool {
    let numel = source.tensors()[i].numel;
    if numel > STRUCTURE_CHECK_MAX {
        return false;
    }
    let Ok(values) = read_tensor(source, i, numel) else {
        return false;
    };
    let mut bits: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
    bits.sort_unstable();
    bits.dedup();
    bits.len() <= (numel / 50).max(16)
}

/// Elements each cross-layer null sample keeps at most (16 Ki: one chunk — the first — kept
/// by the comparison's own pass, [`Taps::samples`], so the null reads nothing again; a
/// reference null reads the same chunk with [`pair_moments_sampled`]). Pearson on a
/// subsample estimates the tensors' Pearson without bias, with sampling spread
/// ≈ 1/√(16 Ki) ≈ 0.008: far below the minimum effect size (0.1) a verdict asks for, and only
/// ever widening the null (conservative). Larger budgets cost memory, copying and page
/// faults for no change in any verdict (BENCHMARKS.md, "Compare throughput": 1 Mi → 16 Ki
/// left every verdict of the test suite and of `VALIDATION.md` as it was).
const NULL_SAMPLE_BUDGET: usize = 1 << 14;

/// Elements each BF16 ULP histogram reads at most (32 Ki: two evenly strided chunks,
/// histogrammed by the comparison's pass while they are in cache). The statistics it feeds —
/// the median distance and the fraction within one ULP — are quantiles of a per-element
/// distribution, estimated from 32 Ki samples to about ±0.006.
const ULP_SAMPLE_BUDGET: usize = 1 << 15;

/// Layered tensors a class needs for a cross-layer null.
const CROSS_LAYER_MIN: usize = 3;

/// Most bytes of calibration subsamples held at once (see `compare`), counted as f32 on both
/// sides: 64 MiB, a batch of 512 layered tensors at the default budget; a single larger class
/// is a batch of its own.
const SAMPLE_MEMORY: usize = 64 << 20;

/// The cross-layer null of one class from its pairs' subsamples: A's layer `i` against B's
/// layer `j ≠ i`, at offsets 1 and ⌊L/2⌋ through the class's `members` (pair indices in
/// pair order), wherever the shapes agree. Pearson of each, in that order.
fn cross_layer_null(
    members: &[usize],
    pairs: &[Pair],
    ta: &[weightkin_core::TensorInfo],
    tb: &[weightkin_core::TensorInfo],
    samples: &BTreeMap<usize, Samples>,
) -> Result<Vec<f64>, Error> {
    let l = members.len();
    let mut offsets = vec![1, l / 2];
    offsets.dedup();
    let mut values = Vec::new();
    for k in 0..l {
        for &s in &offsets {
            let (ix, iy) = (members[k], members[(k + s) % l]);
            let (x, y) = (&pairs[ix], &pairs[iy]);
            if x.a == y.a || ta[x.a].shape != tb[y.b].shape {
                continue;
            }
            let (Some(sx), Some(sy)) = (samples.get(&ix), samples.get(&iy)) else {
                return Err(Error::Internal("a calibration subsample was not kept"));
            };
            let m = Samples::cross(sx, sy)
                .ok_or(Error::Internal("calibration subsamples of different sizes"))?;
            if let Some(r) = m.pearson().value() {
                values.push(r);
            }
        }
    }
    Ok(values)
}

/// Empirical nulls per class: reference models (declared independent of A) where they have
/// the class, else the cross-layer samples measured with the comparison
/// ([`cross_layer_null`]).
fn nulls(
    cmp: &CompareSpec,
    a: &dyn WeightSource,
    names_a: &BTreeMap<String, usize>,
    cross_layer: BTreeMap<String, Vec<f64>>,
    references: &[Reference<'_>],
    opts: &RunOptions<'_>,
) -> Result<NullSamples, Error> {
    let ta = a.tensors();
    // (class, source of the second tensor, index in A, index in the second source)
    let mut jobs: Vec<(String, &dyn WeightSource, usize, usize)> = Vec::new();
    for (source, names) in references {
        let ref_pairs = pairing::pair(cmp, a, names_a, *source, names, &|_| None);
        for p in ref_pairs.pairs {
            jobs.push((p.class, *source, p.a, p.b));
        }
    }
    let total: u64 = jobs
        .iter()
        .map(|j| ta[j.2].numel.min(NULL_SAMPLE_BUDGET) as u64)
        .sum();
    opts.progress
        .start(&format!("null samples {}", cmp.name), total, "elements");
    let samples =
        jobs.par_iter()
            .map(|(class, other, ia, ib)| {
                let numel = ta[*ia].numel;
                let m = pair_moments_sampled(a, *ia, *other, *ib, numel, NULL_SAMPLE_BUDGET)
                    .map_err(|source| Error::Measure {
                        compare: cmp.name.clone(),
                        tensor: ta[*ia].name.clone(),
                        source: Box::new(source),
                    })?;
                opts.progress.advance(numel.min(NULL_SAMPLE_BUDGET) as u64);
                Ok((class.as_str(), m.pearson().value()))
            })
            .collect::<Result<Vec<_>, Error>>()?;
    opts.progress.finish();
    let mut out: NullSamples = cross_layer
        .into_iter()
        .map(|(class, values)| (class, (NullKind::CrossLayer, values)))
        .collect();
    for (class, r) in samples {
        let Some(r) = r else { continue };
        let entry = out
            .entry(class.to_owned())
            .or_insert_with(|| (NullKind::Reference, Vec::new()));
        // A reference null replaces a cross-layer one for the same class.
        if entry.0 != NullKind::Reference {
            *entry = (NullKind::Reference, Vec::new());
        }
        entry.1.push(r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use weightkin_core::testing::{uniform_f32, SafetensorsBuilder};

    /// Above CKA's `max-elements`, a pair's moments, calibration samples and ULP statistics
    /// are exactly those of the moment-only pass, and only CKA sees a subsample; at or below
    /// it, the whole tensors are read, as before.
    #[test]
    fn above_the_cap_the_measurement_is_the_moment_only_pass() {
        let dir = tempfile::tempdir().unwrap();
        let (rows, cols) = (96, 40);
        let data = |seed: u64| uniform_f32(rows * cols, seed, -0.5, 0.5);
        let (x, e) = (data(1), data(2));
        let y: Vec<f32> = x.iter().zip(&e).map(|(x, e)| x + 0.3 * e).collect();
        for (name, v) in [("a", &x), ("b", &y)] {
            SafetensorsBuilder::new()
                .tensor_bf16("w", &[rows, cols], v)
                .write(&dir.path().join(format!("{name}.safetensors")))
                .unwrap();
        }
        let registry = crate::registry::builtin().unwrap();
        let text = |cap: usize| {
            format!(
                "[audit]\nname = \"t\"\n[models.a]\npath = \"a.safetensors\"\n\
                 [models.b]\npath = \"b.safetensors\"\n\
                 [[compare]]\na = \"a\"\nb = \"b\"\nmetrics = [\"cosine\", \"pearson\", \"cka\"]\n\
                 [compare.params.cka]\nmax-elements = {cap}\n\
                 [[compare]]\na = \"a\"\nb = \"b\"\nmetrics = [\"cosine\", \"pearson\"]\n"
            )
        };
        let path = dir.path().join("r.toml");
        let open = |m: &str| {
            registry
                .open(&dir.path().join(m), None, &Limits::default())
                .unwrap()
        };
        let (a, b) = (open("a.safetensors"), open("b.safetensors"));
        let taps = Taps {
            samples: Some(CHUNK_BUDGET),
            ulp: Some(CHUNK_BUDGET),
            observer: None,
        };
        for (cap, subsampled) in [(1024, true), (rows * cols, false)] {
            let recipe = crate::recipe::parse(&path, &text(cap), &registry).unwrap();
            let [with_cka, moments_only] = &recipe.compares[..] else {
                panic!("two compares");
            };
            let m = |c: &CompareSpec| {
                measure(c, &c.metrics, a.as_ref(), 0, b.as_ref(), 0, "w", &taps).unwrap()
            };
            let (got, want) = (m(with_cka), m(moments_only));
            let pass = pair_pass(a.as_ref(), 0, b.as_ref(), 0, rows * cols, &taps).unwrap();
            assert_eq!(got.moments, want.moments, "cap {cap}");
            assert_eq!(got.moments, pass.moments, "cap {cap}");
            assert_eq!(got.ulp, want.ulp);
            assert!(got.ulp.is_some());
            for (r, w) in got.results.iter().zip(&want.results) {
                assert_eq!((r.name, r.value), (w.name, w.value));
                assert!(r.subsample.is_none());
            }
            let cka = &got.results[2];
            assert_eq!(cka.subsample.is_some(), subsampled, "cap {cap}");
            if subsampled {
                // The pass's own samples (stored BF16), not a copy of in-memory tensors.
                assert_eq!(got.samples, pass.samples);
                let s = cka.subsample.unwrap();
                assert_eq!((s.kept, s.examples, s.features), (25, 96, 40));
            } else {
                let (va, vb) = (
                    read_tensor(a.as_ref(), 0, rows * cols).unwrap(),
                    read_tensor(b.as_ref(), 0, rows * cols).unwrap(),
                );
                assert_eq!(got.samples, Samples::of_tensors(&va, &vb, CHUNK_BUDGET));
            }
            assert!(cka.value.value().is_some());
        }
    }

    const CHUNK_BUDGET: usize = weightkin_core::CHUNK;
}
