//! Calibrate: what "unrelated" looks like for each tensor class of a comparison.
//!
//! Nulls, in order of preference (the judge falls back to the analytic null, mean 0 and s.d.
//! 1/√n, where a class has none of these):
//! * **reference**: Pearson of A's tensor against the same class in models the recipe
//!   declares independent of A ([`nulls`]);
//! * **cross-layer**: Pearson of A's layer i against B's layer j ≠ i of the same class
//!   ([`cross_layer_null`]), from the subsamples the measure stage kept while it streamed the
//!   pairs ([`weightkin_core::Taps::samples`]);
//! * **shift**: for matrices of a class with neither, A's matrix against B's shifted along
//!   one axis ([`shift_nulls`]).
//!
//! The subsamples are kept for whole classes at a time and dropped once a class's null is
//! computed, in batches bounded by [`SAMPLE_MEMORY`] ([`batches`]), so memory stays bounded
//! however many tensors a model has. The pipeline ([`crate::run`]) interleaves the two
//! stages batch by batch.

use std::collections::BTreeMap;

use rayon::prelude::*;
use weightkin_core::{
    pair_moments_sampled_with, read_examples, ExampleAxis, ExampleSample, Moments, Samples, Side,
    TensorInfo,
};

use crate::plan::{self, Model, Pair};
use crate::recipe::CompareSpec;
use crate::report::NullKind;
use crate::{Error, RunOptions};

/// Elements each cross-layer null sample keeps at most (16 Ki: one chunk — the first — kept
/// by the comparison's own pass, [`weightkin_core::Taps::samples`], so the null reads nothing
/// again; a reference null reads the same chunk with [`weightkin_core::pair_moments_sampled`]). Pearson on a
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
    /// Per vector pair (by tensor name): its Pearson without the one element that adds
    /// most to it ([`trimmed_pearson`]), which the p-value also has to pass ([`test()`]).
    pub trimmed: BTreeMap<String, f64>,
}

/// A tensor's Pearson against its null.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Test {
    /// The null's kind.
    pub kind: NullKind,
    /// The null's mean.
    pub mean: f64,
    /// The null's s.d. (floored at the analytic 1/√n).
    pub sd: f64,
    /// (r − mean)/s.d.
    pub z: f64,
    /// One-sided p-value (r above the null).
    pub p: f64,
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
            opts.checkpoint()?;
            let numel = ta[job.a].numel;
            let (x, y) = (Side::new(a.source, job.a), Side::new(job.reference, job.b));
            let m = pair_moments_sampled_with(x, y, numel, NULL_SAMPLE_BUDGET, opts.direct);
            let m = m.map_err(|source| Error::Measure {
                compare: cmp.name.clone(),
                tensor: ta[job.a].name.clone(),
                source: Box::new(source),
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
                trimmed: BTreeMap::new(),
            };
            (class, null)
        })
        .collect();
    for (class, r) in samples {
        let Some(r) = r else { continue };
        let entry = out.entry(class.to_owned()).or_insert_with(|| Null {
            kind: NullKind::Reference,
            samples: Vec::new(),
            trimmed: BTreeMap::new(),
        });
        // A reference null replaces a cross-layer one for the same class.
        if entry.kind != NullKind::Reference {
            *entry = Null {
                kind: NullKind::Reference,
                samples: Vec::new(),
                trimmed: BTreeMap::new(),
            };
        }
        entry.samples.push(r);
    }
    Ok(out)
}

/// Elements of each side a shift null reads at most (whole rows, evenly strided).
pub const SHIFT_SAMPLE_BUDGET: usize = 1 << 16;

/// Shifts per axis in a shift null.
const SHIFTS: usize = 32;

