//! CKA for many pairs that share their matrices: the layer × layer grids (issue 17).
//!
//! A grid of L_A × L_B CKAs computed one pair at a time ([`super::cka`]) centres both matrices
//! and forms three Gram products per cell, so each layer's own terms are recomputed L times
//! and the work is O(L²) heavy products. Here each side is *prepared* once per layer
//! ([`Cka::prepare`]: the centred examples × features matrix X and, for the debiased
//! estimator, its squared row norms), and the traces are split by what they depend on:
//!
//! * tr(KK) = ‖XXᵀ‖²_F and the row norms belong to one layer: computed once per layer.
//! * tr(KL) = ⟨XXᵀ, YYᵀ⟩_F, the only term of a cell, is a Frobenius inner product of two
//!   n × n Grams: n² multiply-adds per cell once the Grams exist, instead of a matrix product.
//!
//! **Memory bound.** L Grams of n × n do not always fit (24 MLP layers of n = 2816 rows are
//! 760 MB in f32), so a Gram is cut into *slabs*: row ranges of its lower triangle
//! ([`Slab`], [`slabs`]), sized so that one slab of every layer of A fits a byte budget. The
//! caller holds A's slab of every layer, streams B's layers past it, and goes on to the next
//! slab: every Gram entry is computed once (the triangle only, half a full product), and a
//! layer is read and centred once per slab — the only repeated work, O(n·p) per slab against
//! the slab's O(n·p·rows) product. Symmetry gives ⟨K, L⟩ = 2·Σ_{b≤a} K_ab L_ab − Σ_a K_aa L_aa
//! ([`Slab::dot`]).
//!
//! **Numerical contract.** Centring and row norms are [`super::cka`]'s own (f64, the same
//! code), the Gram entries are f32 products (faer's matrix multiply: 2–4× candle-core's on
//! the 2-core benchmark machine, see BENCHMARKS.md, "CKA layer grids"), and every sum of
//! products is in f64 in a fixed order, independent of the thread count. The value comes
//! from the same debiasing code as [`super::cka`]. It differs from the per-pair CKA
//! only by the rounding of the f32 Gram entries (the per-pair path multiplies with
//! candle-core, and for tall matrices in the feature form): at most 1e-6 after rounding to
//! 6 decimals on the demo and the 24-layer benchmark pair, 2e-6 on MiniLM, where the
//! per-pair value is the one further from the exact f64 value (the workspace's
//! `tests/grids.rs`, BENCHMARKS.md "CKA layer grids").

use std::ops::Range;

use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Mat, MatRef, Par};
use weightkin_core::{MetricValue, Undefined};

use super::{centred, from_traces, row_norms, Cka, Estimator, Examples};

/// One side of many CKAs: a tensor's centred examples, ready to give slabs of its Gram.
pub struct Prepared {
    /// Centred examples × features, row-major (`n × p`).
    centred: Vec<f32>,
    n: usize,
    p: usize,
    terms: SideTerms,
}

/// What a cell needs of one side besides the cross term: the example count, the squared
/// row norms of the centred examples (debiased estimator only), and tr(KK), which the
/// caller adds up slab by slab ([`SideTerms::add_self_trace`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SideTerms {
    n: usize,
    norms: Option<Vec<f64>>,
    self_trace: f64,
}

impl SideTerms {
    /// Adds one slab's share of tr(KK): `slab.dot(&slab)` ([`Slab::dot`]), in slab order.
    pub fn add_self_trace(&mut self, share: f64) {
        self.self_trace += share;
    }
}

impl Cka {
    /// Prepares one side of many CKAs: `tensor` is row-major with `shape`, exactly what
    /// [`Metric::evaluate`](weightkin_core::Metric::evaluate) would be handed for it (the
    /// whole tensor, or the executor's subsample of whole examples). The reasons a tensor
    /// has no CKA are the per-pair ones, in the same order: empty, NaN/inf, not a matrix,
    /// too few examples. (For a subsample, the per-pair path also reports NaN/inf anywhere
    /// in the whole tensor; the caller checks that.)
    pub fn prepare(&self, tensor: &[f32], shape: &[usize]) -> Result<Prepared, Undefined> {
        if tensor.is_empty() {
            return Err(Undefined::Empty);
        }
        if !tensor.iter().all(|v| v.is_finite()) {
            return Err(Undefined::NonFinite);
        }
        if shape.len() < 2 {
            return Err(Undefined::NotAMatrix);
        }
        let rows = shape[0];
        let cols = tensor.len() / rows.max(1);
        let (n, p) = match self.examples {
            Examples::Rows => (rows, cols),
            Examples::Columns => (cols, rows),
        };
        let least = match self.estimator {
            Estimator::Debiased => 4,
            Estimator::Biased => 2,
        };
        if n < least {
            return Err(Undefined::TooFewExamples);
        }
        let x = centred(tensor, n, p, self.examples);
        let norms = (self.estimator == Estimator::Debiased).then(|| row_norms(&x, p));
        Ok(Prepared {
            centred: x,
            n,
            p,
            terms: SideTerms {
                n,
                norms,
                self_trace: 0.0,
            },
        })
    }

