//! Conversion of stored elements to f32, for every float dtype safetensors defines.
//!
//! Metrics see f32 only; this is the one place that knows the bit layouts. Every conversion is
//! exact (each stored value is representable in f32) except F64, which rounds to nearest even.
//! NaN payloads are not preserved bit for bit, only NaN-ness.
//!
//! Speed matters (an audit converts every weight of two models), so conversions are plain
//! loops over `chunks_exact` with no per-element branches that block vectorisation:
//!
//! * F16 rebiases the exponent with integer adds and handles subnormals with one exact float
//!   subtraction (F. Giesen, "half to float done quick",
//!   <https://fgiesen.wordpress.com/2012/03/28/half-to-float-done-quic/>), selecting the
//!   result without branches;
//! * BF16 is a shift;
//! * 8-bit types read a 256-entry table built at compile time by [`minifloat`];
//! * the packed sub-byte types (F4, F6) read 16- and 64-entry tables.
//!
//! # Packing of sub-byte types
//!
//! safetensors records the *logical* shape of a packed tensor and treats its bytes as a bit
//! stream whose length must be a whole number of bytes (`safetensors` 0.8,
//! `Metadata::validate`, `MisalignedSlice`). The order of elements inside a byte is not in the
//! format's spec, so we follow the only producer in the ecosystem:
//!
//! * **F4** maps to PyTorch's `torch.float4_e2m1fn_x2` (safetensors `bindings/python`,
//!   `torch.py` and `lib.rs`: "F4 packs two elements per byte"). Element `2i` is the **low**
//!   nibble of byte `i` and element `2i + 1` the high nibble — the layout of NVIDIA's
//!   `__nv_fp4x2_e2m1` and of compressed-tensors' `pack_fp4_to_uint8` (`(x[1::2] << 4) | x[0::2]`).
//! * **F6** has no framework dtype (neither PyTorch nor ml_dtypes packs it), so no producer
//!   defines an order. We read it as the same least-significant-bit-first stream that F4's
//!   layout is an instance of: element `i` occupies bits `6i .. 6i + 6` of the stream, bit `k`
//!   of the stream being bit `k % 8` of byte `k / 8`. Four elements fill three bytes:
//!   `b0 | b1 << 8 | b2 << 16 = v0 | v1 << 6 | v2 << 12 | v3 << 18`. This is a documented
//!   choice, not an ecosystem fact; revisit it if a producer appears.

use crate::Dtype;

/// Converts elements `start .. start + out.len()` of a tensor whose little-endian bytes are
/// `data` (the whole tensor) and whose dtype is `dtype` into `out`. Returns `None` if the
/// dtype is not a float type ([`Dtype::is_float`]) or the range is outside `data`.
///
/// For packed sub-byte dtypes (F4, F6_*) `start` and `out.len()` count elements, not bytes,
/// and need not be aligned to a byte; see the module documentation for the bit order.
pub fn to_f32(dtype: Dtype, data: &[u8], start: usize, out: &mut [f32]) -> Option<()> {
    if !dtype.is_float() {
        return None;
    }
    let end = start.checked_add(out.len())?;
    match dtype {
        Dtype::F32 => {
            for (o, c) in out
                .iter_mut()
                .zip(whole(data, start, end, 4)?.chunks_exact(4))
            {
                *o = f32::from_le_bytes(array(c));
            }
        }
        Dtype::F64 => {
            for (o, c) in out
                .iter_mut()
                .zip(whole(data, start, end, 8)?.chunks_exact(8))
            {
                // `as` rounds to nearest, ties to even (the Rust reference, "Numeric cast").
                *o = f64::from_le_bytes(array(c)) as f32;
            }
        }
        Dtype::F16 => f16s_to_f32(whole(data, start, end, 2)?, out),
        Dtype::BF16 => bf16s_to_f32(whole(data, start, end, 2)?, out),
        Dtype::F8_E4M3 => table8(&F8_E4M3, data, start, end, out)?,
        Dtype::F8_E5M2 => table8(&F8_E5M2, data, start, end, out)?,
        Dtype::F8_E4M3FNUZ => table8(&F8_E4M3FNUZ, data, start, end, out)?,
        Dtype::F8_E5M2FNUZ => table8(&F8_E5M2FNUZ, data, start, end, out)?,
        Dtype::F8_E8M0 => table8(&F8_E8M0, data, start, end, out)?,
        Dtype::F6_E2M3 => fp6(&F6_E2M3, data, start, end, out)?,
        Dtype::F6_E3M2 => fp6(&F6_E3M2, data, start, end, out)?,
        Dtype::F4 => fp4(data, start, end, out)?,
        // `is_float` was checked above; any other dtype is not convertible.
        _ => return None,
    }
    Some(())
}

