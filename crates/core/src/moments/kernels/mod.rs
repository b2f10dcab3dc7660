//! The fused moment kernels: decode a run of stored elements of both tensors and reduce them
//! to [`Moments`] in registers, with no intermediate f32 buffer.
//!
//! Three builds of every kernel exist — [`portable`] (plain Rust, the reference), `avx2` and
//! `avx512` (intrinsics, x86-64 only; the AVX-512 one also takes each side's largest magnitude
//! on the way) — and each call picks one from the CPU's features (`has_avx512`, `dispatch!`).
//! They give the same bits: the lane layout ([`L`]) and every rounding are fixed here and both
//! builds follow them, which the tests check on hostile values for every stored dtype. What a
//! kernel sees (a chunk of at most [`CHUNK`](super::CHUNK) elements) is decided by the pass,
//! not here.

use crate::{Dtype, Moments};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
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
/// std), else the portable one. Both round identically (see [`L`]). The AVX-512 builds are
/// chosen before this, where they apply ([`Stored::moments_max`], [`slices_max`]).
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

/// Whether the CPU runs the AVX-512 kernels ([`avx512`]): AVX-512F besides what the AVX2
/// build needs. Checked once, cached by std.
#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("popcnt")
        && std::arch::is_x86_feature_detected!("f16c")
}

/// The stored bytes of f32 values (little-endian on a little-endian target), for the F32
/// kernels.
#[cfg(target_endian = "little")]
pub(super) fn f32_bytes(v: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and every byte of it is initialised; `u8` has alignment 1;
    // the slice covers exactly `v`'s bytes and borrows `v`.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// Moments of two f32 slices (only the common prefix if they differ): the kernel behind
/// [`Moments::of_slices`].
pub(super) fn slices(a: &[f32], b: &[f32]) -> Moments {
    slices_max(a, b, false).0
}

/// [`slices`], and with `max` each side's largest magnitude's bits where the kernel takes them
/// on the way, as [`Stored::moments_max`].
pub(super) fn slices_max(a: &[f32], b: &[f32], max: bool) -> (Moments, Option<[u32; 2]>) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        let (a, b) = (f32_bytes(a), f32_bytes(b));
        // SAFETY: the CPU supports the kernel's features, checked just above.
        let (m, bits) = unsafe {
            if max {
                avx512::f32s::<true>(a, b)
            } else {
                avx512::f32s::<false>(a, b)
            }
        };
        return (m, max.then_some(bits));
    }
    let _ = max;
    (dispatch!(slices::<f32>(a, b)), None)
}

/// Bytes of one Q8_0 block: an f16 scale and 32 signed 8-bit codes.
pub(super) const Q8_0_BLOCK: usize = 34;

/// A Q8_0 block's scale as f32 (exact). A block is a `chunks_exact(Q8_0_BLOCK)` piece; the
/// fallback is unreachable.
#[inline(always)]
fn q8_0_scale(block: &[u8]) -> f32 {
    let d = block.get(..2).map_or(0, |d| u16::from_le_bytes(arr(d)));
    crate::convert::f16_to_f32(d)
}

/// Moments of two runs of whole Q8_0 blocks ([`crate::WeightSource::blocks`]), bit-identical
/// to decoding both to f32 and running [`slices_max`] over them, when this CPU has a build
/// that is faster than that: the AVX-512 one. `None` elsewhere on x86-64, where the GGUF
/// plugin's AVX2 decoders and the AVX2 slice kernel are the faster way to the same bits.
pub(super) fn q8_0s(a: &[u8], b: &[u8]) -> Option<Moments> {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            // SAFETY: the CPU supports the kernel's features, checked just above.
            return Some(unsafe { avx512::q8_0s(a, b) });
        }
        None
    }
    #[cfg(not(target_arch = "x86_64"))]
    Some(portable::q8_0s(a, b))
}

