//! Calibrate: what "unrelated" looks like for each tensor class of a comparison.
//!
//! Nulls, in order of preference (the judge falls back to the analytic null, mean 0 and s.d.
//! 1/√n, where a class has none of these):
//! * **reference**: Pearson of A's tensor against the same class in models the recipe
//!   declares independent of A ([`nulls`]);
//! * **cross-layer**: Pearson of A's layer i against B's layer j ≠ i of the same class
//!   ([`cross_layer_null`]), from the subsamples the measure stage kept while it streamed the
//!   pairs ([`weightkin_core::Taps::samples`]).
//!
//! The subsamples are kept for whole classes at a time and dropped once a class's null is
//! computed, in batches bounded by [`SAMPLE_MEMORY`] ([`batches`]), so memory stays bounded
//! however many tensors a model has. The pipeline ([`crate::run`]) interleaves the two
//! stages batch by batch.

use std::collections::BTreeMap;

use rayon::prelude::*;
use weightkin_core::{pair_moments_sampled, Samples, Side, TensorInfo};

use crate::plan::{self, Model, Pair};
use crate::recipe::CompareSpec;
use crate::report::NullKind;
use crate::{Error, RunOptions};

/// Elements each cross-layer null sample keeps at most (16 Ki: one chunk — the first — kept
/// by the comparison's own pass, [`weightkin_core::Taps::samples`], so the null reads nothing
/// again; a reference null reads the same chunk with [`pair_moments_sampled`]). Pearson on a
/// subsample estimates the tensors' Pearson without bias, with sampling spread
/// ≈ 1/√(16 Ki) ≈ 0.008: far below the minimum effect size (0.1) a verdict asks for, and only
/// ever widening the null (conservative). Larger budgets cost memory, copying and page
/// faults for no change in any verdict (BENCHMARKS.md, "Compare throughput": 1 Mi → 16 Ki
/// left every verdict of the test suite and of `VALIDATION.md` as it was).
pub const NULL_SAMPLE_BUDGET: usize = 1 << 14;

/// Layered tensors a class needs for a cross-layer null.
pub const CROSS_LAYER_MIN: usize = 3;

/// Most bytes of calibration subsamples held at once, counted as f32 on both sides: 64 MiB,
/// a batch of 512 layered tensors at the default budget; a single larger class is a batch of
/// its own.
pub const SAMPLE_MEMORY: usize = 64 << 20;

/// Null samples of one class: Pearson values of tensor pairs known not to share ancestry.
#[derive(Debug, Clone, PartialEq)]
pub struct Null {
    /// Where the samples come from.
    pub kind: NullKind,
    /// The Pearson values.
    pub samples: Vec<f64>,
}

/// Nulls by class.
pub type Nulls = BTreeMap<String, Null>;

/// One tensor class of a comparison, as calibration plans it.
#[derive(Debug)]
pub struct Class<'c> {
    /// The class name.
    pub name: &'c str,
    /// Its pairs (indices into the comparison's pairs), in pair order.
    pub members: &'c [usize],
    /// Its layered pairs, in pair order.
    pub layered: Vec<usize>,
    /// Whether it gets a cross-layer null (at least [`CROSS_LAYER_MIN`] layered pairs).
    pub cross_layer: bool,
}

impl Class<'_> {
    /// The subsample budget for pair `i` of this class: [`NULL_SAMPLE_BUDGET`] for a layered
    /// pair of a class with a cross-layer null, else none.
    pub fn sample_budget(&self, pairs: &[Pair], i: usize) -> Option<usize> {
        (self.cross_layer && pairs[i].layer.is_some()).then_some(NULL_SAMPLE_BUDGET)
    }

    /// Upper bound of the subsample bytes the class holds (f32, both sides).
    fn sample_bytes(&self, pairs: &[Pair], ta: &[TensorInfo]) -> usize {
        if !self.cross_layer {
            return 0;
        }
        self.layered
            .iter()
            .map(|&i| 8 * ta[pairs[i].a].numel.min(NULL_SAMPLE_BUDGET))
            .sum()
    }
}

