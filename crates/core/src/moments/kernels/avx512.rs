//! AVX-512 builds of the fused kernels: the eight f64 lanes of [`L`] are exactly one `__m512d`,
//! so each accumulator is one register with the lane assignment and rounding of
//! [`Lanes::add`] — bit-identical to the portable and AVX2 builds — at half the instructions
//! per element of the AVX2 build (which needs two `__m256d` per accumulator, and spills with
//! twelve of them in sixteen registers). With thirty-two registers there is room for two more
//! accumulators: the largest magnitude's bits of each side (an integer maximum over the stored
//! patterns with the sign cleared), which a pass asking for [`super::super::Magnitudes`] would
//! otherwise take in a second scan of the chunk.
//!
//! Every `unsafe` here is either an intrinsic that needs the target features the kernel is
//! compiled for (its callers check them, `dispatch!` in [`super`]) or an unaligned load whose
//! bounds the `SAFETY` note beside it gives.

use std::arch::x86_64::*;

use super::{Lanes, L};
use crate::Moments;

/// One accumulator as `L` values.
#[target_feature(enable = "avx512f")]
fn lanes(v: __m512d) -> [f64; L] {
    let mut o = [0f64; L];
    // SAFETY: `o` holds 8 f64s; unaligned store.
    unsafe { _mm512_storeu_pd(o.as_mut_ptr(), v) };
    o
}

/// Largest unsigned 16-bit lane.
#[target_feature(enable = "avx2")]
fn max_u16(v: __m128i) -> u16 {
    let mut o = [0u16; 8];
    // SAFETY: `o` holds 16 bytes; unaligned store.
    unsafe { _mm_storeu_si128(o.as_mut_ptr().cast(), v) };
    o.into_iter().max().unwrap_or(0)
}

/// The lane-wise larger of a register's two 128-bit halves (unsigned 16-bit lanes).
#[target_feature(enable = "avx2")]
fn max_halves_u16(v: __m256i) -> __m128i {
    _mm_max_epu16(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v))
}

/// Largest unsigned 32-bit lane.
#[target_feature(enable = "avx2")]
fn max_u32(v: __m256i) -> u32 {
    let mut o = [0u32; 8];
    // SAFETY: `o` holds 32 bytes; unaligned store.
    unsafe { _mm256_storeu_si256(o.as_mut_ptr().cast(), v) };
    o.into_iter().max().unwrap_or(0)
}

/// The first eight of sixteen f32s, widened to f64.
#[target_feature(enable = "avx512f")]
fn low8(w: __m512) -> __m512d {
    _mm512_cvtps_pd(_mm512_castps512_ps256(w))
}

/// The sixteen f32s of `w` widened to f64, as two eights in order. (Taking the second eight
/// through a store and reload instead of the lane extract, to spare the shuffle port, measured
/// slower: BENCHMARKS.md, "Direct reads of cold files".)
#[target_feature(enable = "avx512f")]
#[inline]
fn widen16(w: __m512) -> (__m512d, __m512d) {
    let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(w)));
    (low8(w), _mm512_cvtps_pd(high))
}

/// Adds eight element pairs (`__m512d` each, lane `i` to lane `i`) to the accumulators: the
/// roundings of [`Lanes::add`]. Equality is the caller's (`step16!`, or a compare of its own).
macro_rules! step {
    ($x:expr, $y:expr, $sa:ident, $sb:ident, $saa:ident, $sbb:ident, $sab:ident, $sdd:ident) => {{
        let (x, y) = ($x, $y);
        $sa = _mm512_add_pd($sa, x);
        $sb = _mm512_add_pd($sb, y);
        // Exact products: one rounding, as `s + x * x` in the portable build.
        $saa = _mm512_fmadd_pd(x, x, $saa);
        $sbb = _mm512_fmadd_pd(y, y, $sbb);
        $sab = _mm512_fmadd_pd(x, y, $sab);
        let d = _mm512_sub_pd(x, y);
        $sdd = _mm512_fmadd_pd(d, d, $sdd);
    }};
}