/// Moments of whole Q8_0 blocks `q` against `f`, stored floats of `stored` (`q_first`: the
/// blocks are side a), bit-identical to decoding both to f32 and running [`slices_max`] over
/// them, when this CPU has a build that does it without the buffers (AVX-512); `None`
/// elsewhere. With `max`, each side's largest magnitude as an f32 bit pattern (sign cleared)
/// when finite, else a pattern at or above `0x7f80_0000`.
pub(super) fn q8_0_mixed(
    q: &[u8],
    f: &[u8],
    stored: Stored,
    q_first: bool,
    max: bool,
) -> Option<(Moments, Option<[u32; 2]>)> {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        macro_rules! call {
            ($k:ident) => {
                // SAFETY: the CPU supports the kernel's features, checked above.
                unsafe {
                    match (q_first, max) {
                        (true, true) => avx512::$k::<true, true>(q, f),
                        (true, false) => avx512::$k::<true, false>(q, f),
                        (false, true) => avx512::$k::<false, true>(q, f),
                        (false, false) => avx512::$k::<false, false>(q, f),
                    }
                }
            };
        }
        let (m, bits) = match stored {
            Stored::Bf16 => call!(q8_0_bf16s),
            Stored::F16 => call!(q8_0_f16s),
            Stored::F32 => call!(q8_0_f32s),
        };
        return Some((m, max.then_some(bits)));
    }
    let _ = (q, f, stored, q_first, max);
    None
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
    /// The fused kernels' stored dtype, if `dtype` is one.
    pub(super) fn of(dtype: Dtype) -> Option<Stored> {
        match dtype {
            Dtype::BF16 => Some(Stored::Bf16),
            Dtype::F16 => Some(Stored::F16),
            Dtype::F32 => Some(Stored::F32),
            _ => None,
        }
    }

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
        self.moments_max(x, y, false).0
    }

    /// [`Self::moments`], and when `max` asks for it and the kernel takes it in the same pass
    /// (the AVX-512 build), each side's largest magnitude as a bit pattern with the sign
    /// cleared (∞ and NaN patterns included), widened to `u32`. `None` when the caller must
    /// scan for it itself.
    pub(super) fn moments_max(self, x: &[u8], y: &[u8], max: bool) -> (Moments, Option<[u32; 2]>) {
        #[cfg(target_arch = "x86_64")]
        if has_avx512() {
            // SAFETY: the CPU supports the kernels' features, checked just above.
            let (m, bits) = unsafe {
                match (self, max) {
                    (Stored::Bf16, true) => avx512::bf16s::<true>(x, y),
                    (Stored::Bf16, false) => avx512::bf16s::<false>(x, y),
                    (Stored::F16, true) => avx512::f16s::<true>(x, y),
                    (Stored::F16, false) => avx512::f16s::<false>(x, y),
                    (Stored::F32, true) => avx512::f32s::<true>(x, y),
                    (Stored::F32, false) => avx512::f32s::<false>(x, y),
                }
            };
            return (m, max.then_some(bits));
        }
        let m = match self {
            Stored::Bf16 => dispatch!(bf16s::<u8>(x, y)),
            Stored::F16 => dispatch!(f16s::<u8>(x, y)),
            Stored::F32 => dispatch!(f32s::<u8>(x, y)),
        };
        (m, None)
    }

    /// [`Self::moments_max`] of a run against itself (`x` read as both sides, e.g. a
    /// tensor known to be byte-identical to the other side's): the same bits, at about half
    /// the arithmetic where the CPU has the AVX-512 self kernels.
    pub(super) fn self_moments_max(self, x: &[u8], max: bool) -> (Moments, Option<[u32; 2]>) {
        #[cfg(target_arch = "x86_64")]
        if has_avx512() {
            // SAFETY: the CPU supports the kernels' features, checked just above.
            let (m, bits) = unsafe {
                match self {
                    Stored::Bf16 => avx512::bf16_self(x),
                    Stored::F16 => avx512::f16_self(x),
                    Stored::F32 => avx512::f32_self(x),
                }
            };
            return (m, max.then_some([bits, bits]));
        }
        self.moments_max(x, x, max)
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

    /// Two runs of [`hostile_bits`] (seeds `seed`, `seed + 1`) where every third element of
    /// the second equals the first's (counts equal positions, ±0 and NaN included).
    fn hostile_pair(n: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
        let (ba, bb) = (hostile_bits(n, seed), hostile_bits(n, seed + 1));
        let bb = bb
            .iter()
            .zip(&ba)
            .enumerate()
            .map(|(i, (y, x))| if i % 3 == 0 { *x } else { *y })
            .collect();
        (ba, bb)
    }

    /// A result's bits, except that every NaN is one NaN: which NaN payload a sum propagates
    /// is not specified (LLVM may commute an addition), and no report shows one — a
    /// non-finite moment makes a metric undefined.
    fn bits(m: Moments) -> (u64, u64, [u64; 6]) {
        let f = [m.mean_a, m.mean_b, m.m2_a, m.m2_b, m.c_ab, m.sum_sq_diff].map(|v| {
            if v.is_nan() {
                f64::NAN.to_bits()
            } else {
                v.to_bits()
            }
        });
        (m.n, m.equal, f)
    }

    /// The Q8_0 block kernels (portable, and AVX-512 where the CPU has it) give the bits of
    /// decoding each block to f32 (`f32(q) · f32(d)`) and reducing the f32 slices, on every
    /// kind of scale (zero, subnormal, the largest f16, ∞, NaN) and random codes.
    #[test]
    fn q8_0_kernels_agree_with_decoding_first() {
        let mut rng = Rng::new(11);
        for blocks in [0usize, 1, 2, 7, 64] {
            let mut block_run = || -> Vec<u8> {
                (0..blocks)
                    .flat_map(|i| {
                        let r = rng.next_u32();
                        let d: u16 = match i % 9 {
                            0 => 0,
                            1 => 0x8000,
                            2 => 0x0003,
                            3 => 0x7bff,
                            4 if blocks > 7 => 0x7c00,
                            5 if blocks > 7 => 0xfe00,
                            _ => 0x2000 | (r as u16 & 0x8fff),
                        };
                        let codes: Vec<u8> = (0..32).map(|_| rng.next_u32() as u8).collect();
                        d.to_le_bytes().into_iter().chain(codes)
                    })
                    .collect()
            };
            let (a, b) = (block_run(), block_run());
            let decode = |v: &[u8]| -> Vec<f32> {
                v.chunks_exact(Q8_0_BLOCK)
                    .flat_map(|c| {
                        let d = q8_0_scale(c);
                        c[2..].iter().map(move |&q| f32::from(q as i8) * d)
                    })
                    .collect()
            };
            let want = bits(slices_max(&decode(&a), &decode(&b), false).0);
            assert_eq!(bits(portable::q8_0s(&a, &b)), want, "{blocks} blocks");
            if let Some(m) = q8_0s(&a, &b) {
                assert_eq!(bits(m), want, "{blocks} blocks");
            }
        }
    }

    /// The portable kernel of a run against itself.
    #[cfg(target_arch = "x86_64")]
    fn reference_self(stored: Stored, x: &[u8]) -> Moments {
        match stored {
            Stored::F32 => portable::f32s(x, x),
            Stored::Bf16 => portable::bf16s(x, x),
            Stored::F16 => portable::f16s(x, x),
        }
    }

    /// Q8_0 blocks against BF16, F16 and F32 runs, either side first: the mixed kernels (where
    /// the CPU has them) give the bits of decoding both to f32 and reducing the slices, and
    /// the largest magnitudes of [`slices_max`] when those are finite.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn q8_0_mixed_kernels_agree_with_decoding_first() {
        let mut rng = Rng::new(13);
        for (blocks, finite) in [
            (0usize, true),
            (1, true),
            (9, true),
            (64, true),
            (64, false),
        ] {
            let q: Vec<u8> = (0..blocks)
                .flat_map(|i| {
                    let r = rng.next_u32();
                    let d: u16 = match i % 7 {
                        0 => 0x8000,
                        1 => 0x0005,
                        2 if !finite => 0x7c00,
                        _ => 0x2400 | (r as u16 & 0x83ff),
                    };
                    let codes: Vec<u8> = (0..32).map(|_| rng.next_u32() as u8).collect();
                    d.to_le_bytes().into_iter().chain(codes)
                })
                .collect();
            let decoded: Vec<f32> = q
                .chunks_exact(Q8_0_BLOCK)
                .flat_map(|c| {
                    let d = q8_0_scale(c);
                    c[2..].iter().map(move |&v| f32::from(v as i8) * d)
                })
                .collect();
            // Floats near the decoded values (equal ones included), and with `!finite` an
            // infinity and a NaN.
            let mut values: Vec<f32> = decoded
                .iter()
                .enumerate()
                .map(|(i, &x)| if i % 5 == 0 { x } else { x * 1.01 + 0.001 })
                .collect();
            if !finite && values.len() > 40 {
                (values[3], values[40]) = (f32::INFINITY, f32::NAN);
            }
            for stored in [Stored::Bf16, Stored::F16, Stored::F32] {
                let bytes: Vec<u8> = match stored {
                    Stored::Bf16 => values
                        .iter()
                        .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
                        .collect(),
                    Stored::F16 => values
                        .iter()
                        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                        .collect(),
                    Stored::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                };
                let mut floats = vec![0f32; values.len()];
                stored.decode(&bytes, &mut floats).unwrap();
                for q_first in [true, false] {
                    let (x, y) = if q_first {
                        (&decoded, &floats)
                    } else {
                        (&floats, &decoded)
                    };
                    let (want, want_max) = slices_max(x, y, true);
                    let Some((got, got_max)) = q8_0_mixed(&q, &bytes, stored, q_first, true) else {
                        continue; // no fused build on this CPU
                    };
                    let case = format!("{stored:?} {blocks} {q_first} {finite}");
                    assert_eq!(bits(got), bits(want), "{case}");
                    let got_max = got_max.unwrap();
                    match want_max {
                        Some(w) => {
                            for (g, w) in got_max.into_iter().zip(w) {
                                assert_eq!(g >= 0x7f80_0000, w >= 0x7f80_0000, "{case}");
                                if w < 0x7f80_0000 {
                                    assert_eq!(g, w, "{case}");
                                }
                            }
                        }
                        None => unreachable!("the mixed kernels exist only with AVX-512"),
                    }
                    let plain = q8_0_mixed(&q, &bytes, stored, q_first, false).unwrap();
                    assert_eq!((bits(plain.0), plain.1), (bits(want), None), "{case}");
                }
            }
        }
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
        let (ba, bb) = hostile_pair(4099, 5);
        let same = |x: Moments, y: Moments| assert_eq!(bits(x), bits(y));
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

    /// The AVX-512 kernels round exactly like the portable ones too (one register per
    /// accumulator, the same eight lanes), for every stored dtype, hostile values and tails of
    /// every size; the largest magnitudes they take on the way are the separate scan's, and
    /// asking for them changes no moment.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_and_portable_kernels_agree_bitwise() {
        if !has_avx512() {
            return; // nothing to compare on this CPU
        }
        let (ba, bb) = hostile_pair(4099, 7);
        let max16 = |v: &[u8]| {
            v.chunks_exact(2)
                .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]]) & 0x7fff))
                .max()
                .unwrap_or(0)
        };
        let max32 = |v: &[u8]| {
            v.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) & 0x7fff_ffff)
                .max()
                .unwrap_or(0)
        };
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 24, 31, 33, 1000, 4099] {
            // Finite-only runs too, so the largest magnitude is not always a NaN pattern.
            for finite in [false, true] {
                let pick = |v: &[u32]| -> Vec<u32> {
                    v[..len]
                        .iter()
                        .map(|&b| if finite { b & 0xbfff_bfff } else { b })
                        .collect()
                };
                let (ua, ub) = (pick(&ba), pick(&bb));
                let fa: Vec<f32> = ua.iter().map(|&b| f32::from_bits(b)).collect();
                let fb: Vec<f32> = ub.iter().map(|&b| f32::from_bits(b)).collect();
                assert_eq!(bits(slices(&fa, &fb)), bits(portable::slices(&fa, &fb)));
                let f32b =
                    |v: &[u32]| -> Vec<u8> { v.iter().flat_map(|b| b.to_le_bytes()).collect() };
                let bf16b = |v: &[u32]| -> Vec<u8> {
                    v.iter()
                        .flat_map(|b| ((b >> 16) as u16).to_le_bytes())
                        .collect()
                };
                let f16b = |v: &[u32]| -> Vec<u8> {
                    v.iter().flat_map(|b| (*b as u16).to_le_bytes()).collect()
                };
                for (stored, enc, want, max) in [
                    (Stored::F32, f32b(&ua), f32b(&ub), max32 as fn(&[u8]) -> u32),
                    (Stored::Bf16, bf16b(&ua), bf16b(&ub), max16),
                    (Stored::F16, f16b(&ua), f16b(&ub), max16),
                ] {
                    let reference = match stored {
                        Stored::F32 => portable::f32s(&enc, &want),
                        Stored::Bf16 => portable::bf16s(&enc, &want),
                        Stored::F16 => portable::f16s(&enc, &want),
                    };
                    let (m, none) = stored.moments_max(&enc, &want, false);
                    let (mm, mags) = stored.moments_max(&enc, &want, true);
                    assert_eq!(bits(m), bits(reference), "{stored:?} {len}");
                    assert_eq!(bits(mm), bits(reference), "{stored:?} {len}");
                    assert_eq!(none, None);
                    assert_eq!(mags, Some([max(&enc), max(&want)]), "{stored:?} {len}");
                    // A run against itself: the self kernel gives the pair kernel's bits
                    // (only NaN-ness of a non-finite sum), and the same magnitudes.
                    let (pair, pair_mags) = stored.moments_max(&enc, &enc, true);
                    let (own, own_mags) = stored.self_moments_max(&enc, true);
                    assert_eq!(bits(own), bits(pair), "{stored:?} {len} {finite}");
                    assert_eq!(bits(own), bits(reference_self(stored, &enc)));
                    assert_eq!(own_mags, pair_mags, "{stored:?} {len}");
                    assert_eq!(stored.self_moments_max(&enc, false).1, None);
                }
            }
        }
    }
}
