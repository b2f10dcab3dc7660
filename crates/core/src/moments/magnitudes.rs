//! The largest finite magnitude of a tensor, and whether it holds NaN or ±∞: what recognising
//! a generated table needs of the whole tensor before it looks at any single element (its
//! tolerance is relative to the largest magnitude). A pass keeps it on the way
//! ([`super::Taps::magnitudes`]), from the stored bytes while they are in cache, so that the
//! recognition afterwards reads only the few elements that rule a formula out.

use super::kernels::Stored;

/// Largest finite |x| and the non-finite values seen, over one tensor (or a part of it).
/// Equal for the same values whatever their storage (BF16 and F16 widen to f32 exactly) and
/// however the tensor is split ([`Magnitudes::merge`] is exact).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Magnitudes {
    /// Some value is NaN.
    pub nan: bool,
    /// Some value is +∞ or −∞.
    pub inf: bool,
    /// The largest finite |x| (0 when there is none).
    pub largest: f32,
}

impl Magnitudes {
    /// Over f32 values, in one pass over the bit patterns: for non-negative floats the order of
    /// the bits is the order of the values, and an integer max vectorises where a float fold
    /// does not.
    pub fn of_f32(x: &[f32]) -> Magnitudes {
        let (nan, inf, largest) = scan(x.iter().map(|v| v.to_bits()), 0x7fff_ffff, 0x7f80_0000);
        Magnitudes {
            nan,
            inf,
            largest: f32::from_bits(largest),
        }
    }

    /// [`Self::of_f32`], given the largest magnitude's bit pattern over `x` (sign cleared, ∞
    /// and NaN patterns included) when a moment kernel took it on the way
    /// ([`super::kernels::slices_max`]): values whose largest pattern is finite need nothing
    /// more; without it, or with ∞ or NaN among the values, `x` is scanned.
    pub(super) fn of_f32_max(x: &[f32], largest: Option<u32>) -> Magnitudes {
        match largest {
            Some(l) if l < 0x7f80_0000 => Magnitudes {
                nan: false,
                inf: false,
                largest: f32::from_bits(l),
            },
            _ => Magnitudes::of_f32(x),
        }
    }

    /// Over stored bytes of `stored` (little-endian), without widening them first, given the
    /// largest magnitude's bit pattern over `bytes` (sign cleared, ∞ and NaN patterns
    /// included, widened to `u32`) when a moment kernel took it on the way
    /// ([`Stored::moments_max`]); without it, one vector maximum over `bytes` finds it. Bytes
    /// whose largest pattern is finite need nothing more; a run holding ∞ or NaN is scanned
    /// again in full.
    pub(super) fn of_stored_max(stored: Stored, bytes: &[u8], largest: Option<u32>) -> Magnitudes {
        let largest = largest.unwrap_or_else(|| match stored {
            Stored::Bf16 | Stored::F16 => u32::from(max_abs16(bytes)),
            Stored::F32 => max_abs32(bytes),
        });
        match stored {
            Stored::Bf16 => {
                let (nan, inf, l) = scan16(bytes, largest as u16, 0x7f80);
                Magnitudes {
                    nan,
                    inf,
                    largest: f32::from_bits(u32::from(l) << 16),
                }
            }
            Stored::F16 => {
                let (nan, inf, l) = scan16(bytes, largest as u16, 0x7c00);
                Magnitudes {
                    nan,
                    inf,
                    largest: crate::convert::f16_to_f32(l),
                }
            }
            Stored::F32 => {
                let (nan, inf, l) = scan32(bytes, largest);
                Magnitudes {
                    nan,
                    inf,
                    largest: f32::from_bits(l),
                }
            }
        }
    }

    /// Both parts together.
    pub fn merge(self, other: Magnitudes) -> Magnitudes {
        Magnitudes {
            nan: self.nan || other.nan,
            inf: self.inf || other.inf,
            largest: self.largest.max(other.largest),
        }
    }
}