/// Shift nulls for the classes that have no empirical null: the class's pairs with B's
/// tensor shifted circularly ([`shift_null`]): along one axis of a matrix (rank ≥ 2, at
/// least two rows and two columns), or along a vector (one dimension of at least
/// [`VECTOR_MIN`] elements, other dimensions 1). Added to `nulls`; classes with a null keep it.
///
/// Why matrices: the analytic null (Pearson of independent vectors) assumes i.i.d.
/// elements. A trained matrix with one axis indexed by something both models share — an
/// output head over a vocabulary, a classifier over labels — carries a low-rank part whose
/// shared-axis factor is the same in unrelated models; on the trained-model zoo such heads
/// reached Pearson 0.15 and z 11 against the analytic null (VALIDATION.md, "Trained models").
/// Shifting B along one axis keeps that structure aligned on the other axis and destroys
/// shared ancestry, so it measures exactly the spread the analytic null misses, for derived
/// and unrelated pairs alike.
///
/// Why vectors: a vector's order carries structure shared by unrelated models only where
/// neighbouring elements are alike — the gate blocks of an LSTM or GRU bias (`[i f g o]`,
/// each block with its own typical value), a smooth profile. A circular shift by s keeps
/// such structure partly aligned (a block overlaps itself shifted by less than its length),
/// so the shifted Pearson values spread as far as that structure makes unrelated vectors
/// correlate; for a vector whose order means nothing shared (a conv layer's bias over its
/// own channels) the shifts are permutations, and the null is the permutation null, s.d.
/// ≈ 1/√n, the analytic value (floored there by the judge). What no null from one pair can
/// see is a vector indexed by a shared label set (a classifier bias over the same classes):
/// declare a reference model for that (`references = [...]`).
pub fn shift_nulls(
    cmp: &CompareSpec,
    a: Model<'_>,
    b: Model<'_>,
    pairs: &[Pair],
    nulls: &mut Nulls,
) -> Result<(), Error> {
    let wanted: Vec<&Pair> = pairs
        .iter()
        .filter(|p| nulls.get(&p.class).is_none_or(|n| n.samples.is_empty()))
        .collect();
    // In parallel, collected in pair order: the same samples for any thread count.
    let measured = wanted
        .par_iter()
        .map(|p| {
            let (x, y) = (Side::new(a.source, p.a), Side::new(b.source, p.b));
            shift_null(x, y).map_err(|source| Error::Measure {
                compare: cmp.name.clone(),
                tensor: p.name.clone(),
                source: Box::new(source),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let mut by_class: BTreeMap<&str, Null> = BTreeMap::new();
    for (p, shift) in wanted.iter().zip(measured) {
        if shift.samples.is_empty() {
            continue;
        }
        let null = by_class.entry(&p.class).or_insert_with(|| Null {
            kind: NullKind::Shift,
            samples: Vec::new(),
            trimmed: BTreeMap::new(),
        });
        null.samples.extend(shift.samples);
        if let Some(t) = shift.trimmed {
            null.trimmed.insert(p.name.clone(), t);
        }
    }
    for (class, null) in by_class {
        nulls.insert(class.to_owned(), null);
    }
    Ok(())
}

/// Smallest vector that gets a shift null: below it, too few distinct shifts.
pub const VECTOR_MIN: usize = 8;

/// The shift null of one pair.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShiftNull {
    /// Pearson of A against B shifted, one per shift.
    pub samples: Vec<f64>,
    /// For a vector, its Pearson without its most influential element ([`trimmed_pearson`]).
    pub trimmed: Option<f64>,
}

/// The length of a vector: a tensor with exactly one dimension above 1.
pub fn vector_len(shape: &[usize]) -> Option<usize> {
    let mut wide = shape.iter().copied().filter(|&d| d > 1);
    match (wide.next(), wide.next()) {
        (Some(n), None) => Some(n),
        _ => None,
    }
}

/// The shift null of one pair: a matrix's ([`shift_null_matrix`], of at most
/// [`SHIFT_SAMPLE_BUDGET`] elements of evenly strided whole rows), or a vector's
/// ([`shift_null_vector`], its first [`SHIFT_SAMPLE_BUDGET`] elements). Empty for a tensor
/// that is neither, or whose single row exceeds the budget.
pub fn shift_null(a: Side<'_>, b: Side<'_>) -> weightkin_core::Result<ShiftNull> {
    let info = a.info();
    if let Some(n) = vector_len(&info.shape) {
        if n < VECTOR_MIN {
            return Ok(ShiftNull::default());
        }
        let kept = n.min(SHIFT_SAMPLE_BUDGET);
        let (mut va, mut vb) = (vec![0f32; kept], vec![0f32; kept]);
        a.read_f32(0, &mut va)?;
        b.read_f32(0, &mut vb)?;
        return Ok(ShiftNull {
            samples: shift_null_vector(&va, &vb),
            trimmed: trimmed_pearson(&va, &vb),
        });
    }
    let Some(&rows) = info.shape.first() else {
        return Ok(ShiftNull::default());
    };
    if info.shape.len() < 2 || rows < 2 || info.numel / rows < 2 {
        return Ok(ShiftNull::default());
    }
    let cols = info.numel / rows;
    let (va, vb, rows) =
        match ExampleSample::plan(&info.shape, ExampleAxis::Rows, SHIFT_SAMPLE_BUDGET) {
            None => (a.read(info.numel)?, b.read(info.numel)?, rows),
            Some(s) if s.kept >= 2 => (read_examples(a, &s)?, read_examples(b, &s)?, s.kept),
            Some(_) => return Ok(ShiftNull::default()),
        };
    Ok(ShiftNull {
        samples: shift_null_matrix(&va, &vb, rows, cols),
        trimmed: None,
    })
}

/// The shift null of a `rows × cols` matrix pair (row-major): Pearson of A against B
/// shifted circularly by `⌊i·n/(k+1)⌋`, i = 1..=k (k = min(32, n − 1)), along its columns
/// and, separately, along its rows; the axis whose values spread more is kept, since either
/// may be the shared one.
pub fn shift_null_matrix(va: &[f32], vb: &[f32], rows: usize, cols: usize) -> Vec<f64> {
    let n = rows.saturating_mul(cols);
    let (Some(va), Some(vb)) = (va.get(..n), vb.get(..n)) else {
        return Vec::new();
    };
    // Each row rotated left by s: element (r, c) is B's (r, (c + s) mod cols).
    let by_columns = shifted(va, vb, cols, |moved, s| {
        for (m, row) in moved.chunks_exact_mut(cols).zip(vb.chunks_exact(cols)) {
            rotate_into(m, row, s);
        }
    });
    // The rows rotated up by s: element (r, c) is B's ((r + s) mod rows, c).
    let by_rows = shifted(va, vb, rows, |moved, s| rotate_into(moved, vb, s * cols));
    let spread = |v: &[f64]| crate::stats::mean_sd(v).map_or(0.0, |(_, sd)| sd);
    if spread(&by_rows) > spread(&by_columns) {
        by_rows
    } else {
        by_columns
    }
}

/// The shift null of a vector pair: Pearson of A against B shifted circularly by
/// `⌊i·n/(k+1)⌋`, i = 1..=k (k = min(32, n − 1)).
pub fn shift_null_vector(va: &[f32], vb: &[f32]) -> Vec<f64> {
    let n = va.len().min(vb.len());
    let vb = &vb[..n];
    shifted(&va[..n], vb, n, |moved, s| rotate_into(moved, vb, s))
}

/// `out[i] = v[(i + s) mod len]`: `v` rotated left by `s` (`s < len`), in two copies.
fn rotate_into(out: &mut [f32], v: &[f32], s: usize) {
    let s = s.min(v.len());
    let (head, tail) = out.split_at_mut(v.len() - s);
    head.copy_from_slice(&v[s..]);
    tail.copy_from_slice(&v[..s]);
}

/// Pearson of two vectors without the element whose centred product adds most to it.
///
/// Why: a vector with one dominant element on each side (a conv bias with one large
/// channel, a LayerNorm weight with an outlier dimension) correlates at |r| ≈ 0.5 with
/// another such vector whenever the two dominant elements share an index, which for
/// unrelated vectors happens with probability ≈ 1/n: far more often than a normal tail at
/// that z says (VALIDATION.md, "Single tensors of real models"). Dropping the one element
/// that contributes most removes such a coincidence and leaves a real correlation (a copy
/// correlates in every element) nearly unchanged; the judge's p-value is the larger of the
/// two ([`test()`]). `None` for fewer than three elements or a constant side.
pub fn trimmed_pearson(va: &[f32], vb: &[f32]) -> Option<f64> {
    let n = va.len().min(vb.len());
    if n < 3 {
        return None;
    }
    let mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
    let (ma, mb) = (mean(&va[..n]), mean(&vb[..n]));
    let top = (0..n)
        .map(|i| (f64::from(va[i]) - ma) * (f64::from(vb[i]) - mb))
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, p)| {
            if p > best.1 {
                (i, p)
            } else {
                best
            }
        })
        .0;
    let keep = |v: &[f32]| -> Vec<f32> {
        v[..n]
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != top)
            .map(|(_, &x)| x)
            .collect()
    };
    Moments::of_tensors(&keep(va), &keep(vb)).pearson().value()
}

