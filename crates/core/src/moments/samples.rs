//! What a pass keeps for calibration: a deterministic subsample of the pair.
//!
//! A null distribution pairs tensors that were never compared in the audit (A's layer `i`
//! against B's layer `j`). Reading both again for each null pair would read the model many
//! times over; instead the comparison's own pass keeps, per tensor pair, the stored bytes of
//! the chunks a subsample would read ([`Samples`], asked for by [`Taps::samples`]), and
//! calibration reduces those against each other with the same kernels. Which chunks make a
//! subsample ([`sampled_chunks`]) depends on the element count and the budget only, so two
//! tensors of one shape are sampled alike and [`Samples::cross`] is bit-identical to
//! [`pair_moments_sampled`] on the tensors themselves.

use super::kernels::Stored;
#[cfg(doc)]
use super::{pair_moments_sampled, Taps};
use super::{Moments, CHUNK};

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
    pub(super) fn empty(numel: usize, budget: usize, stored: Stored) -> Samples {
        Samples {
            numel,
            budget,
            stored,
            a: Vec::new(),
            b: Vec::new(),
        }
    }

    /// Appends the next sampled chunk's stored bytes of both sides (chunks in chunk order).
    pub(super) fn push(&mut self, a: Vec<u8>, b: Vec<u8>) {
        self.a.push(a);
        self.b.push(b);
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
            s.push(
                f32_le_bytes(a.get(start..end)?),
                f32_le_bytes(b.get(start..end)?),
            );
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
pub(super) fn f32_le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
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
pub(super) fn is_sampled(numel: usize, budget: usize, c: usize) -> bool {
    let chunks = numel.div_ceil(CHUNK);
    let take = (budget / CHUNK).clamp(1, chunks.max(1)).min(chunks);
    let k = (c as u128 * take as u128).div_ceil(chunks.max(1) as u128);
    k < take as u128 && k * chunks as u128 / take as u128 == c as u128
}

#[cfg(test)]
mod tests {
    use super::*;

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