/// Little-endian BF16 bytes (`2 · out.len()` of them) to f32 (each the high half of its
/// f32: exact): eight at a time with AVX2 where the CPU has it, asking for the cache line 2 KiB
/// ahead ([`crate::prefetch_ahead`]; the buffered pass converts mixed-dtype pairs through
/// here, straight from the map), else a portable loop. Integer operations: the same bits.
fn bf16s_to_f32(bytes: &[u8], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { bf16s_to_f32_avx2(bytes, out) };
        return;
    }
    bf16s_to_f32_portable(bytes, out);
}

/// [`bf16s_to_f32`] without AVX2.
fn bf16s_to_f32_portable(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = f32::from_bits(u32::from(u16::from_le_bytes(array(c))) << 16);
    }
}

/// [`bf16s_to_f32`] with AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn bf16s_to_f32_avx2(bytes: &[u8], out: &mut [f32]) {
    use std::arch::x86_64::{
        _mm256_cvtepu16_epi32, _mm256_slli_epi32, _mm256_storeu_si256, _mm_loadu_si128,
    };
    // Whole elements on both sides, so that the remainders below line up.
    let n = out.len().min(bytes.len() / 2);
    let (bytes, out) = (&bytes[..2 * n], &mut out[..n]);
    let mut src = bytes.chunks_exact(16);
    let mut dst = out.chunks_exact_mut(8);
    for (s, d) in (&mut src).zip(&mut dst) {
        crate::prefetch_ahead(s);
        // SAFETY: `s` holds 16 bytes and `d` 8 f32s (32 bytes); unaligned load and store.
        unsafe {
            let w =
                _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(s.as_ptr().cast())));
            _mm256_storeu_si256(d.as_mut_ptr().cast(), w);
        }
    }
    bf16s_to_f32_portable(src.remainder(), dst.into_remainder());
}

/// Little-endian F16 bytes (`2 · out.len()` of them) to f32: eight at a time with F16C's
/// `vcvtph2ps` where the CPU has it (the buffered pass converts F16 views and mixed-dtype
/// pairs through here: the portable loop, compiled for baseline x86-64, was 23 % of an F16
/// GGUF pair's time), else [`f16_to_f32`] per element. Both give the same bits, NaNs quieted
/// the same way (test `f16c_and_portable_f16_agree_on_every_pattern`).
fn f16s_to_f32(bytes: &[u8], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("f16c") && std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU supports F16C and AVX, checked just above.
        unsafe { f16s_to_f32_f16c(bytes, out) };
        return;
    }
    f16s_to_f32_portable(bytes, out);
}

/// [`f16s_to_f32`] without F16C.
fn f16s_to_f32_portable(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = f16_to_f32(u16::from_le_bytes(array(c)));
    }
}

/// [`f16s_to_f32`] with F16C.
///
/// # Safety
/// The CPU must support F16C and AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn f16s_to_f32_f16c(bytes: &[u8], out: &mut [f32]) {
    use std::arch::x86_64::{_mm256_cvtph_ps, _mm256_storeu_ps, _mm_loadu_si128};
    // Whole elements on both sides, so that the remainders below line up.
    let n = out.len().min(bytes.len() / 2);
    let (bytes, out) = (&bytes[..2 * n], &mut out[..n]);
    let mut src = bytes.chunks_exact(16);
    let mut dst = out.chunks_exact_mut(8);
    for (s, d) in (&mut src).zip(&mut dst) {
        crate::prefetch_ahead(s);
        // SAFETY: `s` holds 16 bytes and `d` 8 f32s; unaligned load and store.
        unsafe {
            _mm256_storeu_ps(
                d.as_mut_ptr(),
                _mm256_cvtph_ps(_mm_loadu_si128(s.as_ptr().cast())),
            )
        };
    }
    f16s_to_f32_portable(src.remainder(), dst.into_remainder());
}

/// The bytes of whole-byte elements `start .. end`, each `size` bytes.
fn whole(data: &[u8], start: usize, end: usize, size: usize) -> Option<&[u8]> {
    data.get(start.checked_mul(size)?..end.checked_mul(size)?)
}

/// A chunk from `chunks_exact(N)` as an array. The fallback is unreachable, and the optimiser
/// removes it; it exists so that no code path can panic.
#[inline(always)]
fn array<const N: usize>(c: &[u8]) -> [u8; N] {
    c.try_into().unwrap_or([0; N])
}