/// Pearson `r` of tensor `tensor` (`n` elements) against its null: the samples' mean and
/// s.d. where there are samples, the s.d. floored at the analytic 1/√n (a null narrower
/// than independent i.i.d. vectors would be an artefact of few samples); else the analytic
/// null (mean 0, s.d. 1/√n). The p-value is the normal upper tail of z, or for a vector
/// with a shift null the larger of that and the same tail for its Pearson without its most
/// influential element ([`trimmed_pearson`]).
pub fn test(null: Option<&Null>, n: u64, tensor: &str, r: f64) -> Test {
    let analytic_sd = 1.0 / (n as f64).max(1.0).sqrt();
    let (kind, mean, sd) = match null {
        Some(null) if !null.samples.is_empty() => {
            let (mu, sd) = crate::stats::mean_sd(&null.samples).unwrap_or((0.0, analytic_sd));
            (null.kind, mu, sd.max(analytic_sd))
        }
        _ => (NullKind::Analytic, 0.0, analytic_sd),
    };
    let z = (r - mean) / sd;
    let mut p = crate::stats::upper_tail(z);
    if let Some(t) = null.and_then(|n| n.trimmed.get(tensor)) {
        p = p.max(crate::stats::upper_tail((t - mean) / sd));
    }
    Test {
        kind,
        mean,
        sd,
        z,
        p,
    }
}

