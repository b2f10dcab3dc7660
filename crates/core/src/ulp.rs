//! How far apart two BF16 tensors are in units in the last place (ULP).
//!
//! A fine-tune in BF16 moves most weights by a few ULP and leaves many untouched; an
//! independently trained tensor differs by thousands. The distance is measured on the stored
//! bits (no conversion), on a deterministic subsample of at most `budget` elements chosen as
//! the moment pass chooses its calibration samples, with the pages read handed back.

use rayon::prelude::*;
use serde::Serialize;

use crate::moments::sampled_chunks;
use crate::{Dtype, Side, CHUNK};

/// Histogram buckets: distances 0 ..= `BUCKETS - 2` exactly, the last bucket for larger.
pub(crate) const BUCKETS: usize = 65;

/// Counts of pairs per ULP distance (see [`BUCKETS`]).
pub(crate) type Histogram = [u64; BUCKETS];

/// ULP distance statistics of a BF16 tensor pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UlpStats {
    /// Element pairs measured (NaN pairs excluded).
    pub sampled: u64,
    /// Median distance in BF16 ULP; `None` when it exceeds 63 (far apart).
    pub median: Option<u32>,
    /// Fraction of pairs at most 1 ULP apart.
    pub within_one: f64,
}

/// Position of a BF16 bit pattern on the number line (±0 coincide): the plain reference
/// for [`ordered_fast`].
#[cfg(test)]
fn ordered(x: u16) -> i32 {
    if x & 0x8000 != 0 {
        0x8000 - i32::from(x & 0x7FFF)
    } else {
        0x8000 + i32::from(x)
    }
}

#[cfg(test)]
fn is_nan(x: u16) -> bool {
    x & 0x7F80 == 0x7F80 && x & 0x007F != 0
}

/// Position of `x` on the number line, shifted so that only differences are meaningful
/// (`ordered(x) - ordered(y)` for any `x`, `y`), and whether `x` is a NaN: branch-free, for
/// the histogram's inner loop.
#[inline(always)]
fn ordered_fast(x: u16) -> (i32, bool) {
    let m = i32::from(x & 0x7FFF);
    let s = -i32::from(x >> 15); // 0 or -1
    ((m ^ s) - s, m > 0x7F80)
}

/// The ULP histogram of two equally long runs of BF16 bytes: [`histogram_of`] compiled for
/// AVX2 where the CPU has it (the distances vectorise in 256-bit integer operations; the
/// baseline x86-64 build has neither a 32-bit absolute value nor an unsigned minimum and
/// emulates both), else for the baseline. Integer arithmetic: the same counts either way.
pub(crate) fn histogram(a: &[u8], b: &[u8]) -> Histogram {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        /// [`histogram_of`] with AVX2 enabled.
        #[target_feature(enable = "avx2")]
        fn avx2(a: &[u8], b: &[u8]) -> Histogram {
            histogram_of(a, b)
        }
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { avx2(a, b) };
    }
    histogram_of(a, b)
}

/// The histogram itself; `#[inline(always)]` so that each build of [`histogram`] compiles it
/// for its own target features.
#[inline(always)]
fn histogram_of(a: &[u8], b: &[u8]) -> Histogram {
    // Two steps per block: the distances (branch-free arithmetic on fixed-size arrays, which
    // the compiler vectorises) into a small buffer, then the counting. Counting goes to eight
    // interleaved histograms: consecutive pairs mostly land in the same bucket, and
    // incrementing one counter back to back would serialise every pair on the store-to-load
    // latency of that counter. NaN pairs go to an extra bucket that is dropped.
    const BLOCK: usize = 256;
    let mut hs = [[0u32; BUCKETS + 1]; 8];
    let mut total = [0u64; BUCKETS + 1];
    let mut d = [0u8; BLOCK];
    let count = |d: &[u8], hs: &mut [[u32; BUCKETS + 1]; 8]| {
        for (i, &k) in d.iter().enumerate() {
            hs[i % 8][usize::from(k)] += 1;
        }
    };
    let len = a.len().min(b.len()) / 2 * 2;
    let (a, b) = (&a[..len], &b[..len]);
    let mut ca = a.chunks_exact(2 * BLOCK);
    let mut cb = b.chunks_exact(2 * BLOCK);
    for (blocks, (xa, xb)) in (&mut ca).zip(&mut cb).enumerate() {
        let (Ok(xa), Ok(xb)) = (
            <&[u8; 2 * BLOCK]>::try_from(xa),
            <&[u8; 2 * BLOCK]>::try_from(xb),
        ) else {
            continue; // not reached: `chunks_exact` pieces
        };
        for (i, slot) in d.iter_mut().enumerate() {
            *slot = distance(
                u16::from_le_bytes([xa[2 * i], xa[2 * i + 1]]),
                u16::from_le_bytes([xb[2 * i], xb[2 * i + 1]]),
            );
        }
        count(&d, &mut hs);
        // A u32 counter gains at most BLOCK / 8 per block: flush long before it could
        // overflow.
        if blocks % (1 << 20) == (1 << 20) - 1 {
            flush(&mut hs, &mut total);
        }
    }
    let (ra, rb) = (ca.remainder(), cb.remainder());
    let n = ra.len() / 2;
    for (i, slot) in d[..n].iter_mut().enumerate() {
        *slot = distance(
            u16::from_le_bytes([ra[2 * i], ra[2 * i + 1]]),
            u16::from_le_bytes([rb[2 * i], rb[2 * i + 1]]),
        );
    }
    count(&d[..n], &mut hs);
    flush(&mut hs, &mut total);
    std::array::from_fn(|k| total[k])
}

