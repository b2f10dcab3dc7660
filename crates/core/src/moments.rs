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

use rayon::prelude::*;

use crate::ulp::{self, UlpStats};
use crate::Undefined;
use crate::{Dtype, Error, FileHashers, RawTensor, Result, WeightSource};

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

/// Lanes of the fused kernel: element `i` of a chunk goes to lane `i % L`. Part of the
/// numerical contract (like [`CHUNK`]): eight f64 lanes are two AVX2 registers per
/// accumulator — two independent dependency chains, so the adds and fused multiply-adds
/// run at the units' throughput rather than their latency — and the vectorised and the
/// portable builds of [`reduce`] do the same arithmetic and give the same bits (for a
/// non-finite result, which reports never show, only NaN-ness is guaranteed, not the NaN's
/// payload).
const L: usize = 8;

/// Per-lane raw sums of one chunk.
#[derive(Default)]
struct Lanes {
    sa: [f64; L],
    sb: [f64; L],
    saa: [f64; L],
    sbb: [f64; L],
    sab: [f64; L],
    sdd: [f64; L],
    eq: [u64; L],
}

impl Lanes {
    /// Adds `L` element pairs, element `i` to lane `i`.
    #[inline(always)]
    fn add(&mut self, qa: [f32; L], qb: [f32; L]) {
        for (i, (xa, xb)) in qa.into_iter().zip(qb).enumerate() {
            self.add_lane(i, xa, xb);
        }
    }

    /// Adds one element pair to lane `i`. Every product of two f32 values is exact in f64,
    /// so `s + x * x` rounds once, exactly like the fused multiply-add of the AVX2 build;
    /// `d * d` of the difference need not be exact, so it is a fused multiply-add in every
    /// build (`mul_add`: one rounding, in hardware or in libm). Rust never contracts
    /// `x * y + z` by itself, so every build rounds identically.
    #[inline(always)]
    fn add_lane(&mut self, i: usize, xa: f32, xb: f32) {
        let x = f64::from(xa);
        let y = f64::from(xb);
        self.sa[i] += x;
        self.sb[i] += y;
        self.saa[i] += x * x;
        self.sbb[i] += y * y;
        self.sab[i] += x * y;
        let d = x - y;
        self.sdd[i] = d.mul_add(d, self.sdd[i]);
        // f32 → f64 is exact, so this is `xa == xb` (NaN never equal, -0 == +0).
        self.eq[i] += u64::from(x == y);
    }

    /// Adds one element pair to lane 0 (the tail of a chunk).
    #[inline(always)]
    fn add_one(&mut self, xa: f32, xb: f32) {
        self.add_lane(0, xa, xb);
    }
}

/// The fused kernel: decodes `L` elements of each side at a time (`QA`/`QB` storage units
/// each, via `oct_a`/`oct_b`; single elements of the tail are `WA`/`WB` units via
/// `one_a`/`one_b`) and reduces them in registers, with no intermediate f32 buffer.
/// `#[inline(always)]` so that each `dispatch!` instantiation is compiled for its own target
/// features.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn reduce<T, U, const QA: usize, const QB: usize, const WA: usize, const WB: usize>(
    a: &[T],
    b: &[U],
    oct_a: impl Fn(&[T]) -> [f32; L],
    oct_b: impl Fn(&[U]) -> [f32; L],
    one_a: impl Fn(&[T]) -> f32,
    one_b: impl Fn(&[U]) -> f32,
) -> Moments {
    let len = (a.len() / WA).min(b.len() / WB);
    let (a, b) = (&a[..len * WA], &b[..len * WB]);
    let mut s = Lanes::default();
    let mut ca = a.chunks_exact(QA);
    let mut cb = b.chunks_exact(QB);
    for (xa, xb) in (&mut ca).zip(&mut cb) {
        s.add(oct_a(xa), oct_b(xb));
    }
    for (xa, xb) in ca
        .remainder()
        .chunks_exact(WA)
        .zip(cb.remainder().chunks_exact(WB))
    {
        s.add_one(one_a(xa), one_b(xb));
    }
    Moments::from_lanes(len, s)
}

/// A fixed-size array from a slice of known length. The fallback is unreachable (callers pass
/// `chunks_exact` pieces) and the optimiser removes it; it exists so that no path panics.
#[inline(always)]
fn arr<const N: usize>(c: &[u8]) -> [u8; N] {
    c.try_into().unwrap_or([0; N])
}

#[inline(always)]
fn bf16(bits: u32) -> f32 {
    f32::from_bits(bits << 16)
}

/// Kernels per stored dtype pair (both sides the same dtype). Each is `#[inline(always)]`
/// and instantiated by [`dispatch!`].
mod kernels {
    use super::*;

    #[inline(always)]
    pub(super) fn slices(a: &[f32], b: &[f32]) -> Moments {
        let oct = |c: &[f32]| std::array::from_fn(|i| c[i]);
        let one = |c: &[f32]| c[0];
        reduce::<f32, f32, L, L, 1, 1>(a, b, oct, oct, one, one)
    }