    /// The CKA of a cell from both sides' terms (every slab's self term added) and the
    /// cross term ⟨K, L⟩ (the sum of [`Slab::dot`] over the slabs). Same debiasing and
    /// rounding as the per-pair CKA.
    pub fn from_terms(&self, a: &SideTerms, b: &SideTerms, cross: f64) -> MetricValue {
        if a.n != b.n {
            return MetricValue::Undefined(Undefined::BackendFailed);
        }
        let norms = match (&a.norms, &b.norms) {
            (Some(x), Some(y)) => Some((x.as_slice(), y.as_slice())),
            _ => None,
        };
        from_traces(a.n, [cross, a.self_trace, b.self_trace], norms)
    }
}

impl Prepared {
    /// Examples (the Gram's order).
    pub fn examples(&self) -> usize {
        self.n
    }

    /// The side's terms (its self trace still zero: the caller adds the slabs').
    pub fn terms(&self) -> SideTerms {
        self.terms.clone()
    }

    /// Rows `rows` of the lower triangle of the Gram K = XXᵀ: row a holds K_ab for b ≤ a.
    /// Costs |rows| · rows.end · p multiply-adds (the diagonal block's triangle only).
    pub fn slab(&self, rows: Range<usize>) -> Slab {
        let (r0, r1) = (rows.start.min(self.n), rows.end.min(self.n));
        let h = r1.saturating_sub(r0);
        let x = MatRef::from_row_major_slice(&self.centred, self.n, self.p);
        let xr = x.subrows(r0, h);
        // Column a of `t` is row r0 + a of K (K is symmetric): t = X[..r1] · X[rows]ᵀ,
        // column-major, so each row of the triangle is a contiguous run of a column.
        let mut t = Mat::<f32>::zeros(r1, h);
        if r0 > 0 {
            matmul(
                t.as_mut().subrows_mut(0, r0),
                Accum::Replace,
                x.subrows(0, r0),
                xr.transpose(),
                1.0,
                Par::Seq,
            );
        }
        // The diagonal block: entries (r0 + i, r0 + a) with i ≤ a, its upper triangle.
        triangular::matmul(
            t.as_mut().subrows_mut(r0, h),
            BlockStructure::TriangularUpper,
            Accum::Replace,
            xr,
            BlockStructure::Rectangular,
            xr.transpose(),
            BlockStructure::Rectangular,
            1.0,
            Par::Seq,
        );
        let mut values = Vec::with_capacity(triangle_entries(r0, r1));
        for a in 0..h {
            values.extend_from_slice(&t.col_as_slice(a)[..=r0 + a]);
        }
        Slab {
            rows: r0..r1,
            values,
        }
    }
}

/// Rows of the lower triangle of a Gram matrix, packed: row a holds K_a0 … K_aa.
#[derive(Debug, Clone, PartialEq)]
pub struct Slab {
    rows: Range<usize>,
    values: Vec<f32>,
}

impl Slab {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.values.len() * std::mem::size_of::<f32>()
    }

    /// This slab's share of ⟨K, L⟩_F for K, L the Grams the two slabs (same rows) come from:
    /// 2·Σ_{b≤a} K_ab L_ab − Σ_a K_aa L_aa, products and sums in f64 in a fixed order.
    /// Slabs of different rows give 0 (never paired by a caller that follows [`slabs`]).
    pub fn dot(&self, other: &Slab) -> f64 {
        if self.rows != other.rows || self.values.len() != other.values.len() {
            return 0.0;
        }
        let all = dot_f64(&self.values, &other.values);
        let mut diag = 0f64;
        let mut end = 0;
        for a in self.rows.clone() {
            end += a + 1;
            let (k, l) = (self.values[end - 1], other.values[end - 1]);
            diag += f64::from(k) * f64::from(l);
        }
        2.0 * all - diag
    }
}

