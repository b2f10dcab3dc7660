//! Small statistics: the normal tail (erfc from `libm`), Holm's step-down correction and
//! Stouffer's combination. Each function states its assumptions in its docs, and the report
//! repeats them where they are used.

/// Complementary error function, erfc(x): `libm`'s port of FreeBSD's msun `erfc` (error
/// below 1 ulp over the whole line, including the far tail where p-values of strong evidence
/// live; checked against 50-digit reference values in the tests).
pub fn erfc(x: f64) -> f64 {
    libm::erfc(x)
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

    /// erfc against values computed with mpmath at 50 digits (`mpmath.erfc`, rounded to the
    /// nearest f64), to a relative 1e-15.
    #[test]
    fn erfc_matches_high_precision_references() {
        for (x, want) in [
            (0.0, 1.0),
            (1e-10, 0.999999999887162),
            (0.1, 0.8875370839817152),
            (0.5, 0.4795001221869535),
            (1.0, 0.15729920705028513),
            (1.5, 0.033894853524689274),
            (2.0, 0.004677734981047266),
            (3.0, 2.209049699858544e-05),
            (5.0, 1.537459794428035e-12),
            (10.0, 2.088487583762545e-45),
            (20.0, 5.395865611607901e-176),
            (26.0, 5.663192408856143e-296),
            (-0.5, 1.5204998778130465),
            (-3.0, 1.9999779095030015),
        ] {
            let got = erfc(x);
            assert!(
                ((got - want) / want).abs() < 1e-15,
                "erfc({x}) = {got:e}, want {want:e}"
            );
        }
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