/// The comparison's classes, sorted by name.
pub fn classes<'c>(
    classes_of: &'c BTreeMap<&'c str, Vec<usize>>,
    pairs: &[Pair],
) -> Vec<Class<'c>> {
    classes_of
        .iter()
        .map(|(name, members)| {
            let layered: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&i| pairs[i].layer.is_some())
                .collect();
            Class {
                name,
                members,
                cross_layer: layered.len() >= CROSS_LAYER_MIN,
                layered,
            }
        })
        .collect()
}

/// Groups consecutive classes into batches whose subsamples fit [`SAMPLE_MEMORY`]
/// (indices into `classes`).
pub fn batches(classes: &[Class<'_>], pairs: &[Pair], ta: &[TensorInfo]) -> Vec<Vec<usize>> {
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut held = 0;
    for (c, class) in classes.iter().enumerate() {
        let bytes = class.sample_bytes(pairs, ta);
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
    batches
}

/// The cross-layer null of one class from its pairs' subsamples: A's layer `i` against B's
/// layer `j ≠ i`, at offsets 1 and ⌊L/2⌋ through the class's `members` (pair indices in
/// pair order), wherever the shapes agree. Pearson of each, in that order.
pub fn cross_layer_null(
    members: &[usize],
    pairs: &[Pair],
    ta: &[TensorInfo],
    tb: &[TensorInfo],
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

/// One reference-null sample to measure: A's tensor `a` against tensor `b` of a reference.
struct ReferenceJob<'a> {
    class: String,
    reference: &'a dyn weightkin_core::WeightSource,
    a: usize,
    b: usize,
}

/// Empirical nulls per class: reference models (declared independent of A) where they have
/// the class, else the cross-layer samples measured with the comparison
/// ([`cross_layer_null`]).
pub fn nulls(
    cmp: &CompareSpec,
    a: Model<'_>,
    cross_layer: BTreeMap<String, Vec<f64>>,
    references: &[Model<'_>],
    opts: &RunOptions<'_>,
) -> Result<Nulls, Error> {
    let ta = a.source.tensors();
    let mut jobs: Vec<ReferenceJob<'_>> = Vec::new();
    for r in references {
        let ref_pairs = plan::pair(cmp, a, *r, &|_| None);
        for p in ref_pairs.pairs {
            jobs.push(ReferenceJob {
                class: p.class,
                reference: r.source,
                a: p.a,
                b: p.b,
            });
        }
    }
    let total: u64 = jobs
        .iter()
        .map(|j| ta[j.a].numel.min(NULL_SAMPLE_BUDGET) as u64)
        .sum();
    opts.progress
        .start(&format!("null samples {}", cmp.name), total, "elements");
    let samples = jobs
        .par_iter()
        .map(|job| {
            let numel = ta[job.a].numel;
            let (x, y) = (Side::new(a.source, job.a), Side::new(job.reference, job.b));
            let m = pair_moments_sampled(x, y, numel, NULL_SAMPLE_BUDGET).map_err(|source| {
                Error::Measure {
                    compare: cmp.name.clone(),
                    tensor: ta[job.a].name.clone(),
                    source: Box::new(source),
                }
            })?;
            opts.progress.advance(numel.min(NULL_SAMPLE_BUDGET) as u64);
            Ok((job.class.as_str(), m.pearson().value()))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    opts.progress.finish();
    let mut out: Nulls = cross_layer
        .into_iter()
        .map(|(class, samples)| {
            let null = Null {
                kind: NullKind::CrossLayer,
                samples,
            };
            (class, null)
        })
        .collect();
    for (class, r) in samples {
        let Some(r) = r else { continue };
        let entry = out.entry(class.to_owned()).or_insert_with(|| Null {
            kind: NullKind::Reference,
            samples: Vec::new(),
        });
        // A reference null replaces a cross-layer one for the same class.
        if entry.kind != NullKind::Reference {
            *entry = Null {
                kind: NullKind::Reference,
                samples: Vec::new(),
            };
        }
        entry.samples.push(r);
    }
    Ok(out)
}
