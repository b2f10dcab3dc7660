//! Small, dependency-free statistics: the normal tail, Holm's step-down correction and
//! Stouffer's combination. Each function states its assumptions in its docs, and the report
//! repeats them where they are used.

/// Complementary error function, erfc(x), for x ≥ 0 via the continued-fraction-free
/// Chebyshev fit of Numerical Recipes (`erfcc`, fractional error < 1.2·10⁻⁷), and by
/// symmetry for x < 0.
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// One-sided upper-tail p-value of a standard normal z-score: P(Z ≥ z).
pub fn upper_tail(z: f64) -> f64 {
    if z.is_nan() {
        return 1.0;
    }
    (0.5 * erfc(z / std::f64::consts::SQRT_2)).clamp(0.0, 1.0)
}

/// Holm–Bonferroni step-down adjusted p-values, in the input order. Controls the
/// family-wise error rate under *any* dependence between the tests.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]).then(i.cmp(&j)));
    let mut adjusted = vec![1.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        let a = ((m - rank) as f64 * p[i]).min(1.0);
        running = running.max(a);
        adjusted[i] = running;
    }
    adjusted
}

/// Stouffer's combined z = Σzᵢ/√k. Assumes the k z-scores are independent standard normals
/// under the null; tensors of one model are not independent, so this is reported as a
/// summary, never as the deciding p-value.
pub fn stouffer(z: &[f64]) -> Option<f64> {
    (!z.is_empty()).then(|| z.iter().sum::<f64>() / (z.len() as f64).sqrt())
}

/// Mean and (population) standard deviation.
pub fn mean_sd(v: &[f64]) -> Option<(f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    Some((mean, var.sqrt()))
}

/// Median of a non-empty slice (mean of the middle two for an even count).
pub fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => None,
        n if n % 2 == 1 => Some(s[n / 2]),
        n => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_tail_known_values() {
        for (z, p) in [
            (0.0, 0.5),
            (1.0, 0.158_655_253_9),
            (1.959_963_985, 0.025),
            (3.0, 0.001_349_898),
            (-1.0, 0.841_344_746),
        ] {
            assert!(
                (upper_tail(z) - p).abs() < 1e-7 * p.max(1e-3) * 10.0,
                "{z}: {}",
                upper_tail(z)
            );
        }
        assert!(upper_tail(40.0) < 1e-300);
        assert_eq!(upper_tail(f64::NAN), 1.0);
    }

    #[test]
    fn holm_step_down() {
        let adj = holm(&[0.01, 0.04, 0.03, 0.005]);
        // Sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 → max(0.06, 0.04).
        for (got, want) in adj.iter().zip([0.03, 0.06, 0.06, 0.02]) {
            assert!((got - want).abs() < 1e-12, "{adj:?}");
        }
        assert_eq!(holm(&[]), Vec::<f64>::new());
    }

    #[test]
    fn stouffer_and_moments() {
        assert_eq!(stouffer(&[1.0, 1.0, 1.0, 1.0]), Some(2.0));
        assert_eq!(mean_sd(&[1.0, 3.0]), Some((2.0, 1.0)));
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), Some(2.5));
    }
}