/// Sixteen element pairs (sixteen f32s a side, element `i` of each half to lane `i`) added to
/// the accumulators; evaluates to how many of them are equal. One f32 compare for the
/// sixteen: widening is exact, so `x == y` in f32 is `x == y` in f64 (NaN never equal,
/// `-0 == +0`).
macro_rules! step16 {
    ($wa:expr, $wb:expr, $sa:ident, $sb:ident, $saa:ident, $sbb:ident, $sab:ident, $sdd:ident) => {{
        let (wa, wb) = ($wa, $wb);
        let ((x0, x1), (y0, y1)) = (widen16(wa), widen16(wb));
        step!(x0, y0, $sa, $sb, $saa, $sbb, $sab, $sdd);
        step!(x1, y1, $sa, $sb, $saa, $sbb, $sab, $sdd);
        _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(wa, wb)
    }};
}

/// The accumulators as [`Lanes`].
macro_rules! into_lanes {
    ($sa:ident, $sb:ident, $saa:ident, $sbb:ident, $sab:ident, $sdd:ident, $eq:ident) => {{
        let mut s = Lanes::default();
        (s.sa, s.sb, s.saa, s.sbb, s.sab, s.sdd) = (
            lanes($sa),
            lanes($sb),
            lanes($saa),
            lanes($sbb),
            lanes($sab),
            lanes($sdd),
        );
        // Only the total of `eq` is used (an integer: any split is exact).
        s.eq[0] = $eq;
        s
    }};
}

