//! The fused moment kernels: decode a run of stored elements of both tensors and reduce them
//! to [`Moments`] in registers, with no intermediate f32 buffer.
//!
//! Two builds of every kernel exist — [`portable`] (plain Rust, the reference) and `avx2`
//! (intrinsics, x86-64 only) — and `dispatch!` picks one per call from the CPU's features.
//! They give the same bits: the lane layout ([`L`]) and every rounding are fixed here and both
//! builds follow them, which the tests check on hostile values for every stored dtype. What a
//! kernel sees (a chunk of at most [`CHUNK`](super::CHUNK) elements) is decided by the pass,
//! not here.

use crate::{Dtype, Moments};

#[cfg(target_arch = "x86_64")]
mod avx2;
mod portable;

/// Lanes of the fused kernel: element `i` of a chunk goes to lane `i % L`. Part of the
/// numerical contract (like [`CHUNK`](super::CHUNK)): eight f64 lanes are two AVX2 registers per
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
                portable::$k($a, $b)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            portable::$k($a, $b)
        }
    }};
}

/// Moments of two f32 slices (only the common prefix if they differ): the kernel behind
/// [`Moments::of_slices`].
pub(super) fn slices(a: &[f32], b: &[f32]) -> Moments {
    dispatch!(slices::<f32>(a, b))
}

impl Moments {
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
}

/// Stored dtypes the fused kernel decodes itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Stored {
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

    pub(super) fn width(self) -> usize {
        match self {
            Stored::Bf16 | Stored::F16 => 2,
            Stored::F32 => 4,
        }
    }

    /// Moments of two runs of stored bytes of this dtype (the fused kernels).
    pub(super) fn moments(self, x: &[u8], y: &[u8]) -> Moments {
        match self {
            Stored::Bf16 => dispatch!(bf16s::<u8>(x, y)),
            Stored::F16 => dispatch!(f16s::<u8>(x, y)),
            Stored::F32 => dispatch!(f32s::<u8>(x, y)),
        }
    }

    /// Decodes stored bytes into `out` (exactly `out.len()` elements).
    pub(super) fn decode(self, bytes: &[u8], out: &mut [f32]) -> Option<()> {
        crate::to_f32(self.dtype(), bytes, 0, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Bit patterns of every kind: wide-range normals, subnormals, ±0, ±∞, NaNs, and
    /// near-equal neighbours (so that `d * d` is inexact and the equal count is non-trivial).
    fn hostile_bits(n: usize, seed: u64) -> Vec<u32> {
        let mut rng = Rng::new(seed);
        (0..n)
            .map(|i| {
                let r = rng.next_u32();
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
            same(
                unsafe { avx2::slices(&fa, &fb) },
                portable::slices(&fa, &fb),
            );
            let f32_bytes =
                |v: &[u32]| -> Vec<u8> { v.iter().flat_map(|b| b.to_le_bytes()).collect() };
            let (xa, xb) = (f32_bytes(&ba[..len]), f32_bytes(&bb[..len]));
            // SAFETY: as above.
            same(unsafe { avx2::f32s(&xa, &xb) }, portable::f32s(&xa, &xb));
            let bf16_bytes = |v: &[u32]| -> Vec<u8> {
                v.iter()
                    .flat_map(|b| ((b >> 16) as u16).to_le_bytes())
                    .collect()
            };
            let (ha, hb) = (bf16_bytes(&ba[..len]), bf16_bytes(&bb[..len]));
            // SAFETY: as above.
            same(unsafe { avx2::bf16s(&ha, &hb) }, portable::bf16s(&ha, &hb));
            // The low halves as F16: every class of half (subnormal, ∞, NaN) occurs.
            let f16_bytes = |v: &[u32]| -> Vec<u8> {
                v.iter().flat_map(|b| (*b as u16).to_le_bytes()).collect()
            };
            let (ha, hb) = (f16_bytes(&ba[..len]), f16_bytes(&bb[..len]));
            // SAFETY: as above.
            same(unsafe { avx2::f16s(&ha, &hb) }, portable::f16s(&ha, &hb));
        }
    }
}