/// [`scan`] of 16-bit patterns stored little-endian, `inf` the pattern of +∞, `largest` their
/// largest magnitude's bits ([`max_abs16`]). The common case — every value finite — needs
/// only those; a part holding ∞ or NaN is scanned again in full.
fn scan16(bytes: &[u8], largest: u16, inf: u16) -> (bool, bool, u16) {
    if largest < inf {
        return (false, false, largest);
    }
    let halves = bytes
        .chunks_exact(2)
        .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])));
    let (nan, any_inf, l) = scan(halves, 0x7fff, u32::from(inf));
    (nan, any_inf, l as u16)
}

/// [`scan`] of 32-bit patterns stored little-endian, as [`scan16`].
fn scan32(bytes: &[u8], largest: u32) -> (bool, bool, u32) {
    const INF: u32 = 0x7f80_0000;
    if largest < INF {
        return (false, false, largest);
    }
    let words = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    scan(words, 0x7fff_ffff, INF)
}

/// The largest magnitude's bits (sign cleared) of 16-bit patterns stored little-endian,
/// NaN and ∞ patterns included.
fn max_abs16(bytes: &[u8]) -> u16 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { avx2::max_abs16(bytes) };
    }
    max_abs16_lanes::<16>(bytes)
}

/// [`max_abs16`] of 32-bit patterns.
fn max_abs32(bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { avx2::max_abs32(bytes) };
    }
    max_abs32_lanes::<8>(bytes)
}

/// `W` lanes of signed integers (a magnitude's bits fit in 15), which the compiler turns into
/// vector maxima: 16 lanes for baseline x86-64 (one SSE2 register), 32 for AVX2 (two
/// independent registers; measured 11 and 29 GB/s on L2-resident data).
#[inline(always)]
fn max_abs16_lanes<const W: usize>(bytes: &[u8]) -> u16 {
    let mut largest = [0i16; W];
    let mut chunks = bytes.chunks_exact(2 * W);
    for c in &mut chunks {
        for (j, l) in largest.iter_mut().enumerate() {
            *l = (*l).max((u16::from_le_bytes([c[2 * j], c[2 * j + 1]]) & 0x7fff) as i16);
        }
    }
    for c in chunks.remainder().chunks_exact(2) {
        largest[0] = largest[0].max((u16::from_le_bytes([c[0], c[1]]) & 0x7fff) as i16);
    }
    largest.iter().copied().max().unwrap_or(0) as u16
}

/// [`max_abs16_lanes`] of 32-bit patterns.
#[inline(always)]
fn max_abs32_lanes<const W: usize>(bytes: &[u8]) -> u32 {
    let mut largest = [0i32; W];
    let mut chunks = bytes.chunks_exact(4 * W);
    for c in &mut chunks {
        for (j, l) in largest.iter_mut().enumerate() {
            let b = [c[4 * j], c[4 * j + 1], c[4 * j + 2], c[4 * j + 3]];
            *l = (*l).max((u32::from_le_bytes(b) & 0x7fff_ffff) as i32);
        }
    }
    for c in chunks.remainder().chunks_exact(4) {
        let b = [c[0], c[1], c[2], c[3]];
        largest[0] = largest[0].max((u32::from_le_bytes(b) & 0x7fff_ffff) as i32);
    }
    largest.iter().copied().max().unwrap_or(0) as u32
}

/// The same code compiled for AVX2, chosen at run time.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn max_abs16(bytes: &[u8]) -> u16 {
        super::max_abs16_lanes::<32>(bytes)
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn max_abs32(bytes: &[u8]) -> u32 {
        super::max_abs32_lanes::<16>(bytes)
    }
}