macro_rules! kernel {
    ($name:ident, $self_name:ident, $inf:expr, $width:expr, $one:expr, $raw:ty, $load:expr,
     $decode:expr, $abs:expr, $max:expr, $zero:expr, $fold:expr, $as_f32_bits:expr,
     $raw16:ty, $load16:expr, $wide16:expr, $abs16:expr, $max16:expr, $zero16:expr,
     $fold16:expr) => {
        /// The moments of a run against itself — bit for bit what the pair kernel gives for
        /// `(a, a)` — and its largest magnitude's bit pattern, at about half the work: the
        /// sums of `b` are those of `a` (the same additions of the same values), the products
        /// `a·b` and `b·b` are `a·a`, and every difference `a − a` is `+0`, or NaN where `a`
        /// is ∞ or NaN (then the folded sum is NaN either way: only NaN-ness is part of the
        /// contract). For a pair read from the same bytes (a byte-identical copy).
        ///
        /// # Safety
        /// The CPU must support AVX-512F, AVX2, FMA, POPCNT and F16C.
        #[target_feature(enable = "avx512f,avx2,fma,popcnt,f16c")]
        #[allow(unused_unsafe)]
        pub(super) unsafe fn $self_name(a: &[u8]) -> (Moments, u32) {
            let len = a.len() / $width;
            let a = &a[..len * $width];
            let load: unsafe fn(&[u8]) -> $raw = $load;
            let decode: unsafe fn($raw) -> __m512d = $decode;
            let abs: unsafe fn($raw) -> $raw = $abs;
            let max: unsafe fn($raw, $raw) -> $raw = $max;
            // SAFETY: (whole block) the target features are enabled here; every load reads
            // within one `chunks_exact(8 * width)` piece.
            unsafe {
                let z = _mm512_setzero_pd();
                let (mut sa, mut saa) = (z, z);
                let mut ma: $raw = $zero;
                let mut eq = 0u64;
                let mut ca = a.chunks_exact(8 * $width);
                for xa in &mut ca {
                    crate::prefetch_ahead(xa);
                    let ra = load(xa);
                    ma = max(ma, abs(ra));
                    let x = decode(ra);
                    sa = _mm512_add_pd(sa, x);
                    saa = _mm512_fmadd_pd(x, x, saa);
                    eq += u64::from(_mm512_cmp_pd_mask::<_CMP_EQ_OQ>(x, x).count_ones());
                }
                let fold: unsafe fn($raw) -> u32 = $fold;
                let mut mag = fold(ma);
                let (sum, squares) = (lanes(sa), lanes(saa));
                let nonfinite = mag >= $inf;
                let mut s = Lanes {
                    sa: sum,
                    sb: sum,
                    saa: squares,
                    sbb: squares,
                    sab: squares,
                    sdd: [if nonfinite { f64::NAN } else { 0.0 }; L],
                    eq: [0; L],
                };
                s.eq[0] = eq;
                let one: fn(&[u8]) -> (f32, u32) = $one;
                for xa in ca.remainder().chunks_exact($width) {
                    let (x, bx) = one(xa);
                    mag = mag.max(bx);
                    s.add_one(x, x);
                }
                (Moments::from_lanes(len, s), mag)
            }
        }

        /// Moments of two runs of stored elements and, when `MAGS`, the largest magnitude's
        /// bit pattern of each side over the whole runs (sign cleared, ∞ and NaN patterns
        /// included); `[0, 0]` otherwise.
        ///
        /// # Safety
        /// The CPU must support AVX-512F, AVX2, FMA, POPCNT and F16C.
        #[target_feature(enable = "avx512f,avx2,fma,popcnt,f16c")]
        #[allow(unused_unsafe)]
        pub(super) unsafe fn $name<const MAGS: bool>(a: &[u8], b: &[u8]) -> (Moments, [u32; 2]) {
            let len = (a.len() / $width).min(b.len() / $width);
            let (a, b) = (&a[..len * $width], &b[..len * $width]);
            let load: unsafe fn(&[u8]) -> $raw = $load;
            let decode: unsafe fn($raw) -> __m512d = $decode;
            let abs: unsafe fn($raw) -> $raw = $abs;
            let max: unsafe fn($raw, $raw) -> $raw = $max;
            let load16: unsafe fn(&[u8]) -> $raw16 = $load16;
            let wide16: unsafe fn($raw16) -> __m512 = $wide16;
            let abs16: unsafe fn($raw16) -> $raw16 = $abs16;
            let max16: unsafe fn($raw16, $raw16) -> $raw16 = $max16;
            // SAFETY: (whole block) the target features are enabled here; every load reads
            // within one `chunks_exact(16 * width)` or `chunks_exact(8 * width)` piece.
            unsafe {
                let z = _mm512_setzero_pd();
                let (mut sa, mut sb, mut saa, mut sbb, mut sab, mut sdd) = (z, z, z, z, z, z);
                let zero16: $raw16 = $zero16;
                let (mut ma16, mut mb16) = (zero16, zero16);
                let mut eq = 0u64;
                // Sixteen elements at a time: one widening of each side to sixteen f32s (and
                // one magnitude step) instead of two of eight, then its two eights in order —
                // the same values into the same lanes, so the same bits; 13 % faster on BF16
                // (BENCHMARKS.md, "Huge pages handed back whole, sixteen elements at a time").
                let mut ca = a.chunks_exact(16 * $width);
                let mut cb = b.chunks_exact(16 * $width);
                for (xa, xb) in (&mut ca).zip(&mut cb) {
                    crate::prefetch_ahead(xa);
                    crate::prefetch_ahead(xb);
                    let (ra, rb) = (load16(xa), load16(xb));
                    if MAGS {
                        ma16 = max16(ma16, abs16(ra));
                        mb16 = max16(mb16, abs16(rb));
                    }
                    let same = step16!(wide16(ra), wide16(rb), sa, sb, saa, sbb, sab, sdd);
                    eq += u64::from(same.count_ones());
                }
                let fold16: unsafe fn($raw16) -> u32 = $fold16;
                let zero: $raw = $zero;
                let (mut ma, mut mb) = (zero, zero);
                let (mut ca, mut cb) = (
                    ca.remainder().chunks_exact(8 * $width),
                    cb.remainder().chunks_exact(8 * $width),
                );
                for (xa, xb) in (&mut ca).zip(&mut cb) {
                    crate::prefetch_ahead(xa);
                    crate::prefetch_ahead(xb);
                    let (ra, rb) = (load(xa), load(xb));
                    if MAGS {
                        ma = max(ma, abs(ra));
                        mb = max(mb, abs(rb));
                    }
                    let (x, y) = (decode(ra), decode(rb));
                    step!(x, y, sa, sb, saa, sbb, sab, sdd);
                    eq += u64::from(_mm512_cmp_pd_mask::<_CMP_EQ_OQ>(x, y).count_ones());
                }
                let mut s = into_lanes!(sa, sb, saa, sbb, sab, sdd, eq);
                let fold: unsafe fn($raw) -> u32 = $fold;
                let mut mags = if MAGS {
                    [fold(ma).max(fold16(ma16)), fold(mb).max(fold16(mb16))]
                } else {
                    [0, 0]
                };
                let one: fn(&[u8]) -> (f32, u32) = $one;
                for (xa, xb) in ca
                    .remainder()
                    .chunks_exact($width)
                    .zip(cb.remainder().chunks_exact($width))
                {
                    let ((x, bx), (y, by)) = (one(xa), one(xb));
                    if MAGS {
                        mags = [mags[0].max(bx), mags[1].max(by)];
                    }
                    s.add_one(x, y);
                }
                (Moments::from_lanes(len, s), mags)
            }
        }
    };
}