    #[inline(always)]
    pub(super) fn bf16s(a: &[u8], b: &[u8]) -> Moments {
        let oct = |c: &[u8]| {
            let w = u128::from_le_bytes(arr(c));
            std::array::from_fn(|i| bf16((w >> (16 * i)) as u32 & 0xffff))
        };
        let one = |c: &[u8]| bf16(u32::from(u16::from_le_bytes(arr(c))));
        reduce::<u8, u8, 16, 16, 2, 2>(a, b, oct, oct, one, one)
    }

    #[inline(always)]
    pub(super) fn f16s(a: &[u8], b: &[u8]) -> Moments {
        let half = |c: &[u8]| crate::convert::f16_to_f32(u16::from_le_bytes(arr(c)));
        let oct = |c: &[u8]| std::array::from_fn(|i| half(&c[2 * i..2 * i + 2]));
        reduce::<u8, u8, 16, 16, 2, 2>(a, b, oct, oct, half, half)
    }

    #[inline(always)]
    pub(super) fn f32s(a: &[u8], b: &[u8]) -> Moments {
        let oct = |c: &[u8]| std::array::from_fn(|i| f32::from_le_bytes(arr(&c[4 * i..4 * i + 4])));
        let one = |c: &[u8]| f32::from_le_bytes(arr(c));
        reduce::<u8, u8, 32, 32, 4, 4>(a, b, oct, oct, one, one)
    }
}

/// AVX2 + FMA builds of the kernels, written with intrinsics (LLVM's vectoriser does not find
/// the shape by itself): eight f64 lanes in two `__m256d` per accumulator, the same lane
/// assignment and rounding as [`Lanes::add`], so results are bit-identical to the portable
/// build. Only the decoding (8 stored elements → two `__m256d`) differs per dtype.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Lanes, Moments, L};

    /// Stores one accumulator (lanes 0–3 and 4–7) as `L` values.
    #[target_feature(enable = "avx")]
    fn lanes(v: [__m256d; 2]) -> [f64; L] {
        let mut o = [0f64; L];
        for (h, v) in v.into_iter().enumerate() {
            // SAFETY: `o` holds 8 f64s and `4 * h + 4 <= 8`; unaligned store.
            unsafe { _mm256_storeu_pd(o.as_mut_ptr().add(4 * h), v) };
        }
        o
    }

    macro_rules! kernel {
        ($name:ident, $t:ty, $oct:expr, $width:expr, $one:expr, $load:expr) => {
            /// # Safety
            /// The CPU must support AVX2, FMA, POPCNT and F16C.
            #[target_feature(enable = "avx2,fma,popcnt,f16c")]
            #[allow(unused_unsafe)]
            pub(super) unsafe fn $name(a: &[$t], b: &[$t]) -> Moments {
                let len = (a.len() / $width).min(b.len() / $width);
                let (a, b) = (&a[..len * $width], &b[..len * $width]);
                // Lanes `4h .. 4h + 4` of one `$oct`-unit piece, as f64.
                let load: unsafe fn(&[$t], usize) -> __m256d = $load;
                // SAFETY (whole block): AVX2, FMA, POPCNT and F16C are enabled here;
                // every load reads within one `chunks_exact($oct)` piece.
                unsafe {
                    let z = [_mm256_setzero_pd(); 2];
                    let (mut sa, mut sb, mut saa, mut sbb, mut sab, mut sdd) = (z, z, z, z, z, z);
                    let mut eq = 0u64;
                    let mut ca = a.chunks_exact($oct);
                    let mut cb = b.chunks_exact($oct);
                    for (xa, xb) in (&mut ca).zip(&mut cb) {
                        // One half at a time, so that the twelve accumulators, the two
                        // inputs and a temporary fit the sixteen registers.
                        for h in 0..2 {
                            let x = load(xa, h);
                            let y = load(xb, h);
                            sa[h] = _mm256_add_pd(sa[h], x);
                            sb[h] = _mm256_add_pd(sb[h], y);
                            // Exact products: one rounding, as `s + x * x` in the portable
                            // build.
                            saa[h] = _mm256_fmadd_pd(x, x, saa[h]);
                            sbb[h] = _mm256_fmadd_pd(y, y, sbb[h]);
                            sab[h] = _mm256_fmadd_pd(x, y, sab[h]);
                            let d = _mm256_sub_pd(x, y);
                            sdd[h] = _mm256_fmadd_pd(d, d, sdd[h]);
                            // Equal lanes as mask bits, counted on the scalar units.
                            let m = _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_EQ_OQ>(x, y));
                            eq += u64::from(m.count_ones());
                        }
                    }
                    let mut s = Lanes::default();
                    (s.sa, s.sb, s.saa, s.sbb, s.sab, s.sdd) = (
                        lanes(sa),
                        lanes(sb),
                        lanes(saa),
                        lanes(sbb),
                        lanes(sab),
                        lanes(sdd),
                    );
                    // Only the total of `eq` is used (an integer: any split is exact).
                    s.eq[0] = eq;
                    let one: fn(&[$t]) -> f32 = $one;
                    for (xa, xb) in ca
                        .remainder()
                        .chunks_exact($width)
                        .zip(cb.remainder().chunks_exact($width))
                    {
                        s.add_one(one(xa), one(xb));
                    }
                    Moments::from_lanes(len, s)
                }
            }
        };
    }

    kernel!(slices, f32, 8, 1, |c| c[0], |c, h| {
        // SAFETY: `c` holds 8 f32s and `h < 2`; unaligned load.
        unsafe { _mm256_cvtps_pd(_mm_loadu_ps(c.as_ptr().add(4 * h))) }
    });
    kernel!(
        f32s,
        u8,
        32,
        4,
        |c| f32::from_le_bytes(super::arr(c)),
        |c, h| {
            // SAFETY: `c` holds 32 bytes and `h < 2`; unaligned load (x86 is little-endian).
            unsafe { _mm256_cvtps_pd(_mm_loadu_ps(c.as_ptr().cast::<f32>().add(4 * h))) }
        }
    );
    kernel!(
        bf16s,
        u8,
        16,
        2,
        |c| super::bf16(u32::from(u16::from_le_bytes(super::arr(c)))),
        |c, h| {
            // SAFETY: `c` holds 16 bytes and `h < 2`; `_mm_loadl_epi64` reads 8 of them,
            // unaligned. A BF16 value is the high half of an f32: zero-extended and shifted
            // up 16 bits, it is exactly that f32.
            unsafe {
                let v = _mm_loadl_epi64(c.as_ptr().add(8 * h).cast());
                let w = _mm_slli_epi32::<16>(_mm_cvtepu16_epi32(v));
                _mm256_cvtps_pd(_mm_castsi128_ps(w))
            }
        }
    );
    kernel!(
        f16s,
        u8,
        16,
        2,
        |c| crate::convert::f16_to_f32(u16::from_le_bytes(super::arr(c))),
        |c, h| {
            // SAFETY: `c` holds 16 bytes and `h < 2`; `_mm_loadl_epi64` reads 8 of them,
            // unaligned. F16C widens four halves exactly (NaNs quieted, as the portable
            // conversion does).
            unsafe {
                let v = _mm_loadl_epi64(c.as_ptr().add(8 * h).cast());
                _mm256_cvtps_pd(_mm_cvtph_ps(v))
            }
        }
    );
}