/// IEEE binary16 bits to f32, exactly, including subnormals, infinities and NaNs (quieted).
///
/// Branch-free, so that the loop vectorises, and without arithmetic on subnormal floats,
/// which costs a microcode assist per element on many x86 cores.
#[inline(always)]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    const EXP: u32 = 0x7c00 << 13; // the f16 exponent field, shifted into f32 position
    let h = u32::from(h);
    let shifted = (h & 0x7fff) << 13;
    let exp = shifted & EXP;
    // Normal numbers: rebias the exponent from 15 to 127.
    let normal = shifted + ((127 - 15) << 23);
    // Infinity and NaN: exponent all ones; NaNs quieted, as F16C and `half` do.
    let special = (normal + ((128 - 16) << 23)) | (u32::from(shifted > EXP) << 22);
    // Zero and subnormals m·2^-24: build the normal number 2^-14·(1 + m/1024) and subtract
    // 2^-14 (exact, as both are normal and the result is representable).
    let subnormal = (f32::from_bits(normal + (1 << 23)) - f32::from_bits(113 << 23)).to_bits();
    let magnitude = if exp == EXP {
        special
    } else if exp == 0 {
        subnormal
    } else {
        normal
    };
    f32::from_bits(magnitude | (h & 0x8000) << 16)
}

/// Elements `start .. end` of an 8-bit dtype through its lookup table.
fn table8(
    table: &[f32; 256],
    data: &[u8],
    start: usize,
    end: usize,
    out: &mut [f32],
) -> Option<()> {
    for (o, &b) in out.iter_mut().zip(data.get(start..end)?) {
        *o = table[usize::from(b)];
    }
    Some(())
}

/// Bytes needed to hold elements `0 .. end` of `bits` bits each; `None` if `data` is shorter
/// or the count overflows.
fn packed_fits(data: &[u8], end: usize, bits: usize) -> Option<()> {
    (end.checked_mul(bits)?.div_ceil(8) <= data.len()).then_some(())
}

/// Elements `start .. end` of packed FP4 (two per byte, element `2i` in the low nibble).
fn fp4(data: &[u8], start: usize, end: usize, out: &mut [f32]) -> Option<()> {
    packed_fits(data, end, 4)?;
    let nibble = |i: usize| -> f32 {
        let byte = data.get(i / 2).copied().unwrap_or(0);
        F4_E2M1[usize::from((byte >> (4 * (i % 2))) & 0x0f)]
    };
    // An odd start begins in the high nibble.
    let (head, body) = out.split_at_mut_checked((start % 2).min(out.len()))?;
    for (k, o) in head.iter_mut().enumerate() {
        *o = nibble(start + k);
    }
    let i = start + head.len();
    let bytes = data.get(i / 2..)?;
    let done = body.len() / 2 * 2;
    let mut pairs = body.chunks_exact_mut(2);
    for (pair, &b) in (&mut pairs).zip(bytes) {
        if let [lo, hi] = pair {
            *lo = F4_E2M1[usize::from(b & 0x0f)];
            *hi = F4_E2M1[usize::from(b >> 4)];
        }
    }
    for (k, o) in pairs.into_remainder().iter_mut().enumerate() {
        *o = nibble(i + done + k);
    }
    Some(())
}

/// Elements `start .. end` of packed FP6 (four per three bytes, least significant bit first).
fn fp6(table: &[f32; 64], data: &[u8], start: usize, end: usize, out: &mut [f32]) -> Option<()> {
    packed_fits(data, end, 6)?;
    // One element read on its own: it spans at most two bytes.
    let single = |i: usize| -> f32 {
        let bit = i * 6; // cannot overflow: `packed_fits` checked `end * 6`
        let lo = u16::from(data.get(bit / 8).copied().unwrap_or(0));
        let hi = u16::from(data.get(bit / 8 + 1).copied().unwrap_or(0));
        table[usize::from(((lo | hi << 8) >> (bit % 8)) & 0x3f)]
    };
    // Elements before the first 4-element group boundary.
    let (head, body) = out.split_at_mut_checked(((4 - start % 4) % 4).min(out.len()))?;
    for (k, o) in head.iter_mut().enumerate() {
        *o = single(start + k);
    }
    let i = start + head.len();
    let bytes = data.get(i / 4 * 3..)?;
    let done = body.len() / 4 * 4;
    let mut groups = body.chunks_exact_mut(4);
    for (group, c) in (&mut groups).zip(bytes.chunks_exact(3)) {
        let [b0, b1, b2] = array::<3>(c);
        let w = u32::from(b0) | u32::from(b1) << 8 | u32::from(b2) << 16;
        if let [v0, v1, v2, v3] = group {
            *v0 = table[(w & 0x3f) as usize];
            *v1 = table[(w >> 6 & 0x3f) as usize];
            *v2 = table[(w >> 12 & 0x3f) as usize];
            *v3 = table[(w >> 18 & 0x3f) as usize];
        }
    }
    for (k, o) in groups.into_remainder().iter_mut().enumerate() {
        *o = single(i + done + k);
    }
    Some(())
}

