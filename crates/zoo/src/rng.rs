//! Seeded random streams, one per purpose.
//!
//! Every random number in the zoo comes from a [`Stream`] keyed by a list of labels (the
//! model's name, what the numbers are for, a seed): ChaCha8 with a key derived by BLAKE3 from
//! the labels. Streams with different labels are independent, the numbers a model gets do not
//! depend on which other models are built or in which order, and adding a model to the zoo
//! never changes an existing one.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// A deterministic random stream.
pub struct Stream(ChaCha8Rng);

impl Stream {
    /// The stream named by `labels` (order matters).
    pub fn new(labels: &[&str]) -> Stream {
        let mut h = blake3::Hasher::new_derive_key("weightkin-zoo stream v1");
        for l in labels {
            // Length-prefixed, so ["ab", "c"] and ["a", "bc"] differ.
            h.update(&(l.len() as u64).to_le_bytes());
            h.update(l.as_bytes());
        }
        Stream(ChaCha8Rng::from_seed(*h.finalize().as_bytes()))
    }

    /// A standard normal draw.
    pub fn normal(&mut self) -> f32 {
        self.0.sample::<f64, _>(StandardNormal) as f32
    }

    /// `n` draws from N(0, sd²).
    pub fn normals(&mut self, n: usize, sd: f32) -> Vec<f32> {
        (0..n).map(|_| sd * self.normal()).collect()
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        self.0.random::<f32>()
    }

    /// Uniform in [lo, hi).
    pub fn between(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            self.0.random_range(0..n)
        }
    }

    /// One element of `items`, uniformly (items must not be empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