/// Calls kernel `$k`: the AVX2 + FMA build when the CPU has both (checked once, cached by
/// std), else the portable one. Both round identically (see [`L`]).
macro_rules! dispatch {
    ($k:ident::<$t:ty>($a:expr, $b:expr)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("popcnt")
                && std::arch::is_x86_feature_detected!("f16c")
            {
                // SAFETY: the CPU supports AVX2, FMA, POPCNT and F16C, checked just above.
                unsafe { avx2::$k($a, $b) }
            } else {
                kernels::$k($a, $b)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            kernels::$k($a, $b)
        }
    }};
}

impl Moments {
    /// Moments of two equally long slices (only the common prefix if they differ).
    pub fn of_slices(a: &[f32], b: &[f32]) -> Moments {
        dispatch!(slices::<f32>(a, b))
    }

    /// Raw moments of `len` elements given the per-lane sums (see [`reduce`]).
    fn from_lanes(len: usize, s: Lanes) -> Moments {
        let fold = |v: [f64; L]| ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
        let n = len as u64;
        if n == 0 {
            return Moments::default();
        }
        let nf = len as f64;
        let (sa, sb) = (fold(s.sa), fold(s.sb));
        let (mean_a, mean_b) = (sa / nf, sb / nf);
        Moments {
            n,
            mean_a,
            mean_b,
            // Clamp tiny negative results of rounding: a sum of squares is never negative.
            m2_a: (fold(s.saa) - sa * mean_a).max(0.0),
            m2_b: (fold(s.sbb) - sb * mean_b).max(0.0),
            c_ab: fold(s.sab) - sa * mean_b,
            sum_sq_diff: fold(s.sdd),
            equal: s.eq.iter().sum(),
        }
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

/// Reads a whole tensor as f32 (for metrics that need [`crate::Needs::Tensors`]), in
/// [`CHUNK`]-sized pieces converted in parallel.
pub fn read_tensor(source: &dyn WeightSource, index: usize, numel: usize) -> Result<Vec<f32>> {
    let mut out = vec![0f32; numel];
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .try_for_each(|(c, chunk)| source.read_f32(index, c * CHUNK, chunk))?;
    Ok(out)
}

/// Streams tensor `ia` of `a` and tensor `ib` of `b` (same element count `numel`) once, in
/// [`CHUNK`]-sized pieces, and returns their [`Moments`].
///
/// Chunks run in parallel on the current rayon pool; partial results are merged in chunk
/// order, so the result does not depend on the thread count. When both sources expose the
/// stored bytes ([`WeightSource::raw`]) as BF16, F16 or F32, the kernel decodes straight from the
/// memory map, and every [`RELEASE_CHUNKS`] chunks the pages read are handed back
/// ([`crate::MappedFile::release`]), so resident memory stays at a few megabytes per thread
/// however large the model; the result is bit-identical to the buffered path.
pub fn pair_moments(
    a: &dyn WeightSource,
    ia: usize,
    b: &dyn WeightSource,
    ib: usize,
    numel: usize,
) -> Result<Moments> {
    Ok(pair_pass(a, ia, b, ib, numel, &Taps::default())?.moments)
}

/// What a full pass ([`pair_pass`]) keeps of the data it streams, besides the moments, while
/// that data is in cache: nothing is read twice.
#[derive(Debug, Clone, Copy, Default)]
pub struct Taps<'a> {
    /// Keep the [`Samples`] of this budget (as [`pair_moments_sampled`] would choose them).
    pub samples: Option<usize>,
    /// Histogram the BF16 ULP distances of the chunks a subsample of this budget would
    /// choose (when both tensors are stored as BF16 and expose their bytes).
    pub ulp: Option<usize>,
    /// Hand the stored bytes read to these files' hashers (when the fused path reads them
    /// straight from the memory map; anything else is hashed by [`FileHasher::finish`]).
    ///
    /// [`FileHasher::finish`]: crate::FileHasher::finish
    pub hash: Option<&'a FileHashers>,
}

/// The result of [`pair_pass`].
#[derive(Debug, Clone, PartialEq)]
pub struct PairPass {
    /// Moments of the whole pair.
    pub moments: Moments,
    /// The subsample asked for by [`Taps::samples`].
    pub samples: Option<Samples>,
    /// The ULP statistics asked for by [`Taps::ulp`], when they apply.
    pub ulp: Option<UlpStats>,
}

/// A deterministic subsample of a tensor pair: the chunks [`pair_moments_sampled`] reads for
/// the same `numel` and budget, in chunk order, as stored (BF16, F16 or F32 bytes, as the fused
/// kernel reads them). Lets calibration pair one tensor's sample with another's (A's layer
/// `i` against B's layer `j`) without reading either tensor again.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    numel: usize,
    budget: usize,
    stored: Stored,
    /// One entry per sampled chunk, in chunk order.
    a: Vec<Vec<u8>>,
    b: Vec<Vec<u8>>,
}