/// Σ x·y in f64, over 8 interleaved partial sums added in a fixed order at the end: the
/// products of f32 values are exact in f64, the order does not depend on anything but the
/// length, and the 8 lanes keep the loop from waiting on one chain of additions.
fn dot_f64(x: &[f32], y: &[f32]) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0f64; LANES];
    let (xc, yc) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (a, b) in xc.zip(yc) {
        for l in 0..LANES {
            acc[l] += f64::from(a[l]) * f64::from(b[l]);
        }
    }
    for (l, (a, b)) in xr.iter().zip(yr).enumerate() {
        acc[l] += f64::from(*a) * f64::from(*b);
    }
    let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
    ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
}

/// Entries of rows `r0..r1` of an n × n lower triangle.
fn triangle_entries(r0: usize, r1: usize) -> usize {
    (r1 * (r1 + 1) - r0 * (r0 + 1)) / 2
}

/// Row ranges cutting the lower triangle of an `n × n` Gram into slabs such that `held`
/// slabs (one per layer of the side held in memory) take at most about `budget` bytes (a
/// slab may exceed its share by one row); as few slabs as that allows, of about equal
/// numbers of entries, and at least one row each, so a budget too small for one row still
/// progresses.
pub fn slabs(n: usize, held: usize, budget: usize) -> Vec<Range<usize>> {
    let total = triangle_entries(0, n);
    let per_slab = (budget / std::mem::size_of::<f32>() / held.max(1)).max(1);
    let count = total.div_ceil(per_slab).clamp(1, n.max(1));
    let mut out = Vec::with_capacity(count);
    let mut r0 = 0;
    let mut k = 0u128;
    while r0 < n {
        k += 1;
        // The last row r1 such that rows 0..r1 hold at most k/count of the entries, and
        // the slab at most its share (or its first row).
        let goal = (total as u128 * k.min(count as u128) / count as u128) as usize;
        let mut r1 = r0 + 1;
        while r1 < n
            && triangle_entries(0, r1 + 1) <= goal
            && triangle_entries(r0, r1 + 1) <= per_slab
        {
            r1 += 1;
        }
        out.push(r0..r1);
        r0 = r1;
    }
    out
}

/// Multiply-adds of a grid of `la × lb` cells of `n × p` matrices computed from prepared
/// sides cut into `slab_count` slabs: every layer's Gram triangle once, every cell's
/// ⟨K, L⟩ once, and each layer read and centred once per slab (counted as 8 multiply-adds
/// per element: an estimate of a BF16 read, an f64 centring and the copies).
pub fn grid_cost(n: usize, p: usize, la: usize, lb: usize, slab_count: usize) -> f64 {
    let (n, p, la, lb, s) = (n as f64, p as f64, la as f64, lb as f64, slab_count as f64);
    (la + lb) * (n * n * p / 2.0 + s * 8.0 * n * p) + la * lb * n * n / 2.0
}