/// Pearson of `va` against `vb` shifted by `fill(moved, s)` (which writes every element of
/// `moved`, `va`'s length), for the shifts of an axis of length `n`.
fn shifted(va: &[f32], vb: &[f32], n: usize, fill: impl Fn(&mut [f32], usize)) -> Vec<f64> {
    let k = SHIFTS.min(n.saturating_sub(1));
    let mut moved = vec![0f32; vb.len()];
    (1..=k)
        .filter_map(|i| {
            let s = (i * n / (k + 1)).max(1);
            fill(&mut moved, s);
            Moments::of_tensors(va, &moved).pearson().value()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use weightkin_core::testing::{uniform_f32, SafetensorsBuilder};
    use weightkin_core::{Format, Limits};

    /// Two unrelated "heads" sharing a label-side factor: u₁fᵀ + noise and u₂fᵀ + noise.
    /// Their Pearson spreads like cos(u₁, u₂), far beyond 1/√n; the shift null sees it.
    #[test]
    fn a_shared_label_factor_widens_the_shift_null() {
        let (rows, cols) = (80, 64);
        let f = uniform_f32(rows, 1, 0.0, 3.0);
        let head = |seed: u64| -> Vec<f32> {
            let u = uniform_f32(cols, seed, -1.0, 1.0);
            let e = uniform_f32(rows * cols, seed + 100, -0.3, 0.3);
            (0..rows * cols)
                .map(|i| f[i / cols] * u[i % cols] + e[i])
                .collect()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.safetensors");
        let mut builder = SafetensorsBuilder::new();
        let heads: Vec<Vec<f32>> = (0..2).map(|k| head(10 + k)).collect();
        for (k, h) in heads.iter().enumerate() {
            builder = builder.tensor_f32(&format!("h{k}"), &[rows, cols], h);
        }
        builder.write(&path).unwrap();
        let src = weightkin_core::safetensors::FORMAT
            .open(&path, &Limits::default())
            .unwrap();
        let (a, b) = (Side::new(src.as_ref(), 0), Side::new(src.as_ref(), 1));
        let null = shift_null(a, b).unwrap().samples;
        assert_eq!(null.len(), SHIFTS);
        let (_, sd) = crate::stats::mean_sd(&null).unwrap();
        let elementwise = 1.0 / ((rows * cols) as f64).sqrt();
        assert!(sd > 5.0 * elementwise, "sd {sd} vs 1/√n {elementwise}");
        // A vector shorter than VECTOR_MIN has no shift null.
        let v = SafetensorsBuilder::new().tensor_f32("v", &[7], &[1.0; 7]);
        let vpath = dir.path().join("v.safetensors");
        v.write(&vpath).unwrap();
        let vs = weightkin_core::safetensors::FORMAT
            .open(&vpath, &Limits::default())
            .unwrap();
        let s = Side::new(vs.as_ref(), 0);
        assert_eq!(shift_null(s, s).unwrap(), ShiftNull::default());
    }

    /// Two unrelated gate-blocked biases (four blocks with their own typical values, as an
    /// LSTM's `[i f g o]`): the vector shift null keeps the blocks partly aligned and widens
    /// past 1/√n; two exchangeable vectors get about 1/√n.
    #[test]
    fn gate_blocks_widen_the_vector_shift_null() {
        let (h, blocks) = (64, [0.0f32, 1.0, 0.0, -0.5]);
        let bias = |seed: u64| -> Vec<f32> {
            let e = uniform_f32(4 * h, seed, -0.3, 0.3);
            (0..4 * h).map(|i| blocks[i / h] + e[i]).collect()
        };
        let (x, y) = (bias(1), bias(2));
        let n = (4 * h) as f64;
        let (_, sd) = crate::stats::mean_sd(&shift_null_vector(&x, &y)).unwrap();
        assert!(sd > 3.0 / n.sqrt(), "gate blocks: sd {sd}");
        let (u, v) = (
            uniform_f32(4 * h, 3, -1.0, 1.0),
            uniform_f32(4 * h, 4, -1.0, 1.0),
        );
        let (_, sd) = crate::stats::mean_sd(&shift_null_vector(&u, &v)).unwrap();
        assert!(
            sd < 1.5 / n.sqrt() && sd > 0.5 / n.sqrt(),
            "exchangeable: sd {sd}"
        );
    }

    /// One dominant element on each side, at the same index by chance: Pearson ≈ 0.5 and a
    /// normal p far below any α, but without that element nothing is left, and the judge's
    /// p is not significant. A copy with noise stays significant.
    #[test]
    fn a_single_aligned_outlier_is_not_significant() {
        let n = 128;
        let mut x = uniform_f32(n, 5, -0.1, 0.1);
        let mut y = uniform_f32(n, 6, -0.1, 0.1);
        x[17] = 1.5;
        y[17] = 1.2;
        let null = |x: &[f32], y: &[f32]| Null {
            kind: NullKind::Shift,
            samples: shift_null_vector(x, y),
            trimmed: trimmed_pearson(x, y)
                .map(|t| ("v".to_owned(), t))
                .into_iter()
                .collect(),
        };
        let r = Moments::of_tensors(&x, &y).pearson().value().unwrap();
        assert!(r > 0.4, "r {r}");
        let t = test(Some(&null(&x, &y)), n as u64, "v", r);
        assert!(crate::stats::upper_tail(t.z) < 1e-6, "z {}", t.z);
        assert!(t.p > 0.01, "p {}", t.p);
        // Another tensor's name: no trimmed value, the normal tail.
        assert_eq!(
            test(Some(&null(&x, &y)), n as u64, "w", r).p,
            crate::stats::upper_tail(t.z)
        );
        let e = uniform_f32(n, 7, -0.02, 0.02);
        let copy: Vec<f32> = x.iter().zip(&e).map(|(a, e)| a + e).collect();
        let r = Moments::of_tensors(&x, &copy).pearson().value().unwrap();
        let t = test(Some(&null(&x, &copy)), n as u64, "v", r);
        assert!(t.p < 1e-6, "copy: p {}", t.p);
    }
}