impl Samples {
    fn empty(numel: usize, budget: usize, stored: Stored) -> Samples {
        Samples {
            numel,
            budget,
            stored,
            a: Vec::new(),
            b: Vec::new(),
        }
    }

    /// The subsample of two tensors already in memory (equally long, else `None`): the same
    /// chunks a pass with [`Taps::samples`] = `budget` keeps.
    pub fn of_tensors(a: &[f32], b: &[f32], budget: usize) -> Option<Samples> {
        if a.len() != b.len() {
            return None;
        }
        let numel = a.len();
        let (take, chunk_of) = sampled_chunks(numel, budget);
        let mut s = Samples::empty(numel, budget, Stored::F32);
        for k in 0..take {
            let start = chunk_of(k) * CHUNK;
            let end = numel.min(start + CHUNK);
            s.a.push(f32_le_bytes(a.get(start..end)?));
            s.b.push(f32_le_bytes(b.get(start..end)?));
        }
        Some(s)
    }

    /// Moments of the `a` side of `x` against the `b` side of `y`: bit-identical to
    /// [`pair_moments_sampled`] on the two tensors they came from. `None` when the two were
    /// not sampled alike (different element counts or budgets).
    pub fn cross(x: &Samples, y: &Samples) -> Option<Moments> {
        if (x.numel, x.budget) != (y.numel, y.budget) || x.a.len() != y.b.len() {
            return None;
        }
        let (mut fa, mut fb) = (Vec::new(), Vec::new());
        let mut m = Moments::default();
        for (pa, pb) in x.a.iter().zip(&y.b) {
            let len = pa.len() / x.stored.width();
            if pb.len() != len * y.stored.width() {
                return None;
            }
            m = m.merge(match (x.stored, y.stored) {
                (sx, sy) if sx == sy => sx.moments(pa, pb),
                // Mixed: decode both (exactly) and reduce, as the buffered path does.
                _ => {
                    fa.resize(len, 0f32);
                    fb.resize(len, 0f32);
                    x.stored.decode(pa, &mut fa)?;
                    y.stored.decode(pb, &mut fb)?;
                    Moments::of_slices(&fa, &fb)
                }
            });
        }
        Some(m)
    }
}

/// f32 values as little-endian bytes (how F32 is stored).
fn f32_le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// [`pair_moments`] on a deterministic subsample of at most `budget` elements (but at least
/// one chunk): `s = ⌊budget / CHUNK⌋` chunks evenly strided through the tensor (sample `k`
/// is chunk `⌊k·C / s⌋` of `C`), or every chunk when the tensor fits. The choice depends on
/// `numel` and `budget` only, never on threads. For calibration samples (null
/// distributions), whose statistic a subsample estimates without bias at a fraction of the
/// cost of reading both tensors whole.
pub fn pair_moments_sampled(
    a: &dyn WeightSource,
    ia: usize,
    b: &dyn WeightSource,
    ib: usize,
    numel: usize,
    budget: usize,
) -> Result<Moments> {
    stream(a, ia, b, ib, numel, budget, &Taps::default()).map(|(m, _, _)| m)
}