/// Calls kernel-building macro `$m` with the arguments before the codec, then the BF16
/// codec: width in bytes, the one-element decoder, the raw register type, the load, the
/// decode to f64, the magnitude mask, the maximum, its zero, the fold of the maximum to a
/// pattern, and that pattern as an f32 bit pattern; then the same for sixteen elements at a
/// time (the raw register type, load, widening to sixteen f32s, mask, maximum, zero, fold).
macro_rules! bf16_codec {
    ($m:ident, $($pre:tt)*) => {
        $m!(
            $($pre)*
            2,
            |c| {
                let bits = u16::from_le_bytes(super::arr(c));
                (super::bf16(u32::from(bits)), u32::from(bits & 0x7fff))
            },
            __m128i,
            // SAFETY: `c` holds 16 bytes; unaligned load.
            |c| unsafe { _mm_loadu_si128(c.as_ptr().cast()) },
            // SAFETY: register operations the kernel's target features provide. A BF16 value is the
            // high half of an f32: zero-extended and shifted up 16 bits, it is exactly that f32.
            |v| unsafe {
                let w = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(v));
                _mm512_cvtps_pd(_mm256_castsi256_ps(w))
            },
            // SAFETY: register operations the kernel's target features provide.
            |v| unsafe { _mm_and_si128(v, _mm_set1_epi16(0x7fff)) },
            // SAFETY: register operations the kernel's target features provide.
            |m, v| unsafe { _mm_max_epu16(m, v) },
            _mm_setzero_si128(),
            // SAFETY: register operations the kernel's target features provide.
            |m| unsafe { u32::from(max_u16(m)) },
            // The f32 pattern of a BF16 pattern: its high half.
            |b| b << 16,
            __m256i,
            // SAFETY: `c` holds 32 bytes; unaligned load.
            |c| unsafe { _mm256_loadu_si256(c.as_ptr().cast()) },
            // SAFETY: register operations the kernel's target features provide; sixteen
            // BF16 values zero-extended and shifted up 16 bits are exactly their f32s.
            |v| unsafe { _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(v))) },
            // SAFETY: register operations the kernel's target features provide.
            |v| unsafe { _mm256_and_si256(v, _mm256_set1_epi16(0x7fff)) },
            // SAFETY: register operations the kernel's target features provide.
            |m, v| unsafe { _mm256_max_epu16(m, v) },
            _mm256_setzero_si256(),
            // SAFETY: register operations the kernel's target features provide.
            |m| unsafe { u32::from(max_u16(max_halves_u16(m))) }
        );
    };
}

