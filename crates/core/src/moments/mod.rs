//! One fused streaming pass over a tensor pair.
//!
//! [`Moments`] holds everything the moment-based metrics need: counts, means, centred second
//! moments, the co-moment, the squared-difference sum and the count of equal elements. It is
//! computed per fixed-size chunk (raw sums in f64 within a chunk, where cancellation is
//! harmless) and chunks are merged with Chan et al.'s pairwise update, *always in chunk-index
//! order*. Chunk boundaries depend only on the tensor size, never on the thread count, so the
//! result is bit-identical for any number of threads.
//!
//! Centred moments (rather than raw Σa², Σab over the whole tensor) matter for tensors whose
//! mean dwarfs their spread — norm weights near 1.0 with s.d. 0.01 — where raw-sum Pearson
//! loses most of its digits.
//!
//! The module is three parts with one job each:
//!
//! * `kernels`: one chunk of stored bytes → [`Moments`], in registers (portable and AVX2
//!   builds that round identically);
//! * `pass`: which chunks to read and in what order, the fused path straight from the memory
//!   map with its page releases, the buffered fallback, and what else the pass keeps on the
//!   way ([`Taps`]). Whoever else wants the bytes the pass streams — the file hashes — watches
//!   through a [`WindowObserver`]; the pass does not know what they do with them;
//! * `samples`: the deterministic subsample calibration pairs across tensors ([`Samples`]).

use crate::Undefined;

mod kernels;
mod magnitudes;
mod pass;
mod samples;

pub use magnitudes::Magnitudes;
pub use pass::{
    pair_moments, pair_moments_sampled, pair_moments_sampled_with, pair_pass, read_tensor,
    PairPass, Taps, WindowObserver, RELEASE_CHUNKS,
};
pub(crate) use samples::sampled_chunks;
pub use samples::Samples;

/// Elements per streaming chunk: 16 Ki f32 = 64 KiB per side, so both sides of a chunk sit in
/// L2 cache while they are reduced. Part of the numerical contract: changing it changes the
/// last bits of results.
pub const CHUNK: usize = 16 * 1024;

/// Sufficient statistics of a pair of equally long vectors `a`, `b`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    /// Number of elements.
    pub n: u64,
    /// Mean of `a`.
    pub mean_a: f64,
    /// Mean of `b`.
    pub mean_b: f64,
    /// Σ (a − mean_a)².
    pub m2_a: f64,
    /// Σ (b − mean_b)².
    pub m2_b: f64,
    /// Σ (a − mean_a)(b − mean_b).
    pub c_ab: f64,
    /// Σ (a − b)², accumulated directly (not derived from the others, which would cancel
    /// catastrophically for near-identical tensors).
    pub sum_sq_diff: f64,
    /// Number of positions where `a == b` (as f32; NaN never equal).
    pub equal: u64,
}

impl Moments {
    /// Moments of two equally long slices (only the common prefix if they differ).
    pub fn of_slices(a: &[f32], b: &[f32]) -> Moments {
        kernels::slices(a, b)
    }

    /// Merges the moments of two disjoint parts (Chan, Golub & LeVeque 1979). Not
    /// commutative in the last bits: callers merge in a fixed order.
    pub fn merge(self, other: Moments) -> Moments {
        if self.n == 0 {
            return other;
        }
        if other.n == 0 {
            return self;
        }
        let n = self.n + other.n;
        let (n1, n2, nf) = (self.n as f64, other.n as f64, n as f64);
        let da = other.mean_a - self.mean_a;
        let db = other.mean_b - self.mean_b;
        let w = n1 * n2 / nf;
        Moments {
            n,
            mean_a: self.mean_a + da * n2 / nf,
            mean_b: self.mean_b + db * n2 / nf,
            m2_a: self.m2_a + other.m2_a + da * da * w,
            m2_b: self.m2_b + other.m2_b + db * db * w,
            c_ab: self.c_ab + other.c_ab + da * db * w,
            sum_sq_diff: self.sum_sq_diff + other.sum_sq_diff,
            equal: self.equal + other.equal,
        }
    }

    /// Σ a² (uncentred), reconstructed from the centred moments.
    pub fn sum_sq_a(&self) -> f64 {
        self.m2_a + self.n as f64 * self.mean_a * self.mean_a
    }

    /// Σ b² (uncentred).
    pub fn sum_sq_b(&self) -> f64 {
        self.m2_b + self.n as f64 * self.mean_b * self.mean_b
    }

    /// Σ a·b (uncentred).
    pub fn sum_ab(&self) -> f64 {
        self.c_ab + self.n as f64 * self.mean_a * self.mean_b
    }

    /// Cosine similarity Σab / (‖a‖·‖b‖), or why it is undefined: no elements, a NaN or ±inf
    /// in either tensor, or an all-zero tensor. Identical inputs give exactly 1.
    pub fn cosine(&self) -> crate::MetricValue {
        self.ratio(
            self.sum_ab(),
            self.sum_sq_a(),
            self.sum_sq_b(),
            Undefined::ZeroNorm,
        )
    }