/// [`pair_moments`], keeping what `taps` asks for on the way (see [`Taps`]).
pub fn pair_pass(
    a: &dyn WeightSource,
    ia: usize,
    b: &dyn WeightSource,
    ib: usize,
    numel: usize,
    taps: &Taps<'_>,
) -> Result<PairPass> {
    let (moments, samples, ulp) = stream(a, ia, b, ib, numel, usize::MAX, taps)?;
    Ok(PairPass {
        moments,
        samples,
        ulp,
    })
}

/// Chunks per work item and page release of the fused path (2 Mi elements: 4 MiB of BF16
/// per side): large enough that the `madvise` calls and TLB shoot-downs cost little, small
/// enough to split big tensors across threads and keep resident memory at a few tens of MiB.
pub const RELEASE_CHUNKS: usize = 128;

/// Stored dtypes the fused kernel decodes itself.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stored {
    Bf16,
    F16,
    F32,
}

impl Stored {
    fn dtype(self) -> Dtype {
        match self {
            Stored::Bf16 => Dtype::BF16,
            Stored::F16 => Dtype::F16,
            Stored::F32 => Dtype::F32,
        }
    }

    fn width(self) -> usize {
        match self {
            Stored::Bf16 | Stored::F16 => 2,
            Stored::F32 => 4,
        }
    }

    /// Moments of two runs of stored bytes of this dtype (the fused kernels).
    fn moments(self, x: &[u8], y: &[u8]) -> Moments {
        match self {
            Stored::Bf16 => dispatch!(bf16s::<u8>(x, y)),
            Stored::F16 => dispatch!(f16s::<u8>(x, y)),
            Stored::F32 => dispatch!(f32s::<u8>(x, y)),
        }
    }

    /// Decodes stored bytes into `out` (exactly `out.len()` elements).
    fn decode(self, bytes: &[u8], out: &mut [f32]) -> Option<()> {
        crate::to_f32(self.dtype(), bytes, 0, out)
    }
}

/// Both tensors' stored bytes, when the fused path applies.
struct Fused<'a> {
    stored: Stored,
    width: usize,
    a: RawTensor<'a>,
    b: RawTensor<'a>,
}

impl<'a> Fused<'a> {
    fn of(
        a: &'a dyn WeightSource,
        ia: usize,
        b: &'a dyn WeightSource,
        ib: usize,
        numel: usize,
    ) -> Option<Fused<'a>> {
        let (ra, rb) = (a.raw(ia)?, b.raw(ib)?);
        let stored = match (ra.dtype, rb.dtype) {
            (Dtype::BF16, Dtype::BF16) => Stored::Bf16,
            (Dtype::F16, Dtype::F16) => Stored::F16,
            (Dtype::F32, Dtype::F32) => Stored::F32,
            _ => return None,
        };
        let width = stored.width();
        let bytes = numel.checked_mul(width)?;
        (ra.bytes.len() == bytes && rb.bytes.len() == bytes).then_some(Fused {
            stored,
            width,
            a: ra,
            b: rb,
        })
    }

    /// The stored bytes of elements `start .. start + len` on both sides, or `None` outside
    /// the tensor.
    fn bytes(&self, start: usize, len: usize) -> Option<(&'a [u8], &'a [u8])> {
        let range = start * self.width..(start + len) * self.width;
        Some((self.a.bytes.get(range.clone())?, self.b.bytes.get(range)?))
    }

    /// Moments of stored bytes from [`Self::bytes`].
    fn moments(&self, x: &[u8], y: &[u8]) -> Moments {
        self.stored.moments(x, y)
    }

    /// Hands back the pages of elements `start .. end`.
    fn release(&self, start: usize, end: usize) {
        let range = start * self.width..end * self.width;
        if let (Some(x), Some(y)) = (self.a.bytes.get(range.clone()), self.b.bytes.get(range)) {
            self.a.file.release(x);
            self.b.file.release(y);
        }
    }
}

/// The chunks a subsample of at most `budget` elements reads: `(take, chunk_of)` where
/// sample `k < take` is chunk `chunk_of(k)`, evenly strided through the tensor's chunks (or
/// every chunk when the tensor fits the budget). Depends on `numel` and `budget` only.
pub(crate) fn sampled_chunks(numel: usize, budget: usize) -> (usize, impl Fn(usize) -> usize) {
    let chunks = numel.div_ceil(CHUNK);
    let take = (budget / CHUNK).clamp(1, chunks.max(1)).min(chunks);
    let sampled = take < chunks;
    // u128: `k * chunks` cannot overflow.
    let chunk_of = move |k: usize| -> usize {
        if sampled {
            (k as u128 * chunks as u128 / take as u128) as usize
        } else {
            k
        }
    };
    (take, chunk_of)
}