/// NaN seen, ∞ seen, and the largest finite magnitude's bits, of IEEE bit patterns with
/// `abs` the mask that clears the sign and `inf` the pattern of +∞.
#[inline(always)]
fn scan(bits: impl Iterator<Item = u32>, abs: u32, inf: u32) -> (bool, bool, u32) {
    let (mut nan, mut any_inf, mut largest) = (0u32, 0u32, 0u32);
    for b in bits {
        let a = b & abs;
        nan |= u32::from(a > inf);
        any_inf |= u32::from(a == inf);
        largest = largest.max(if a < inf { a } else { 0 });
    }
    (nan != 0, any_inf != 0, largest)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Stored and widened values give the same magnitudes, for every stored dtype and with
    /// NaN, ±∞, −0 and subnormals among them; a merge of two halves is the whole.
    #[test]
    fn stored_and_widened_agree() {
        let vals = [
            0.5f32,
            -3.25,
            -0.0,
            1e-40,
            65504.0,
            -7.0e3,
            f32::INFINITY,
            2.0,
        ];
        for stored in [Stored::Bf16, Stored::F16, Stored::F32] {
            let mut bytes = Vec::new();
            for &v in &vals {
                match stored {
                    Stored::Bf16 => bytes.extend(((v.to_bits() >> 16) as u16).to_le_bytes()),
                    Stored::F16 => {}
                    Stored::F32 => bytes.extend(v.to_le_bytes()),
                }
            }
            if stored == Stored::F16 {
                // The same values as F16 bit patterns (−7000 rounds to −7000; 1e-40 to the
                // smallest subnormal).
                let h: [u16; 8] = [
                    0x3800, 0xc280, 0x8000, 0x0001, 0x7bff, 0xeed6, 0x7c00, 0x4000,
                ];
                bytes = h.iter().flat_map(|b| b.to_le_bytes()).collect();
            }
            let mut widened = vec![0f32; vals.len()];
            crate::to_f32(stored_dtype(stored), &bytes, 0, &mut widened).unwrap();
            let m = Magnitudes::of_stored_max(stored, &bytes, None);
            assert_eq!(m, Magnitudes::of_f32(&widened), "{stored:?}");
            assert!(m.inf && !m.nan, "{stored:?}");
            assert!(m.largest >= 7.0e3, "{stored:?}");
            let w = stored.width() * 3;
            let halves = Magnitudes::of_stored_max(stored, &bytes[..w], None)
                .merge(Magnitudes::of_stored_max(stored, &bytes[w..], None));
            assert_eq!(halves, m, "{stored:?}");
        }
        let m = Magnitudes::of_f32(&[1.0, f32::NAN, -2.0]);
        assert_eq!((m.nan, m.inf, m.largest), (true, false, 2.0));
        assert_eq!(Magnitudes::of_f32(&[]), Magnitudes::default());
    }

    /// Long runs of random bit patterns (every lane and the tail): the fast path (all finite)
    /// and the full scan (∞ or NaN present) agree with the widened values, and the vector
    /// builds agree with each other.
    #[test]
    fn random_patterns_every_path() {
        let mut rng = crate::rng::Rng::new(7);
        for len in [0usize, 1, 31, 1000, 4099] {
            for special in [false, true] {
                let mut bytes: Vec<u8> = (0..4 * len).map(|_| rng.next_u32() as u8).collect();
                if !special {
                    // Clear the top exponent bit of every 16- and 32-bit value: all finite.
                    for c in bytes.chunks_exact_mut(2) {
                        c[1] &= 0xbf;
                    }
                }
                for stored in [Stored::Bf16, Stored::F16, Stored::F32] {
                    let n = bytes.len() / stored.width();
                    let mut widened = vec![0f32; n];
                    crate::to_f32(stored_dtype(stored), &bytes, 0, &mut widened).unwrap();
                    let m = Magnitudes::of_stored_max(stored, &bytes, None);
                    let w = Magnitudes::of_f32(&widened);
                    // NaN payloads may differ after widening; NaN-ness may not.
                    assert_eq!((m.nan, m.inf, m.largest), (w.nan, w.inf, w.largest));
                    if !special && len > 0 {
                        assert!(!m.nan && !m.inf, "{stored:?}");
                    }
                }
                assert_eq!(max_abs16_lanes::<16>(&bytes), max_abs16(&bytes));
                assert_eq!(max_abs32_lanes::<8>(&bytes), max_abs32(&bytes));
            }
        }
    }

    fn stored_dtype(s: Stored) -> crate::Dtype {
        match s {
            Stored::Bf16 => crate::Dtype::BF16,
            Stored::F16 => crate::Dtype::F16,
            Stored::F32 => crate::Dtype::F32,
        }
    }
}