/// The histogram bucket of one pair: its ULP distance, capped at the last bucket, or the
/// NaN bucket.
#[inline(always)]
fn distance(x: u16, y: u16) -> u8 {
    let (ox, nx) = ordered_fast(x);
    let (oy, ny) = ordered_fast(y);
    let dist = (ox - oy).unsigned_abs().min(BUCKETS as u32 - 1);
    if nx | ny {
        BUCKETS as u8
    } else {
        dist as u8
    }
}

/// Adds the interleaved histograms into `total` and clears them.
fn flush(hs: &mut [[u32; BUCKETS + 1]; 8], total: &mut [u64; BUCKETS + 1]) {
    for h in hs.iter_mut() {
        for (t, c) in total.iter_mut().zip(h.iter_mut()) {
            *t += u64::from(*c);
            *c = 0;
        }
    }
}

/// ULP statistics of tensor `a` against tensor `b` when both are stored as BF16 and expose
/// their bytes ([`crate::WeightSource::raw`]); `None` otherwise.
pub fn bf16_ulp_sampled(a: Side<'_>, b: Side<'_>, budget: usize) -> Option<UlpStats> {
    let (ra, rb) = (a.raw()?, b.raw()?);
    if ra.dtype != Dtype::BF16 || rb.dtype != Dtype::BF16 || ra.bytes.len() != rb.bytes.len() {
        return None;
    }
    let numel = ra.bytes.len() / 2;
    let (take, chunk_of) = sampled_chunks(numel, budget);
    let h = (0..take)
        .into_par_iter()
        .map(|k| {
            let start = chunk_of(k) * CHUNK * 2;
            let end = ra.bytes.len().min(start + CHUNK * 2);
            let (Some(x), Some(y)) = (ra.bytes.get(start..end), rb.bytes.get(start..end)) else {
                return [0u64; BUCKETS];
            };
            histogram(x, y)
        })
        .reduce(
            || [0u64; BUCKETS],
            |mut s, h| {
                add(&mut s, &h);
                s
            },
        );
    // Hand the pages back so that sampling many tensors does not make the models resident:
    // one release per tensor (a subsample's chunks and their fault-around lie inside it).
    ra.file.release(ra.bytes);
    rb.file.release(rb.bytes);
    stats(&h)
}

/// Adds histogram `h` into `total`.
pub(crate) fn add(total: &mut Histogram, h: &Histogram) {
    for (t, n) in total.iter_mut().zip(h) {
        *t += n;
    }
}

/// The statistics of a histogram; `None` when it counts no pair.
pub(crate) fn stats(h: &Histogram) -> Option<UlpStats> {
    let sampled: u64 = h.iter().sum();
    if sampled == 0 {
        return None;
    }
    let mut seen = 0u64;
    let median = h.iter().enumerate().find_map(|(d, &n)| {
        seen += n;
        (2 * seen >= sampled).then_some(d)
    });
    Some(UlpStats {
        sampled,
        median: median.filter(|&d| d < BUCKETS - 1).map(|d| d as u32),
        within_one: (h[0] + h[1]) as f64 / sampled as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_and_distances() {
        assert_eq!(ordered(0x0000), ordered(0x8000)); // +0 = -0
        assert_eq!(ordered(0x3F81) - ordered(0x3F80), 1); // next after 1.0
        assert_eq!(ordered(0x0001) - ordered(0x8001), 2); // smallest ± subnormals
        assert!(is_nan(0x7FC0) && !is_nan(0x7F80));
        for x in 0..=u16::MAX {
            let (o, nan) = ordered_fast(x);
            assert_eq!(nan, is_nan(x), "{x:#06x}");
            assert_eq!(o - ordered_fast(0).0, ordered(x) - ordered(0), "{x:#06x}");
        }
        let a: Vec<u8> = [0x3F80u16, 0x3F80, 0x3F80, 0x7FC0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let b: Vec<u8> = [0x3F80u16, 0x3F81, 0x3F90, 0x3F80]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let h = histogram(&a, &b);
        assert_eq!((h[0], h[1], h[16]), (1, 1, 1));
        assert_eq!(h.iter().sum::<u64>(), 3); // the NaN pair is skipped
    }

    /// The blocked, vectorised histogram counts exactly what a plain loop over the reference
    /// definitions counts, over whole blocks and a ragged tail, on every kind of value.
    #[test]
    fn histogram_matches_the_plain_definition() {
        let mut rng = crate::rng::Rng::new(7);
        let mut next = || (rng.next_u32() >> 16) as u16;
        for n in [0, 1, 255, 256, 257, 1000, 4097] {
            let xs: Vec<u16> = (0..n).map(|_| next()).collect();
            // Half the pairs near each other (small distances), half anywhere.
            let ys: Vec<u16> = xs
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    if i % 2 == 0 {
                        x.wrapping_add(next() % 5)
                    } else {
                        next()
                    }
                })
                .collect();
            let mut want = [0u64; BUCKETS];
            for (&x, &y) in xs.iter().zip(&ys) {
                if !is_nan(x) && !is_nan(y) {
                    let d = (ordered(x) - ordered(y)).unsigned_abs() as usize;
                    want[d.min(BUCKETS - 1)] += 1;
                }
            }
            let bytes = |v: &[u16]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
            assert_eq!(histogram(&bytes(&xs), &bytes(&ys)), want, "n = {n}");
            // The baseline build too (the dispatch picks AVX2 where the CPU has it).
            assert_eq!(histogram_of(&bytes(&xs), &bytes(&ys)), want, "n = {n}");
        }
    }
}