/// Whether chunk `c` is one of those [`sampled_chunks`] picks: the inverse of `chunk_of`
/// (the smallest `k` with `⌊k·C / s⌋ ≥ c` is `⌈c·s / C⌉`).
fn is_sampled(numel: usize, budget: usize, c: usize) -> bool {
    let chunks = numel.div_ceil(CHUNK);
    let take = (budget / CHUNK).clamp(1, chunks.max(1)).min(chunks);
    let k = (c as u128 * take as u128).div_ceil(chunks.max(1) as u128);
    k < take as u128 && k * chunks as u128 / take as u128 == c as u128
}

/// What one chunk of a pass yields: its moments, its decoded elements when a tap keeps
/// them, its ULP histogram when a tap asks for one.
type ChunkOut = (Moments, Option<(Vec<u8>, Vec<u8>)>, Option<ulp::Histogram>);

fn stream(
    a: &dyn WeightSource,
    ia: usize,
    b: &dyn WeightSource,
    ib: usize,
    numel: usize,
    budget: usize,
    taps: &Taps<'_>,
) -> Result<(Moments, Option<Samples>, Option<UlpStats>)> {
    let chunks = numel.div_ceil(CHUNK);
    let (take, chunk_of) = sampled_chunks(numel, budget);
    let sampled = take < chunks;
    let fused = Fused::of(a, ia, b, ib, numel);
    let out_of_range = |start: usize, len: usize| Error::ReadOutOfRange {
        tensor: a
            .tensors()
            .get(ia)
            .map_or_else(String::new, |t| t.name.clone()),
        start,
        len,
        numel,
    };
    let span = |c: usize| (c * CHUNK, CHUNK.min(numel - c * CHUNK));
    let keep = |c: usize| taps.samples.is_some_and(|s| is_sampled(numel, s, c));
    let ulp_budget = taps
        .ulp
        .filter(|_| fused.as_ref().is_some_and(|f| f.stored == Stored::Bf16));
    let partials: Vec<ChunkOut> = if let Some(f) = &fused {
        // One work item per window of chunks, read front to back by one thread and then
        // handed back: a window released while another thread still read it would be
        // faulted back in and stay resident.
        let windows = take.div_ceil(RELEASE_CHUNKS);
        let per_window = (0..windows)
            .into_par_iter()
            .map(|w| {
                let ks = w * RELEASE_CHUNKS..take.min((w + 1) * RELEASE_CHUNKS);
                let mut out = Vec::with_capacity(ks.len());
                for k in ks {
                    let c = chunk_of(k);
                    let (start, len) = span(c);
                    let (x, y) = f
                        .bytes(start, len)
                        .ok_or_else(|| out_of_range(start, len))?;
                    let m = f.moments(x, y);
                    // Copied now: the window's pages are handed back below.
                    let kept = keep(c).then(|| (x.to_vec(), y.to_vec()));
                    let hist = ulp_budget
                        .filter(|&u| is_sampled(numel, u, c))
                        .map(|_| ulp::histogram(x, y));
                    out.push((m, kept, hist));
                }
                if !sampled {
                    let first = w * RELEASE_CHUNKS * CHUNK;
                    let end = numel.min((w + 1) * RELEASE_CHUNKS * CHUNK);
                    if let (Some(hashers), Some((x, y))) = (taps.hash, f.bytes(first, end - first))
                    {
                        hashers.absorb(f.a.file, x);
                        hashers.absorb(f.b.file, y);
                    }
                    f.release(first, end);
                }
                Ok(out)
            })
            .collect::<Result<Vec<Vec<ChunkOut>>>>()?;
        if sampled {
            // A subsample touches a few chunks (plus the kernel's fault-around) spread over
            // the whole tensor: one release of the tensor afterwards, rather than one
            // `madvise` (and TLB shoot-down) per chunk.
            f.release(0, numel);
        }
        per_window.into_iter().flatten().collect()
    } else {
        (0..take)
            .into_par_iter()
            .map_init(
                || (vec![0f32; CHUNK], vec![0f32; CHUNK]),
                |(buf_a, buf_b), k| {
                    let c = chunk_of(k);
                    let (start, len) = span(c);
                    let (buf_a, buf_b) = (&mut buf_a[..len], &mut buf_b[..len]);
                    a.read_f32(ia, start, buf_a)?;
                    b.read_f32(ib, start, buf_b)?;
                    let kept = keep(c).then(|| (f32_le_bytes(buf_a), f32_le_bytes(buf_b)));
                    Ok((Moments::of_slices(buf_a, buf_b), kept, None))
                },
            )
            .collect::<Result<Vec<ChunkOut>>>()?
    };
    // Chunk order, whatever the thread count.
    let mut moments = Moments::default();
    let stored = fused.as_ref().map_or(Stored::F32, |f| f.stored);
    let mut samples = taps
        .samples
        .map(|budget| Samples::empty(numel, budget, stored));
    let mut hist = ulp_budget.map(|_| [0u64; ulp::BUCKETS]);
    for (m, kept, h) in partials {
        moments = moments.merge(m);
        if let (Some(s), Some((xa, xb))) = (samples.as_mut(), kept) {
            s.a.push(xa);
            s.b.push(xb);
        }
        if let (Some(total), Some(h)) = (hist.as_mut(), h) {
            ulp::add(total, &h);
        }
    }
    Ok((moments, samples, hist.and_then(|h| ulp::stats(&h))))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn data(n: usize, seed: u32, offset: f32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                offset + (s >> 8) as f32 / (1u32 << 24) as f32 * 0.02 - 0.01
            })
            .collect()
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

    /// Bit patterns of every kind: wide-range normals, subnormals, ±0, ±∞, NaNs, and
    /// near-equal neighbours (so that `d * d` is inexact and the equal count is non-trivial).
    fn hostile_bits(n: usize, seed: u32) -> Vec<u32> {
        let mut s = seed;
        let mut next = move || {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            s
        };
        (0..n)
            .map(|i| {
                let r = next();
                match i % 16 {
                    0 => 0x8000_0000,
                    1 => 0x7F80_0000 | (r & 0x8000_0000),
                    2 => 0x7FC0_0001,
                    3 => r & 0x807F_FFFF,
                    4 | 5 => 0x3F80_0000 | (r & 0x8000_FFFF),
                    _ => r & 0xBFFF_FFFF,
                }
            })
            .collect()
    }

    /// The AVX2 + FMA kernels round exactly like the portable ones, for every stored dtype,
    /// on hostile values and on lengths that leave tails of every size.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_and_portable_kernels_agree_bitwise() {
        let simd = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("popcnt")
            && std::arch::is_x86_feature_detected!("f16c");
        if !simd {
            return; // nothing to compare on this CPU
        }
        let (ba, bb) = (hostile_bits(4099, 5), hostile_bits(4099, 6));
        // Every third element of b equals a's (counts equal positions, ±0 and NaN included).
        let bb: Vec<u32> = bb
            .iter()
            .zip(&ba)
            .enumerate()
            .map(|(i, (y, x))| if i % 3 == 0 { *x } else { *y })
            .collect();
        let same = |x: Moments, y: Moments| {
            // Bits, except that every NaN is one NaN: which NaN payload a sum propagates is
            // not specified (LLVM may commute an addition), and no report shows one — a
            // non-finite moment makes a metric undefined.
            let bits = |m: Moments| {
                [m.mean_a, m.mean_b, m.m2_a, m.m2_b, m.c_ab, m.sum_sq_diff].map(|v| {
                    if v.is_nan() {
                        f64::NAN.to_bits()
                    } else {
                        v.to_bits()
                    }
                })
            };
            assert_eq!((x.n, x.equal, bits(x)), (y.n, y.equal, bits(y)));
        };
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 1000, 4099] {
            let fa: Vec<f32> = ba[..len].iter().map(|&b| f32::from_bits(b)).collect();
            let fb: Vec<f32> = bb[..len].iter().map(|&b| f32::from_bits(b)).collect();
            // SAFETY: AVX2, FMA, POPCNT and F16C were detected above.
            same(unsafe { avx2::slices(&fa, &fb) }, kernels::slices(&fa, &fb));
            let f32_bytes =
                |v: &[u32]| -> Vec<u8> { v.iter().flat_map(|b| b.to_le_bytes()).collect() };
            let (xa, xb) = (f32_bytes(&ba[..len]), f32_bytes(&bb[..len]));
            // SAFETY: as above.
            same(unsafe { avx2::f32s(&xa, &xb) }, kernels::f32s(&xa, &xb));
            let bf16_bytes = |v: &[u32]| -> Vec<u8> {
                v.iter()
                    .flat_map(|b| ((b >> 16) as u16).to_le_bytes())
                    .collect()
            };
            let (ha, hb) = (bf16_bytes(&ba[..len]), bf16_bytes(&bb[..len]));
            // SAFETY: as above.
            same(unsafe { avx2::bf16s(&ha, &hb) }, kernels::bf16s(&ha, &hb));
            // The low halves as F16: every class of half (subnormal, ∞, NaN) occurs.
            let f16_bytes = |v: &[u32]| -> Vec<u8> {
                v.iter().flat_map(|b| (*b as u16).to_le_bytes()).collect()
            };
            let (ha, hb) = (f16_bytes(&ba[..len]), f16_bytes(&bb[..len]));
            // SAFETY: as above.
            same(unsafe { avx2::f16s(&ha, &hb) }, kernels::f16s(&ha, &hb));
        }
    }

    #[test]
    fn empty_merge_is_identity() {
        let a = data(10, 4, 0.0);
        let m = Moments::of_slices(&a, &a);
        assert_eq!(Moments::default().merge(m), m);
        assert_eq!(m.merge(Moments::default()), m);
    }

    /// The fused path (decoding from the map, with page releases) gives the same bits as
    /// converting to f32 first, for BF16 and F32, full and sampled; a sample is a subset.
    #[cfg(feature = "testing")]
    #[test]
    #[allow(clippy::unwrap_used)]
    fn fused_path_matches_buffered_bitwise() {
        use crate::{Format, Limits};
        let n = 40 * CHUNK + 123;
        let (va, vb) = (data(n, 7, 0.5), data(n, 8, 0.5));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        crate::testing::SafetensorsBuilder::new()
            .tensor_bf16("a", &[n], &va)
            .tensor_bf16("b", &[n], &vb)
            .tensor_f32("c", &[n], &va)
            .tensor_f32("d", &[n], &vb)
            .tensor_f16("e", &[n], &va)
            .tensor_f16("f", &[n], &vb)
            .write(&path)
            .unwrap();
        let src = crate::safetensors::FORMAT
            .open(&path, &Limits::default())
            .unwrap();
        let src = src.as_ref();
        for (x, y) in [(0, 1), (2, 3), (4, 5)] {
            assert!(src.raw(x).is_some());
            let fused = pair_moments(src, x, src, y, n).unwrap();
            let ta = read_tensor(src, x, n).unwrap();
            let tb = read_tensor(src, y, n).unwrap();
            assert_eq!(fused, Moments::of_tensors(&ta, &tb));
            let sampled = pair_moments_sampled(src, x, src, y, n, 8 * CHUNK).unwrap();
            assert_eq!(sampled.n, 8 * CHUNK as u64);
            let all = pair_moments_sampled(src, x, src, y, n, usize::MAX).unwrap();
            assert_eq!(all, fused);
        }
        // Taps: one pass keeps the sample and the ULP histogram that separate passes would
        // read, bit for bit, and pairs samples across tensors like `pair_moments_sampled`.
        let mut hashers = crate::FileHashers::new();
        let len = std::fs::metadata(&path).unwrap().len();
        hashers.add(&path, len);
        let taps = Taps {
            samples: Some(8 * CHUNK),
            ulp: Some(4 * CHUNK),
            hash: Some(&hashers),
        };
        for (x, y, bf16) in [(0, 1, true), (2, 3, false), (4, 5, false)] {
            let pass = pair_pass(src, x, src, y, n, &taps).unwrap();
            assert_eq!(pass.moments, pair_moments(src, x, src, y, n).unwrap());
            let ulp = crate::bf16_ulp_sampled(src, x, src, y, 4 * CHUNK);
            assert_eq!(pass.ulp, ulp);
            assert_eq!(pass.ulp.is_some(), bf16);
            let flipped = pair_pass(src, y, src, x, n, &taps).unwrap();
            let (sx, sy) = (pass.samples.unwrap(), flipped.samples.unwrap());
            // a side of (x, y) against b side of (y, x): x against x.
            let cross = Samples::cross(&sx, &sy).unwrap();
            assert_eq!(
                cross,
                pair_moments_sampled(src, x, src, x, n, 8 * CHUNK).unwrap()
            );
            let cross = Samples::cross(&sy, &sx).unwrap();
            assert_eq!(
                cross,
                pair_moments_sampled(src, y, src, y, n, 8 * CHUNK).unwrap()
            );
            let (ta, tb) = (
                read_tensor(src, x, n).unwrap(),
                read_tensor(src, y, n).unwrap(),
            );
            // Decoded samples pair with stored ones bit-identically (the mixed path).
            let decoded = Samples::of_tensors(&ta, &tb, 8 * CHUNK).unwrap();
            assert_eq!(Samples::cross(&decoded, &sy), Samples::cross(&sx, &sy));
            assert_eq!(Samples::cross(&sy, &decoded), Samples::cross(&sy, &sx));
        }
        // The passes hashed most of the file on the way; the rest is hashed at the end.
        let hasher = hashers.get(&path).unwrap();
        let (done, units) = hasher.progress();
        assert!(
            done * 10 > units * 8,
            "{done} of {units} units hashed by the passes"
        );
        let map = crate::MappedFile::open(&path).unwrap();
        let want = blake3::hash(&std::fs::read(&path).unwrap())
            .to_hex()
            .to_string();
        assert_eq!(hasher.finish(&map).unwrap(), want);
    }

    #[test]
    fn is_sampled_inverts_sampled_chunks() {
        for numel in [
            1,
            CHUNK,
            CHUNK + 1,
            7 * CHUNK + 5,
            100 * CHUNK,
            1000 * CHUNK + 3,
        ] {
            for budget in [0, 1, CHUNK, 3 * CHUNK, 8 * CHUNK, 64 * CHUNK, usize::MAX] {
                let (take, chunk_of) = sampled_chunks(numel, budget);
                let picked: Vec<usize> = (0..take).map(&chunk_of).collect();
                let inverse: Vec<usize> = (0..numel.div_ceil(CHUNK))
                    .filter(|&c| is_sampled(numel, budget, c))
                    .collect();
                assert_eq!(picked, inverse, "numel {numel} budget {budget}");
            }
        }
    }
}
