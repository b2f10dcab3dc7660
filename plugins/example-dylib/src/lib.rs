//! `weightkin-example-dylib`: a third-party-style metric plugin, built as a shared library.
//!
//! It exports one metric, `spearman`: Spearman's rank correlation, the Pearson correlation of
//! the two tensors' ranks. The built-in metrics (cosine, Pearson) compare values; Spearman
//! compares *orderings*, so it is unchanged by any increasing transform of either tensor —
//! a model whose weights were passed through a monotone quantiser, rescaled per tensor, or
//! re-parameterised by a monotone map still ranks its weights the way the original did, and
//! a copy that was perturbed by a few large outliers (which dominate Pearson) still scores
//! high.
//!
//! It is written the way an outside lab would write one: it depends on
//! `weightkin-plugin-abi` only, exports itself with
//! [`export_plugin!`](weightkin_plugin_abi::export_plugin), and is loaded with
//! `weightkin --plugin target/release/libweightkin_example_dylib.so`. The integration tests
//! build and load it, run a recipe with it and snapshot the report, and run the conformance
//! kit (`weightkin plugins check`) against it.
//!
//! # Definition and determinism
//!
//! Ties share the mean of the ranks they span ("average" or fractional ranking, as
//! `scipy.stats.spearmanr` does); `-0.0` and `0.0` are one value. Ranks are kept doubled, so
//! every rank is an integer, and the covariance and variances are summed in `i128`: the sums
//! are exact, so the result is bit-identical whatever the order of summation, and identical
//! or increasingly related inputs give exactly 1. NaN or infinity in either tensor gives
//! "undefined (non-finite)", a constant tensor "undefined (constant)", empty tensors
//! "undefined (empty)".
//!
//! # Cost
//!
//! Two sorts of `m` 64-bit keys (value bits and position packed together) and one linear pass
//! per tensor: O(n + m log m) time for n elements of which m are ranked, and 16 bytes of
//! working memory per ranked element (one key and one rank). About 60 ms for a pair of 1 M
//! element tensors on one core of the CI machine (see `timing_one_million_elements`).
//!
//! To bound that cost on very large tensors (a 150 k × 4096 embedding has 600 M elements,
//! which would need 9.6 GB), a tensor with more than `max-elements` elements (parameter;
//! default [`DEFAULT_MAX_ELEMENTS`] = 2²⁴, i.e. 256 MiB of working memory) is ranked on an
//! evenly strided sample of exactly `max-elements` positions — the same positions in both
//! tensors, chosen from the length alone, so the result stays deterministic.

use weightkin_plugin_abi::{export_plugin, Failure, Input, Params, Undefined};

/// Default cap on the number of ranked elements per tensor: 2²⁴ (256 MiB of working memory).
pub const DEFAULT_MAX_ELEMENTS: u64 = 1 << 24;

/// Name of the sampling-cap parameter.
const MAX_ELEMENTS: &str = "max-elements";

export_plugin! {
    name: "weightkin-example-dylib",
    version: env!("CARGO_PKG_VERSION"),
    metrics: [{
        name: "spearman",
        doc: "Spearman rank correlation (Pearson of average ranks): invariant to any increasing \
              transform; over `max-elements` (default 2^24) ranks an evenly strided sample",
        range: (-1.0, 1.0),
        symmetric: true,
        identity: Some(1.0),
        params: ["max-elements"],
        check_params: check,
        compute: spearman,
    }],
}

/// Validated parameters.
struct Settings {
    /// At most this many positions are ranked (≥ 2, ≤ 2³² − 1 so a position fits the key).
    max_elements: usize,
}

fn settings(params: &Params) -> Result<Settings, String> {
    let max = match params.integer(MAX_ELEMENTS).map_err(|e| e.to_string())? {
        None => DEFAULT_MAX_ELEMENTS,
        Some(n) if (2..=i64::from(u32::MAX)).contains(&n) => n.unsigned_abs(),
        Some(n) => {
            return Err(format!(
                "`{MAX_ELEMENTS}` must be between 2 and {}, got {n}",
                u32::MAX
            ))
        }
    };
    Ok(Settings {
        max_elements: usize::try_from(max).unwrap_or(usize::MAX),
    })
}

/// Checks the parameters when a recipe is validated.
fn check(params: &Params) -> Result<(), String> {
    settings(params).map(drop)
}