/// Calls kernel-building macro `$m` with the arguments before the codec, then the F16
/// codec: width in bytes, the one-element decoder, the raw register type, the load, the
/// decode to f64, the magnitude mask, the maximum, its zero, the fold of the maximum to a
/// pattern, and that pattern as an f32 bit pattern; then the same for sixteen elements at a
/// time (the raw register type, load, widening to sixteen f32s, mask, maximum, zero, fold).
macro_rules! f16_codec {
    ($m:ident, $($pre:tt)*) => {
        $m!(
            $($pre)*
            2,
            |c| {
                let bits = u16::from_le_bytes(super::arr(c));
                (crate::convert::f16_to_f32(bits), u32::from(bits & 0x7fff))
            },
            __m128i,
            // SAFETY: `c` holds 16 bytes; unaligned load.
            |c| unsafe { _mm_loadu_si128(c.as_ptr().cast()) },
            // SAFETY: register operations the kernel's target features provide. F16C widens eight
            // halves exactly (NaNs quieted, as the portable conversion does).
            |v| unsafe { _mm512_cvtps_pd(_mm256_cvtph_ps(v)) },
            // SAFETY: register operations the kernel's target features provide.
            |v| unsafe { _mm_and_si128(v, _mm_set1_epi16(0x7fff)) },
            // SAFETY: register operations the kernel's target features provide.
            |m, v| unsafe { _mm_max_epu16(m, v) },
            _mm_setzero_si128(),
            // SAFETY: register operations the kernel's target features provide.
            |m| unsafe { u32::from(max_u16(m)) },
            // The f32 pattern of a finite F16 magnitude pattern (exact, order-preserving); an
            // infinite or NaN one as a pattern at or above the f32 infinity's.
            |b| if b >= 0x7c00 { 0x7f80_0000 | b } else { crate::convert::f16_to_f32(b as u16).to_bits() },
            __m256i,
            // SAFETY: `c` holds 32 bytes; unaligned load.
            |c| unsafe { _mm256_loadu_si256(c.as_ptr().cast()) },
            // SAFETY: register operations the kernel's target features provide; sixteen halves
            // widened exactly, as the eight-wide decoder does.
            |v| unsafe { _mm512_cvtph_ps(v) },
            // SAFETY: register operations the kernel's target features provide.
            |v| unsafe { _mm256_and_si256(v, _mm256_set1_epi16(0x7fff)) },
            // SAFETY: register operations the kernel's target features provide.
            |m, v| unsafe { _mm256_max_epu16(m, v) },
            _mm256_setzero_si256(),
            // SAFETY: register operations the kernel's target features provide.
            |m| unsafe { u32::from(max_u16(max_halves_u16(m))) }
        );
    };
}

/// Calls kernel-building macro `$m` with the arguments before the codec, then the F32
/// codec: width in bytes, the one-element decoder, the raw register type, the load, the
/// decode to f64, the magnitude mask, the maximum, its zero, the fold of the maximum to a
/// pattern, and that pattern as an f32 bit pattern; then the same for sixteen elements at a
/// time (the raw register type, load, widening to sixteen f32s, mask, maximum, zero, fold).
macro_rules! f32_codec {
    ($m:ident, $($pre:tt)*) => {
        $m!(
            $($pre)*
            4,
            |c| {
                let bits = u32::from_le_bytes(super::arr(c));
                (f32::from_bits(bits), bits & 0x7fff_ffff)
            },
            __m256i,
            // SAFETY: `c` holds 32 bytes; unaligned load (x86 is little-endian).
            |c| unsafe { _mm256_loadu_si256(c.as_ptr().cast()) },
            // SAFETY: register operations the kernel's target features provide.
            |v| unsafe { _mm512_cvtps_pd(_mm256_castsi256_ps(v)) },
            // SAFETY: register operations the kernel's target features provide.
            |v| unsafe { _mm256_and_si256(v, _mm256_set1_epi32(0x7fff_ffff)) },
            // SAFETY: register operations the kernel's target features provide.
            |m, v| unsafe { _mm256_max_epu32(m, v) },
            _mm256_setzero_si256(),
            // SAFETY: register operations the kernel's target features provide.
            |m| unsafe { max_u32(m) },
            |b| b,
            __m512i,
            // SAFETY: `c` holds 64 bytes; unaligned load (x86 is little-endian).
            |c| unsafe { _mm512_loadu_si512(c.as_ptr().cast()) },
            // SAFETY: register operations the kernel's target features provide.
            |v| unsafe { _mm512_castsi512_ps(v) },
            // SAFETY: register operations the kernel's target features provide.
            |v| unsafe { _mm512_and_si512(v, _mm512_set1_epi32(0x7fff_ffff)) },
            // SAFETY: register operations the kernel's target features provide.
            |m, v| unsafe { _mm512_max_epu32(m, v) },
            _mm512_setzero_si512(),
            // SAFETY: register operations the kernel's target features provide.
            |m| unsafe { _mm512_reduce_max_epu32(m) }
        );
    };
}

