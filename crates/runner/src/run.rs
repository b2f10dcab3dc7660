//! The pipeline: a validated recipe through every stage to its report.
//!
//! ```text
//! open ─▶ plan ─▶ (grids ─▶ align ─▶ plan again along the alignment) ─▶ measure ⇄ calibrate ─▶ judge ─▶ report
//! ```
//!
//! Measure and calibrate interleave batch by batch: the measure stage keeps each layered
//! pair's calibration subsample while the data is in cache, and the cross-layer null of a
//! class is computed as soon as its batch is done, so the subsamples held at once stay within
//! [`calibrate::SAMPLE_MEMORY`].
//!
//! Parallelism: tensor pairs run on the current rayon pool, and each pair's chunks run in
//! parallel within it ([`weightkin_core::pair_moments`]); rayon's work stealing keeps both
//! levels on one set of threads without oversubscription. Results are collected in pair order
//! and chunks merge in chunk order, so the report does not depend on the thread count.

use std::collections::BTreeMap;

use weightkin_core::{FileHashers, Registry, Samples};

use crate::align::{self, LayerRemap};
use crate::calibrate::{self, Class};
use crate::judge;
use crate::measure::grid::{self, LayeredModel};
use crate::measure::pairs::{self, Job, Measured};
use crate::measure::{structured, Side};
use crate::open::{FileHashes, Models};
use crate::plan::{self, Model, Pairing};
use crate::recipe::{Align, CompareSpec, Recipe};
use crate::report::{
    class_summaries, AuditInfo, Comparison, Report, Summary, TensorRow, Tool, SCHEMA_VERSION,
};
use crate::{Error, RunOptions};

/// Runs `recipe` and returns its report.
pub fn run(recipe: &Recipe, registry: &Registry, opts: &RunOptions<'_>) -> Result<Report, Error> {
    let mut models = Models::open(recipe, registry, opts)?;
    // Files' hashes: from the cache where it has them, else collected piecewise by the
    // comparisons' passes and completed after them.
    let hashes = FileHashes::begin(&mut models, opts);
    let mut comparisons = Vec::new();
    for cmp in &recipe.compares {
        let a = models.get(&cmp.a)?.named();
        let b = models.get(&cmp.b)?.named();
        let references = cmp
            .references
            .iter()
            .map(|r| Ok(models.get(r)?.named()))
            .collect::<Result<Vec<_>, Error>>()?;
        comparisons.push(compare(cmp, a, b, &references, &hashes.hashers, opts)?);
    }
    hashes.finish(&mut models, opts)?;
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
        models: models.into_reports(),
        comparisons,
    })
}