    /// Pearson correlation (cosine of the centred tensors), or why it is undefined: no
    /// elements, a NaN or ±inf, or a constant tensor. Identical inputs give exactly 1.
    pub fn pearson(&self) -> crate::MetricValue {
        self.ratio(self.c_ab, self.m2_a, self.m2_b, Undefined::Constant)
    }

    /// `num / √(den_a·den_b)` clamped to [−1, 1], with the shared degenerate cases.
    fn ratio(&self, num: f64, den_a: f64, den_b: f64, zero: Undefined) -> crate::MetricValue {
        use crate::MetricValue;
        if self.n == 0 {
            return MetricValue::Undefined(Undefined::Empty);
        }
        if !self.is_finite() {
            return MetricValue::Undefined(Undefined::NonFinite);
        }
        if den_a <= 0.0 || den_b <= 0.0 {
            return MetricValue::Undefined(zero);
        }
        // Identical inputs: exactly 1 rather than 1 ± rounding, so a self-comparison reads
        // as what it is.
        if self.sum_sq_diff == 0.0 {
            return MetricValue::Value(1.0);
        }
        MetricValue::Value((num / (den_a.sqrt() * den_b.sqrt())).clamp(-1.0, 1.0))
    }

    /// Whether every accumulated quantity is finite (false if either input held NaN/±inf).
    pub fn is_finite(&self) -> bool {
        [
            self.mean_a,
            self.mean_b,
            self.m2_a,
            self.m2_b,
            self.c_ab,
            self.sum_sq_diff,
        ]
        .iter()
        .all(|v| v.is_finite())
    }

    /// Moments of two in-memory tensors, chunked and merged exactly as [`pair_moments`] does,
    /// so both paths give bit-identical results.
    pub fn of_tensors(a: &[f32], b: &[f32]) -> Moments {
        a.chunks(CHUNK)
            .zip(b.chunks(CHUNK))
            .map(|(x, y)| Moments::of_slices(x, y))
            .fold(Moments::default(), Moments::merge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::uniform_f32;

    fn naive(a: &[f32], b: &[f32]) -> (f64, f64, f64, f64, f64) {
        let n = a.len() as f64;
        let ma = a.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let mb = b.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let m2a = a.iter().map(|&x| (f64::from(x) - ma).powi(2)).sum();
        let m2b = b.iter().map(|&x| (f64::from(x) - mb).powi(2)).sum();
        let cab = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| (f64::from(x) - ma) * (f64::from(y) - mb))
            .sum();
        (ma, mb, m2a, m2b, cab)
    }

    /// `n` values uniform in (offset − 0.01, offset + 0.01]: spread small against the mean,
    /// the case centred moments exist for.
    fn data(n: usize, seed: u64, offset: f32) -> Vec<f32> {
        uniform_f32(n, seed, offset - 0.01, offset + 0.01)
    }

    #[test]
    fn merged_chunks_match_naive_two_pass() {
        let a = data(50_000, 1, 1.0);
        let b = data(50_000, 2, 1.0);
        let merged = a
            .chunks(CHUNK)
            .zip(b.chunks(CHUNK))
            .map(|(x, y)| Moments::of_slices(x, y))
            .fold(Moments::default(), Moments::merge);
        let (ma, mb, m2a, m2b, cab) = naive(&a, &b);
        assert_eq!(merged.n, 50_000);
        assert!((merged.mean_a - ma).abs() < 1e-12);
        assert!((merged.mean_b - mb).abs() < 1e-12);
        assert!((merged.m2_a - m2a).abs() / m2a < 1e-9);
        assert!((merged.m2_b - m2b).abs() / m2b < 1e-9);
        assert!((merged.c_ab - cab).abs() < 1e-9 * (m2a * m2b).sqrt());
    }

    #[test]
    fn identical_inputs_count_all_equal_and_zero_difference() {
        let a = data(1000, 3, 0.0);
        let m = Moments::of_slices(&a, &a);
        assert_eq!(m.equal, 1000);
        assert_eq!(m.sum_sq_diff, 0.0);
        assert_eq!(m.m2_a, m.m2_b);
        assert_eq!(m.m2_a, m.c_ab);
    }

    #[test]
    fn non_finite_inputs_are_detected() {
        let m = Moments::of_slices(&[1.0, f32::NAN], &[1.0, 2.0]);
        assert!(!m.is_finite());
        let m = Moments::of_slices(&[1.0, f32::INFINITY], &[1.0, 2.0]);
        assert!(!m.is_finite());
    }

    #[test]
    fn in_memory_and_chunk_merged_paths_agree_bitwise() {
        let a = data(3 * CHUNK + 17, 5, 1.0);
        let b = data(3 * CHUNK + 17, 6, 1.0);
        let by_hand = a
            .chunks(CHUNK)
            .zip(b.chunks(CHUNK))
            .map(|(x, y)| Moments::of_slices(x, y))
            .fold(Moments::default(), Moments::merge);
        assert_eq!(Moments::of_tensors(&a, &b), by_hand);
    }

    #[test]
    fn empty_merge_is_identity() {
        let a = data(10, 4, 0.0);
        let m = Moments::of_slices(&a, &a);
        assert_eq!(Moments::default().merge(m), m);
        assert_eq!(m.merge(Moments::default()), m);
    }
}