/// How a minifloat encodes values outside the finite range.
#[derive(Clone, Copy)]
enum Special {
    /// No infinities or NaNs: every code is finite (OCP MX FP4/FP6).
    None,
    /// IEEE-like: exponent all ones is infinity (mantissa 0) or NaN (OCP FP8 E5M2).
    Ieee,
    /// "fn": only exponent and mantissa all ones is NaN, no infinities (OCP FP8 E4M3).
    AllOnesNan,
    /// "fnuz": the negative-zero code `1000…0` is the only NaN, no infinities
    /// (Graphcore/AMD FP8, <https://arxiv.org/abs/2206.02915>).
    NegZeroNan,
}

/// f32 bits of minifloat `code` with `ebits` exponent bits, `mbits` mantissa bits, a sign bit
/// above them, exponent `bias`, subnormals at exponent 0, and the given special values.
///
/// Every such value is a normal f32 (the smallest, E5M2FNUZ's 2^-17, is far above f32's
/// 2^-126), so the result is exact.
const fn minifloat(code: u32, ebits: u32, mbits: u32, bias: i32, special: Special) -> u32 {
    const NAN: u32 = 0x7fc0_0000;
    let sign = (code >> (ebits + mbits) & 1) << 31;
    let emax = (1 << ebits) - 1;
    let e = code >> mbits & emax;
    let m = code & ((1 << mbits) - 1);
    match special {
        Special::None => {}
        Special::Ieee => {
            if e == emax {
                return if m == 0 { sign | 0x7f80_0000 } else { NAN };
            }
        }
        Special::AllOnesNan => {
            if e == emax && m == (1 << mbits) - 1 {
                return NAN;
            }
        }
        Special::NegZeroNan => {
            if sign != 0 && e == 0 && m == 0 {
                return NAN;
            }
        }
    }
    let magnitude = if e != 0 {
        let exp = e as i32 - bias + 127;
        (exp as u32) << 23 | m << (23 - mbits)
    } else if m != 0 {
        // Subnormal m · 2^(1 - bias - mbits): normalise around m's highest set bit p.
        let p = 31 - m.leading_zeros();
        let exp = p as i32 + 1 - bias - mbits as i32 + 127;
        (exp as u32) << 23 | (m ^ 1 << p) << (23 - p)
    } else {
        0
    };
    sign | magnitude
}

/// A lookup table of the `N` codes of a minifloat.
const fn table<const N: usize>(ebits: u32, mbits: u32, bias: i32, special: Special) -> [f32; N] {
    let mut t = [0.0; N];
    let mut code = 0;
    while code < N {
        t[code] = f32::from_bits(minifloat(code as u32, ebits, mbits, bias, special));
        code += 1;
    }
    t
}

/// OCP FP8 E4M3 ("fn"): bias 7, max 448, NaN = S.1111.111.
static F8_E4M3: [f32; 256] = table(4, 3, 7, Special::AllOnesNan);
/// OCP FP8 E5M2: bias 15, IEEE infinities and NaNs.
static F8_E5M2: [f32; 256] = table(5, 2, 15, Special::Ieee);
/// FP8 E4M3FNUZ: bias 8, NaN = 0x80.
static F8_E4M3FNUZ: [f32; 256] = table(4, 3, 8, Special::NegZeroNan);
/// FP8 E5M2FNUZ: bias 16, NaN = 0x80.
static F8_E5M2FNUZ: [f32; 256] = table(5, 2, 16, Special::NegZeroNan);
/// OCP MX FP6 E2M3: bias 1, max 7.5, all finite.
static F6_E2M3: [f32; 64] = table(2, 3, 1, Special::None);
/// OCP MX FP6 E3M2: bias 3, max 28, all finite.
static F6_E3M2: [f32; 64] = table(3, 2, 3, Special::None);
/// OCP MX FP4 E2M1: bias 1, max 6, all finite.
static F4_E2M1: [f32; 16] = table(2, 1, 1, Special::None);