/// One comparison through plan, measure, calibrate and judge.
fn compare(
    cmp: &CompareSpec,
    a: Model<'_>,
    b: Model<'_>,
    references: &[Model<'_>],
    hashers: &FileHashers,
    opts: &RunOptions<'_>,
) -> Result<Comparison, Error> {
    let aligned = grids_and_alignment(cmp, a, b, opts)?;
    let pairing = plan::pair(cmp, a, b, &|name| aligned.remap.target(name));
    crate::open::prefetch(cmp, a, b, &pairing.pairs, opts)?;
    let ta = a.source.tensors();
    let elements: u64 = pairing.pairs.iter().map(|p| ta[p.a].numel as u64).sum();
    opts.progress
        .start(&format!("comparing {}", cmp.name), elements, "elements");
    let MeasuredPairs {
        measured,
        cross_layer,
    } = measure_and_calibrate(cmp, a, b, &pairing, hashers, opts)?;
    opts.progress.finish();

    let mut nulls = calibrate::nulls(cmp, a, cross_layer, references, opts)?;
    calibrate::shift_nulls(cmp, a, b, &pairing.pairs, &mut nulls)?;
    let judged: Vec<judge::Measured<'_>> = pairing
        .pairs
        .iter()
        .zip(&measured)
        .map(|(pair, m)| judge::Measured {
            pair,
            moments: m.moments,
            ulp: m.ulp,
        })
        .collect();
    let structured = |p: &plan::Pair| structured(Side::new(a.source, p.a));
    let (evidence, verdicts) = judge::judge(cmp, &judged, &structured, &nulls, &pairing.unpaired);
    let mut rows: Vec<TensorRow> = measured.into_iter().map(|m| m.row).collect();
    for (row, e) in rows.iter_mut().zip(evidence) {
        row.evidence = Some(e);
    }

    let metric_names: Vec<String> = cmp.metrics.iter().map(|m| m.spec.name.to_owned()).collect();
    let mut by_reason = BTreeMap::new();
    for u in &pairing.unpaired {
        *by_reason.entry(u.reason).or_insert(0) += 1;
    }
    Ok(Comparison {
        name: cmp.name.clone(),
        a: cmp.a.clone(),
        b: cmp.b.clone(),
        include: cmp.include.clone(),
        exclude: cmp.exclude.clone(),
        summary: Summary {
            compared: rows.len(),
            elements,
            not_compared: pairing.unpaired.len(),
            not_compared_by_reason: by_reason,
        },
        classes: class_summaries(&rows, &metric_names),
        metrics: metric_names,
        tensors: rows,
        not_compared: pairing.unpaired,
        grids: aligned.grids,
        skipped_grids: aligned.skipped_grids,
        alignments: aligned.alignments,
        verdicts,
    })
}

/// What the grids and the layer alignment give a comparison.
#[derive(Default)]
struct Aligned {
    grids: Vec<crate::report::Grid>,
    skipped_grids: Vec<crate::report::SkippedGrid>,
    alignments: Vec<crate::report::Alignment>,
    /// Where B's layers pair in A (empty unless `align = "auto"` found a meaningful
    /// alignment).
    remap: LayerRemap,
}

/// Layer grids and alignment come first: `align = "auto"` pairs along the alignment.
fn grids_and_alignment(
    cmp: &CompareSpec,
    a: Model<'_>,
    b: Model<'_>,
    opts: &RunOptions<'_>,
) -> Result<Aligned, Error> {
    let Some(spec) = &cmp.grid else {
        return Ok(Aligned::default());
    };
    let selected = |m: Model<'_>| plan::layered(m.names.iter().filter(|(n, _)| cmp.selects(n)));
    let (la, lb) = (selected(a), selected(b));
    let (grids, skipped_grids) = grid::grids(
        cmp,
        spec,
        LayeredModel {
            source: a.source,
            layered: &la,
        },
        LayeredModel {
            source: b.source,
            layered: &lb,
        },
        opts,
    )?;
    let mut alignments = align::from_grids(&grids);
    let remap = if cmp.align == Align::Auto {
        LayerRemap::apply(&mut alignments)
    } else {
        LayerRemap::default()
    };
    Ok(Aligned {
        grids,
        skipped_grids,
        alignments,
        remap,
    })
}

/// Measures every pair (in pair order) and computes each class's cross-layer null from the
/// subsamples its batch kept.
///
/// One pass per pair measures it, keeps its calibration subsample and histograms its ULP
/// distances while the data is in cache. Pairs run in batches of whole classes (all of a
/// batch's pairs in parallel) holding at most [`calibrate::SAMPLE_MEMORY`] bytes of
/// subsamples: each class's cross-layer null is computed when its batch is done, and the
/// subsamples dropped, so memory stays bounded however many tensors a model has.
fn measure_and_calibrate(
    cmp: &CompareSpec,
    a: Model<'_>,
    b: Model<'_>,
    pairing: &Pairing,
    hashers: &FileHashers,
    opts: &RunOptions<'_>,
) -> Result<MeasuredPairs, Error> {
    let pairs = &pairing.pairs;
    let (ta, tb) = (a.source.tensors(), b.source.tensors());
    let mut classes_of: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, p) in pairs.iter().enumerate() {
        classes_of.entry(&p.class).or_default().push(i);
    }
    let classes: Vec<Class<'_>> = calibrate::classes(&classes_of, pairs);
    let models = pairs::Models {
        a: a.source,
        b: b.source,
    };
    let mut slots: Vec<Option<Measured>> = (0..pairs.len()).map(|_| None).collect();
    let mut cross_layer: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for batch in calibrate::batches(&classes, pairs, ta) {
        let jobs: Vec<Job> = batch
            .iter()
            .flat_map(|&c| {
                let class = &classes[c];
                class.members.iter().map(move |&i| Job {
                    pair: i,
                    samples: class.sample_budget(pairs, i),
                })
            })
            .collect();
        let done = pairs::measure_batch(cmp, models, pairs, &jobs, hashers, opts)?;
        let mut samples: BTreeMap<usize, Samples> = BTreeMap::new();
        for mut m in done {
            if let Some(kept) = m.samples.take() {
                samples.insert(m.pair, kept);
            }
            let i = m.pair;
            slots[i] = Some(m);
        }
        for &c in &batch {
            let class = &classes[c];
            if class.cross_layer {
                let values = calibrate::cross_layer_null(&class.layered, pairs, ta, tb, &samples)?;
                if !values.is_empty() {
                    cross_layer.insert(class.name.to_owned(), values);
                }
            }
        }
    }
    let measured = slots
        .into_iter()
        .map(|s| s.ok_or(Error::Internal("a tensor pair was not measured")))
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(MeasuredPairs {
        measured,
        cross_layer,
    })
}

/// Every pair measured, and the cross-layer null samples by class.
struct MeasuredPairs {
    /// In pair order.
    measured: Vec<Measured>,
    /// Class → Pearson values of A's layer i against B's layer j ≠ i.
    cross_layer: BTreeMap<String, Vec<f64>>,
}
