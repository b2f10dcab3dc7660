//! AVX2 + FMA builds of the kernels, written with intrinsics (LLVM's vectoriser does not find
//! the shape by itself): eight f64 lanes in two `__m256d` per accumulator, the same lane
//! assignment and rounding as [`Lanes::add`], so results are bit-identical to the portable
//! build ([`super::portable`]). Only the decoding (8 stored elements → two `__m256d`) differs
//! per dtype.
//!
//! Every `unsafe` here is either an intrinsic that needs the target features the kernel is
//! compiled for (its callers check them, `dispatch!` in [`super`]) or an unaligned load or store
//! whose bounds the `SAFETY` note beside it gives.

use std::arch::x86_64::*;

use super::{Lanes, L};
use crate::Moments;

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
            // SAFETY: (whole block) AVX2, FMA, POPCNT and F16C are enabled here;
            // every load reads within one `chunks_exact($oct)` piece.
            unsafe {
                let z = [_mm256_setzero_pd(); 2];
                let (mut sa, mut sb, mut saa, mut sbb, mut sab, mut sdd) = (z, z, z, z, z, z);
                let mut eq = 0u64;
                let mut ca = a.chunks_exact($oct);
                let mut cb = b.chunks_exact($oct);
                for (xa, xb) in (&mut ca).zip(&mut cb) {
                    crate::prefetch_ahead(xa);
                    crate::prefetch_ahead(xb);
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