/// Multiply-adds of the same grid computed pair by pair ([`super::cka`]: the cheaper of the
/// feature form, three p × p products, and the sample form, two n × n products, per cell).
pub fn per_pair_cost(n: usize, p: usize, la: usize, lb: usize) -> f64 {
    let (n, p, la, lb) = (n as f64, p as f64, la as f64, lb as f64);
    la * lb * (3.0 * n * p * p).min(2.0 * n * n * p)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cka::{cka, DEFAULT_MAX_ELEMENTS};

    fn data(n: usize, seed: u64) -> Vec<f32> {
        weightkin_core::testing::uniform_f32(n, seed, -0.5, 0.5)
    }

    fn metric(estimator: Estimator, examples: Examples) -> Cka {
        Cka {
            estimator,
            examples,
            permutations: 0,
            max_elements: DEFAULT_MAX_ELEMENTS,
        }
    }

    /// The grid value from prepared sides, cut into slabs by `budget`.
    fn prepared_value(m: &Cka, a: &[f32], b: &[f32], shape: &[usize], budget: usize) -> f64 {
        let (pa, pb) = (m.prepare(a, shape).unwrap(), m.prepare(b, shape).unwrap());
        let (mut ta, mut tb) = (pa.terms(), pb.terms());
        let mut cross = 0.0;
        for rows in slabs(pa.examples(), 1, budget) {
            let (sa, sb) = (pa.slab(rows.clone()), pb.slab(rows));
            ta.add_self_trace(sa.dot(&sa));
            tb.add_self_trace(sb.dot(&sb));
            cross += sa.dot(&sb);
        }
        m.from_terms(&ta, &tb, cross).value().unwrap()
    }

    #[test]
    fn slabs_cover_the_triangle_within_the_budget() {
        for (n, held, budget) in [
            (1, 1, 4),
            (10, 3, 64),
            (97, 24, 4096),
            (2816, 24, 128 << 20),
        ] {
            let s = slabs(n, held, budget);
            assert_eq!(s.first().unwrap().start, 0);
            assert_eq!(s.last().unwrap().end, n);
            assert!(s
                .windows(2)
                .all(|w| w[0].end == w[1].start && w[0].start < w[0].end));
            let per = budget / 4 / held;
            for r in &s {
                let e = triangle_entries(r.start, r.end);
                assert!(e <= per + r.end, "{n} {held} {budget}: {r:?} has {e}");
            }
        }
        assert_eq!(slabs(1024, 24, 128 << 20), vec![0..1024]);
        assert_eq!(slabs(2816, 24, 128 << 20).len(), 3);
    }

    /// Prepared sides give the per-pair value, in one slab or many, both estimators, both
    /// example axes, tall and wide matrices (the per-pair path's feature and sample forms).
    #[test]
    fn prepared_sides_give_the_per_pair_value() {
        for (rows, cols) in [(64usize, 24usize), (24, 64), (70, 70)] {
            let a = data(rows * cols, 11);
            let b: Vec<f32> = a
                .iter()
                .zip(data(rows * cols, 12))
                .map(|(x, y)| x + 0.8 * y)
                .collect();
            let shape = [rows, cols];
            for est in [Estimator::Debiased, Estimator::Biased] {
                for ex in [Examples::Rows, Examples::Columns] {
                    let m = metric(est, ex);
                    let want = cka(&a, &b, rows, cols, ex, est).unwrap().value().unwrap();
                    for budget in [1 << 20, 4 * 100, 4] {
                        let got = prepared_value(&m, &a, &b, &shape, budget);
                        assert!(
                            (got - want).abs() <= 1e-6 + 1e-12,
                            "{rows}x{cols} {est:?} {ex:?} budget {budget}: {got} vs {want}"
                        );
                    }
                    // Identical sides: exactly 1, as per pair.
                    assert_eq!(prepared_value(&m, &a, &a, &shape, 400), 1.0);
                }
            }
        }
    }

    #[test]
    fn slab_dot_is_the_frobenius_inner_product() {
        let (n, p) = (13, 5);
        let m = metric(Estimator::Biased, Examples::Rows);
        let (a, b) = (data(n * p, 1), data(n * p, 2));
        let (pa, pb) = (
            m.prepare(&a, &[n, p]).unwrap(),
            m.prepare(&b, &[n, p]).unwrap(),
        );
        let gram = |x: &[f32]| -> Vec<f64> {
            let x = centred(x, n, p, Examples::Rows);
            (0..n * n)
                .map(|e| {
                    let (i, j) = (e / n, e % n);
                    (0..p)
                        .map(|k| f64::from(x[i * p + k]) * f64::from(x[j * p + k]))
                        .sum()
                })
                .collect()
        };
        let want: f64 = gram(&a).iter().zip(gram(&b)).map(|(k, l)| k * l).sum();
        let got: f64 = slabs(n, 1, 40)
            .into_iter()
            .map(|r| pa.slab(r.clone()).dot(&pb.slab(r)))
            .sum();
        assert!((got - want).abs() <= 1e-5 * want.abs(), "{got} vs {want}");
    }

    #[test]
    fn degenerate_sides_have_the_per_pair_reasons() {
        let m = metric(Estimator::Debiased, Examples::Rows);
        let err = |t: &[f32], s: &[usize]| m.prepare(t, s).err();
        assert_eq!(err(&[], &[0, 4]), Some(Undefined::Empty));
        assert_eq!(err(&[f32::NAN; 20], &[5, 4]), Some(Undefined::NonFinite));
        assert_eq!(err(&[1.0; 20], &[20]), Some(Undefined::NotAMatrix));
        assert_eq!(err(&[1.0; 6], &[3, 2]), Some(Undefined::TooFewExamples));
        // A constant side prepares, and its cells are `constant`, as per pair.
        let c = m.prepare(&[1.0; 20], &[10, 2]).unwrap();
        let mut t = c.terms();
        for r in slabs(10, 1, 1 << 20) {
            let s = c.slab(r);
            t.add_self_trace(s.dot(&s));
        }
        assert_eq!(
            m.from_terms(&t, &t, 0.0),
            MetricValue::Undefined(Undefined::Constant)
        );
    }
}