/// A u32 whose unsigned order is the numeric order of finite f32 values, with `-0.0` and
/// `0.0` mapped to one key (the usual sign-flip trick: flip all bits of negatives, the sign bit
/// of positives).
fn order_key(v: f32) -> u32 {
    let bits = if v == 0.0 { 0 } else { v.to_bits() };
    if bits >> 31 == 1 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// Walks runs of equal keys in sorted `keys` (value key in the high 32 bits, sample position
/// in the low 32), calling `visit(position, d)` with each element's *centred doubled* rank
/// `d = 2·rank − (m + 1)`, and returns Σ d². A run covering sorted positions `start..end` has
/// 1-based ranks `start+1 ..= end`, whose mean doubled is `start + end + 1`.
fn ranks(keys: &[u64], mut visit: impl FnMut(usize, i64)) -> i128 {
    let m = keys.len() as i64;
    let mut sum_sq = 0i128;
    let mut start = 0;
    while let Some(&first) = keys.get(start) {
        let run = keys[start..]
            .iter()
            .take_while(|&&k| k >> 32 == first >> 32)
            .count();
        let end = start + run;
        let d = start as i64 + end as i64 - m;
        for &k in &keys[start..end] {
            visit((k & 0xFFFF_FFFF) as usize, d);
        }
        sum_sq += i128::from(d) * i128::from(d) * run as i128;
        start = end;
    }
    sum_sq
}

/// Sorted keys of the sampled positions of `x`.
fn sorted_keys(keys: &mut Vec<u64>, x: &[f32], positions: impl Iterator<Item = usize>) {
    keys.clear();
    keys.extend(
        positions
            .enumerate()
            .map(|(j, i)| (u64::from(order_key(x[i])) << 32) | j as u64),
    );
    keys.sort_unstable();
}

/// Spearman's ρ of `input.a` and `input.b`.
fn spearman(input: &Input<'_>, params: &Params) -> Result<f64, Failure> {
    let settings = settings(params)?;
    let (a, b) = (input.a, input.b);
    if a.len() != b.len() {
        return Err(format!("tensors have {} and {} elements", a.len(), b.len()).into());
    }
    if a.is_empty() {
        return Err(Undefined::Empty.into());
    }
    if !a.iter().chain(b).all(|v| v.is_finite()) {
        return Err(Undefined::NonFinite.into());
    }
    let n = a.len();
    let m = n.min(settings.max_elements);
    // Position of the j-th sampled element: ⌊j·n/m⌋, strictly increasing and < n.
    let position = |j: usize| ((j as u128 * n as u128) / m as u128) as usize;

    let mut keys = Vec::with_capacity(m);
    sorted_keys(&mut keys, a, (0..m).map(position));
    let mut rank_a = vec![0i64; m];
    let var_a = ranks(&keys, |j, d| rank_a[j] = d);
    sorted_keys(&mut keys, b, (0..m).map(position));
    let mut cov = 0i128;
    let var_b = ranks(&keys, |j, d| cov += i128::from(rank_a[j]) * i128::from(d));
    if var_a == 0 || var_b == 0 {
        return Err(Undefined::Constant.into());
    }
    // One rounding per quantity; equal sums give exactly ±1 (v / √(v·v) = v / v).
    let rho = cov as f64 / ((var_a as f64) * (var_b as f64)).sqrt();
    Ok(rho.clamp(-1.0, 1.0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn rho(a: &[f32], b: &[f32]) -> Result<f64, Failure> {
        rho_with(a, b, "{}")
    }

    fn rho_with(a: &[f32], b: &[f32], params: &str) -> Result<f64, Failure> {
        let shape = [a.len()];
        let input = Input {
            a,
            b,
            shape: &shape,
        };
        spearman(&input, &Params::parse(params.as_bytes()).unwrap())
    }

    /// Reference: average ranks by counting, Pearson in f64. O(n²), for small n only.
    fn reference(a: &[f32], b: &[f32]) -> f64 {
        let avg_rank = |x: &[f32], v: f32| {
            let less = x.iter().filter(|&&y| y < v).count() as f64;
            let equal = x.iter().filter(|&&y| y == v).count() as f64;
            less + (equal + 1.0) / 2.0
        };
        let ra: Vec<f64> = a.iter().map(|&v| avg_rank(a, v)).collect();
        let rb: Vec<f64> = b.iter().map(|&v| avg_rank(b, v)).collect();
        let n = a.len() as f64;
        let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
        let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f64 = ra.iter().map(|x| (x - ma) * (x - ma)).sum();
        let vb: f64 = rb.iter().map(|y| (y - mb) * (y - mb)).sum();
        cov / (va * vb).sqrt()
    }

    /// `n` integers drawn uniformly from `levels` consecutive values centred on 0 (as f32):
    /// few levels give many ties.
    fn integers(n: usize, seed: u64, levels: u64) -> Vec<f32> {
        let mut rng = weightkin_core::rng::Rng::new(seed);
        (0..n)
            .map(|_| rng.below(levels) as f32 - (levels / 2) as f32)
            .collect()
    }

    #[test]
    fn scipy_documentation_example() {
        // scipy.stats.spearmanr([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]).statistic
        // = 0.8207826816681233 = 8 / √95.
        let r = rho(&[1.0, 2.0, 3.0, 4.0, 5.0], &[5.0, 6.0, 7.0, 8.0, 7.0]).unwrap();
        assert!((r - 0.820_782_681_668_123_3).abs() < 1e-15, "{r}");
    }

    #[test]
    fn matches_the_counting_reference_with_many_ties() {
        for (seed, levels) in [(1, 3), (2, 10), (3, 1000), (4, 1 << 30)] {
            let a = integers(500, seed, levels);
            let b: Vec<f32> = integers(500, seed + 100, levels)
                .iter()
                .zip(&a)
                .map(|(x, y)| x + y)
                .collect();
            let got = rho(&a, &b).unwrap();
            let want = reference(&a, &b);
            assert!((got - want).abs() < 1e-12, "{seed}: {got} vs {want}");
        }
    }

    #[test]
    fn exact_one_for_increasing_transforms_and_minus_one_for_decreasing() {
        let a = integers(10_000, 7, 1 << 20);
        let exp: Vec<f32> = a.iter().map(|x| (x / 1e6).exp()).collect();
        let neg: Vec<f32> = a.iter().map(|x| -3.0 * x).collect();
        assert_eq!(rho(&a, &a).unwrap(), 1.0);
        assert_eq!(rho(&a, &exp).unwrap(), 1.0);
        assert_eq!(rho(&a, &neg).unwrap(), -1.0);
    }

    #[test]
    fn negative_zero_ties_with_zero() {
        assert_eq!(
            rho(&[-0.0, 0.0, 1.0], &[0.0, 0.0, 1.0]).unwrap(),
            rho(&[0.0, 0.0, 1.0], &[0.0, 0.0, 1.0]).unwrap()
        );
        assert!(order_key(-1.0) < order_key(-0.5));
        assert_eq!(order_key(-0.0), order_key(0.0));
        assert!(order_key(f32::MIN) < order_key(-1e-30));
        assert!(order_key(1e-30) < order_key(f32::MAX));
    }

    #[test]
    fn degenerate_inputs_have_their_reasons() {
        let u = |r: Result<f64, Failure>| match r {
            Err(Failure::Undefined(u)) => u,
            other => panic!("{other:?}"),
        };
        assert_eq!(u(rho(&[], &[])), Undefined::Empty);
        assert_eq!(u(rho(&[1.0, f32::NAN], &[1.0, 2.0])), Undefined::NonFinite);
        assert_eq!(
            u(rho(&[1.0, 2.0], &[f32::INFINITY, 2.0])),
            Undefined::NonFinite
        );
        assert_eq!(u(rho(&[2.0; 8], &integers(8, 1, 100))), Undefined::Constant);
        assert_eq!(u(rho(&[5.0], &[1.0])), Undefined::Constant);
        assert!(matches!(
            rho(&[1.0, 2.0], &[1.0]),
            Err(Failure::Error(m)) if m == "tensors have 2 and 1 elements"
        ));
    }

    #[test]
    fn large_tensors_are_ranked_on_a_strided_sample() {
        let a = integers(1000, 11, 1 << 20);
        let b = integers(1000, 12, 1 << 20);
        let sampled = rho_with(&a, &b, r#"{"max-elements": 100}"#).unwrap();
        let pick = |x: &[f32]| (0..100).map(|j| x[j * 10]).collect::<Vec<_>>();
        assert_eq!(sampled, rho(&pick(&a), &pick(&b)).unwrap());
        // A cap above the length ranks everything.
        assert_eq!(
            rho_with(&a, &b, r#"{"max-elements": 5000}"#).unwrap(),
            rho(&a, &b).unwrap()
        );
    }

    #[test]
    fn parameters_are_checked() {
        assert!(check(&Params::parse(br#"{"max-elements": 2}"#).unwrap()).is_ok());
        for bad in [
            r#"{"max-elements": 1}"#,
            r#"{"max-elements": -5}"#,
            r#"{"max-elements": 4294967296}"#,
            r#"{"max-elements": "many"}"#,
        ] {
            assert!(
                check(&Params::parse(bad.as_bytes()).unwrap()).is_err(),
                "{bad}"
            );
        }
        assert!(matches!(
            rho_with(&[1.0, 2.0], &[1.0, 2.0], r#"{"max-elements": 1}"#),
            Err(Failure::Error(_))
        ));
    }

    /// `cargo test --release -p weightkin-example-dylib -- --ignored --nocapture timing`
    #[test]
    #[ignore = "timing, not a check: run by hand"]
    fn timing_one_million_elements() {
        let a = integers(1 << 20, 21, 1 << 30);
        let b = integers(1 << 20, 22, 1 << 30);
        let runs = 10;
        let start = std::time::Instant::now();
        for _ in 0..runs {
            std::hint::black_box(rho(&a, &b).unwrap());
        }
        eprintln!(
            "spearman, 2 × 2^20 elements: {:.1} ms per pair",
            start.elapsed().as_secs_f64() * 1e3 / f64::from(runs)
        );
    }
}