bf16_codec!(kernel, bf16s, bf16_self, 0x7f80,);
f16_codec!(kernel, f16s, f16_self, 0x7c00,);
f32_codec!(kernel, f32s, f32_self, 0x7f80_0000,);

/// Elements `16·h .. 16·h + 16` of a Q8_0 block as f32, `f32(q) · d` with `d` the block's
/// scale in every lane (the GGUF decoder's arithmetic).
///
/// # Safety
/// The CPU must support AVX-512F; `block` must hold at least `2 + 16·h + 16` bytes (a whole
/// block and `h < 2`).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn q8_0_sixteen(block: &[u8], h: usize, d: __m512) -> __m512 {
    // SAFETY: the caller guarantees the 16 bytes at `2 + 16·h` lie in `block`; unaligned load.
    let codes = unsafe { _mm_loadu_si128(block.as_ptr().add(2 + 16 * h).cast()) };
    _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(codes)), d)
}

/// Moments of two runs of whole Q8_0 blocks ([`super::Q8_0_BLOCK`] bytes: `d: f16`, then 32
/// signed codes), element `j` of a block being `f32(q_j) · f32(d)` exactly as the GGUF
/// decoder computes it, each block's 32 elements four eights of lanes: the same values in
/// the same lanes as decoding to f32 first and running [`f32s`], so the same bits.
///
/// # Safety
/// The CPU must support AVX-512F, AVX2, FMA, POPCNT and F16C.
#[target_feature(enable = "avx512f,avx2,fma,popcnt,f16c")]
pub(super) unsafe fn q8_0s(a: &[u8], b: &[u8]) -> Moments {
    const B: usize = super::Q8_0_BLOCK;
    // SAFETY: (whole block) the target features are enabled here; each load reads 16 bytes
    // at offset `2 + 16·h ≤ 18` of one `chunks_exact(34)` piece.
    unsafe {
        let z = _mm512_setzero_pd();
        let (mut sa, mut sb, mut saa, mut sbb, mut sab, mut sdd) = (z, z, z, z, z, z);
        let mut eq = 0u64;
        let mut n = 0usize;
        for (ba, bb) in a.chunks_exact(B).zip(b.chunks_exact(B)) {
            crate::prefetch_ahead(ba);
            crate::prefetch_ahead(bb);
            let da = _mm512_set1_ps(super::q8_0_scale(ba));
            let db = _mm512_set1_ps(super::q8_0_scale(bb));
            // The block's four equality masks counted at once (one `popcnt`; counted one
            // by one, the compiler vectorises the counts into byte shuffles, 25 % of the
            // kernel's time). Sixteen codes widened at a time, then their two eights in order.
            let mut same = 0u32;
            for h in 0..2 {
                let (wa, wb) = (q8_0_sixteen(ba, h, da), q8_0_sixteen(bb, h, db));
                let m = step16!(wa, wb, sa, sb, saa, sbb, sab, sdd);
                same |= u32::from(m) << (16 * h);
            }
            eq += u64::from(same.count_ones());
            n += 32;
        }
        Moments::from_lanes(n, into_lanes!(sa, sb, saa, sbb, sab, sdd, eq))
    }
}