/// OCP MX E8M0 scale: 2^(e - 127), no sign, no mantissa, 0xFF = NaN. Code 0 is 2^-127, an
/// f32 subnormal (bits 0x0040_0000), still exact.
static F8_E8M0: [f32; 256] = {
    let mut t = [0.0; 256];
    let mut e = 0;
    while e < 256 {
        t[e] = f32::from_bits(match e {
            0 => 0x0040_0000,
            255 => 0x7fc0_0000,
            _ => (e as u32) << 23,
        });
        e += 1;
    }
    t
};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn spot_values() {
        assert_eq!(F8_E4M3[0x7e], 448.0);
        assert!(F8_E4M3[0x7f].is_nan() && F8_E4M3[0xff].is_nan());
        assert_eq!(F8_E4M3[0x01], 2f32.powi(-9));
        assert_eq!(F8_E5M2[0x7c], f32::INFINITY);
        assert_eq!(F8_E5M2[0xfc], f32::NEG_INFINITY);
        assert_eq!(F8_E5M2[0x7b], 57344.0);
        assert!(F8_E4M3FNUZ[0x80].is_nan());
        assert_eq!(F8_E4M3FNUZ[0x7f], 240.0);
        assert_eq!(F8_E5M2FNUZ[0x7f], 57344.0);
        assert_eq!(F8_E5M2FNUZ[0x01], 2f32.powi(-17));
        assert_eq!(F8_E8M0[127], 1.0);
        assert_eq!(F8_E8M0[0], 2f32.powi(-127));
        assert_eq!(F6_E2M3[0x1f], 7.5);
        assert_eq!(F6_E3M2[0x1f], 28.0);
        assert_eq!(F4_E2M1[0x7], 6.0);
        assert_eq!(F4_E2M1[0xf], -6.0);
        assert_eq!(F4_E2M1[0x1], 0.5);
    }

    #[test]
    fn non_float_and_out_of_range_are_none() {
        let mut out = [0.0; 2];
        assert_eq!(to_f32(Dtype::I32, &[0; 8], 0, &mut out), None);
        assert_eq!(to_f32(Dtype::F32, &[0; 7], 0, &mut out), None);
        assert_eq!(to_f32(Dtype::F32, &[0; 8], usize::MAX, &mut out), None);
        assert_eq!(to_f32(Dtype::F4, &[0; 1], 1, &mut out), None);
        assert_eq!(to_f32(Dtype::F6_E2M3, &[0; 1], 0, &mut out), None);
    }

    /// F16C and the portable conversion give the same bits for every one of the 65 536 F16
    /// patterns (NaNs quieted the same way), at every offset of an eight-lane block.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn f16c_and_portable_f16_agree_on_every_pattern() {
        if !(std::arch::is_x86_feature_detected!("f16c")
            && std::arch::is_x86_feature_detected!("avx"))
        {
            return;
        }
        let bytes: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
        for skip in [0usize, 1, 7] {
            let b = &bytes[2 * skip..];
            let n = b.len() / 2;
            let (mut fast, mut slow) = (vec![0f32; n], vec![1f32; n]);
            // SAFETY: F16C and AVX were detected above.
            unsafe { f16s_to_f32_f16c(b, &mut fast) };
            f16s_to_f32_portable(b, &mut slow);
            for (i, (x, y)) in fast.iter().zip(&slow).enumerate() {
                assert_eq!(x.to_bits(), y.to_bits(), "pattern {:#06x}", i + skip);
            }
        }
    }

    /// The AVX2 BF16 conversion gives the portable loop's bits on every pattern, at every
    /// tail length.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_and_portable_bf16_agree_on_every_pattern() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let bytes: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
        for skip in [0usize, 1, 7] {
            let b = &bytes[2 * skip..];
            let n = b.len() / 2;
            let (mut fast, mut slow) = (vec![0f32; n], vec![1f32; n]);
            // SAFETY: AVX2 was detected above.
            unsafe { bf16s_to_f32_avx2(b, &mut fast) };
            bf16s_to_f32_portable(b, &mut slow);
            for (i, (x, y)) in fast.iter().zip(&slow).enumerate() {
                assert_eq!(x.to_bits(), y.to_bits(), "pattern {:#06x}", i + skip);
                assert_eq!(x.to_bits(), u32::from((i + skip) as u16) << 16);
            }
        }
    }
}
