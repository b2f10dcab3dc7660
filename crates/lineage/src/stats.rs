//! The normal tail and its inverse, for the search's thresholds.
//!
//! `libm` has `erfc` but no inverse, and no kept crate of this workspace has one; the inverse
//! is Acklam's rational approximation (relative error < 1.15·10⁻⁹ over (0, 1)) followed by
//! one Halley step on `erfc`, which is far more precise than any threshold here needs.

/// P(Z > z) for a standard normal Z.
pub fn upper_tail(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// The z with P(Z > z) = p (p in (0, 1); clamped to ±40 at the ends).
pub fn upper_tail_inv(p: f64) -> f64 {
    if p.is_nan() || p >= 1.0 {
        return -40.0;
    }
    if p <= 0.0 {
        return 40.0;
    }
    // Acklam's algorithm for the lower quantile of q = 1 − p, written for p directly.
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.02425;
    // Lower quantile x of q = 1 − p is −(upper quantile of p).
    let lower = |q: f64| -> f64 {
        if q < LOW {
            let t = (-2.0 * q.ln()).sqrt();
            (((((C[0] * t + C[1]) * t + C[2]) * t + C[3]) * t + C[4]) * t + C[5])
                / ((((D[0] * t + D[1]) * t + D[2]) * t + D[3]) * t + 1.0)
        } else if q <= 1.0 - LOW {
            let u = q - 0.5;
            let r = u * u;
            (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * u
                / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
        } else {
            let t = (-2.0 * (1.0 - q).ln()).sqrt();
            -(((((C[0] * t + C[1]) * t + C[2]) * t + C[3]) * t + C[4]) * t + C[5])
                / ((((D[0] * t + D[1]) * t + D[2]) * t + D[3]) * t + 1.0)
        }
    };
    // Upper quantile of p = −(lower quantile of p).
    let mut z = -lower(p);
    // One Halley step on P(Z > z) − p.
    let e = upper_tail(z) - p;
    let density = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
    if density > 0.0 {
        let u = -e / density;
        z -= u / (1.0 + z * u / 2.0);
    }
    z.clamp(-40.0, 40.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_matches_the_tail() {
        for z in [-3.0, -1.0, 0.0, 0.5, 1.96, 3.0, 5.0, 7.5] {
            let p = upper_tail(z);
            assert!((upper_tail_inv(p) - z).abs() < 1e-6, "{z}");
        }
        assert!((upper_tail_inv(0.025) - 1.959_964).abs() < 1e-5);
        // Deep tails, as the search's thresholds reach them.
        for z in [5.8, 8.0, 12.0] {
            let p = upper_tail(z);
            assert!((upper_tail_inv(p) - z).abs() < 1e-4, "{z}");
        }
    }
}