/// Moments of whole Q8_0 blocks against a run of stored floats of one dtype (`Q_FIRST`: the
/// blocks are side a), element `j` of a block `f32(q_j) · f32(d)` as the GGUF decoder computes
/// it, each block four eights of lanes against the float run's next 32 elements: the same
/// values in the same lanes as decoding both to f32 first and running [`f32s`], so the same
/// bits. With `MAGS`, each side's largest magnitude as an f32 bit pattern (sign cleared) when
/// it is finite, else a pattern at or above `0x7f80_0000`.
macro_rules! q8_0_mixed {
    ($name:ident, $width:expr, $one:expr, $raw:ty, $load:expr, $decode:expr, $abs:expr,
     $max:expr, $zero:expr, $fold:expr, $as_f32_bits:expr,
     $raw16:ty, $load16:expr, $wide16:expr, $abs16:expr, $max16:expr, $zero16:expr,
     $fold16:expr) => {
        // (The codec's eight-wide items are named above only to match; the float run is
        // read sixteen at a time.)
        /// See [`q8_0_mixed!`].
        ///
        /// # Safety
        /// The CPU must support AVX-512F, AVX2, FMA, POPCNT and F16C.
        #[target_feature(enable = "avx512f,avx2,fma,popcnt,f16c")]
        #[allow(unused_unsafe)]
        pub(super) unsafe fn $name<const Q_FIRST: bool, const MAGS: bool>(
            q: &[u8],
            f: &[u8],
        ) -> (Moments, [u32; 2]) {
            const B: usize = super::Q8_0_BLOCK;
            let load16: unsafe fn(&[u8]) -> $raw16 = $load16;
            let wide16: unsafe fn($raw16) -> __m512 = $wide16;
            let abs16: unsafe fn($raw16) -> $raw16 = $abs16;
            let max16: unsafe fn($raw16, $raw16) -> $raw16 = $max16;
            // SAFETY: (whole block) the target features are enabled here; each code load
            // reads 16 bytes at offset `2 + 16·h ≤ 18` of one `chunks_exact(34)` piece, each
            // float load `16 · width` bytes at `16 · width · h` of one
            // `chunks_exact(32 · width)` piece.
            unsafe {
                let z = _mm512_setzero_pd();
                let (mut sa, mut sb, mut saa, mut sbb, mut sab, mut sdd) = (z, z, z, z, z, z);
                let mut eq = 0u64;
                let mut n = 0usize;
                let mut mq = _mm512_setzero_si512();
                let mut mf: $raw16 = $zero16;
                let sign = _mm512_set1_epi32(0x7fff_ffff);
                for (block, run) in q.chunks_exact(B).zip(f.chunks_exact(32 * $width)) {
                    crate::prefetch_ahead(block);
                    crate::prefetch_ahead(run);
                    let d = _mm512_set1_ps(super::q8_0_scale(block));
                    let mut same = 0u32;
                    for h in 0..2 {
                        let v = q8_0_sixteen(block, h, d);
                        let raw = load16(&run[16 * $width * h..]);
                        if MAGS {
                            mq = _mm512_max_epu32(
                                mq,
                                _mm512_and_si512(_mm512_castps_si512(v), sign),
                            );
                            mf = max16(mf, abs16(raw));
                        }
                        let w = wide16(raw);
                        let (x, y) = if Q_FIRST { (v, w) } else { (w, v) };
                        let m = step16!(x, y, sa, sb, saa, sbb, sab, sdd);
                        same |= u32::from(m) << (16 * h);
                    }
                    eq += u64::from(same.count_ones());
                    n += 32;
                }
                let s = into_lanes!(sa, sb, saa, sbb, sab, sdd, eq);
                let mags = if MAGS {
                    let fold16: unsafe fn($raw16) -> u32 = $fold16;
                    let as_f32_bits: fn(u32) -> u32 = $as_f32_bits;
                    let (bq, bf) = (_mm512_reduce_max_epu32(mq), as_f32_bits(fold16(mf)));
                    if Q_FIRST {
                        [bq, bf]
                    } else {
                        [bf, bq]
                    }
                } else {
                    [0, 0]
                };
                (Moments::from_lanes(n, s), mags)
            }
        }
    };
}

bf16_codec!(q8_0_mixed, q8_0_bf16s,);
f16_codec!(q8_0_mixed, q8_0_f16s,);
f32_codec!(q8_0_mixed, q8_0_f32s,);
