//! The workspace's one seeded pseudo-random generator: [`Rng`], SplitMix64.
//!
//! Everything weightkin draws at random is drawn from a fixed seed, and the values drawn end
//! up in outputs: the demo's and the validation suite's synthetic models (and so the report
//! snapshots made from them), CKA's permutation null, and the fixtures of every test. So the
//! sequence must be the same on every machine and with every version of every dependency —
//! which `rand` does not promise for its seedable generators across releases — and one
//! generator, owned here, is called from everywhere rather than each test keeping its own
//! copy.
//!
//! SplitMix64 (Steele, Lea & Flood 2014) is seven lines, fully specified, passes BigCrush,
//! and any 64-bit seed is a good one. It is not cryptographic and nothing here needs it to be.
//!
//! It is compiled always, not only with the `testing` feature, because non-test code uses it
//! (`weightkin_runner::synth` behind `weightkin demo`, the CKA null). `weightkin_core::testing`
//! re-exports it beside the vector helpers tests build fixtures with.
//!
//! One exception keeps its own stream: [`crate::conformance::synthetic`], the conformance
//! kit's fixed data, whose exact values are part of the kit's published output (a failing
//! plugin's row quotes them) and of third-party plugins' own tests.

/// SplitMix64: a seeded stream of 64-bit values, identical on every platform.
///
/// ```
/// use weightkin_core::rng::Rng;
/// let mut r = Rng::new(42);
/// let (x, y) = (r.uniform(), r.normal());
/// assert!(0.0 < x && x <= 1.0 && y.is_finite());
/// assert_eq!(Rng::new(42).next_u64(), Rng::new(42).next_u64());
/// ```
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (any value, 0 included).
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next 32 random bits (the high half of [`Self::next_u64`]).
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A value in `0..n` (`next_u64() % n`; the bias is below 2⁻³² for any `n` under 2³²).
    /// `n = 0` gives 0.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in (0, 1], on a grid of 2⁻⁵³.
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller; one of the pair is discarded for simplicity).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// A uniformly random permutation of `0..n` (Fisher–Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below(i as u64 + 1) as usize;
            p.swap(i, j);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published SplitMix64 stream: the first outputs for seed 0 and for seed
    /// 1234567 (the test vector of the reference implementation, Vigna's `splitmix64.c`).
    /// The demo models and their report snapshots depend on exactly this sequence.
    #[test]
    fn matches_the_reference_sequence() {
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let mut r = Rng::new(1_234_567);
        let first: Vec<u64> = (0..5).map(|_| r.next_u64()).collect();
        assert_eq!(
            first,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423,
                4_593_380_528_125_082_431,
                16_408_922_859_458_223_821,
            ]
        );
    }

    #[test]
    fn normal_is_standard_normal_ish() {
        let mut r = Rng::new(42);
        let xs: Vec<f64> = (0..100_000).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.02 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut p = Rng::new(7).permutation(100);
        p.sort_unstable();
        assert_eq!(p, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn below_stays_below() {
        let mut r = Rng::new(3);
        assert!((0..1000).all(|_| r.below(7) < 7));
        assert_eq!(r.below(0), 0);
        assert_eq!(r.below(1), 0);
    }
}
