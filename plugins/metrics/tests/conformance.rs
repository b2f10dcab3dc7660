//! Conformance checks every built-in metric passes: identity, symmetry, declared range,
//! degenerate inputs (empty, NaN, constant, zero) give a stated `Undefined`, never NaN,
//! unknown parameters are rejected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use weightkin_core::{Input, MetricSpec, MetricValue, Moments, Needs, ParamValue, Params, Tensors};

fn vec(n: usize, seed: u64, offset: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            offset + ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
        })
        .collect()
}

fn eval(spec: &MetricSpec, a: &[f32], b: &[f32]) -> MetricValue {
    let moments = Moments::of_slices(a, b);
    // Matrix metrics see the data as a 4-column matrix where the length allows.
    let shape = if a.len() % 4 == 0 {
        vec![a.len() / 4, 4]
    } else {
        vec![a.len(), 1]
    };
    let tensors = (spec.needs == Needs::Tensors).then_some(Tensors {
        a,
        b,
        shape: &shape,
    });
    (spec.build)(&Params::new()).unwrap().evaluate(&Input {
        moments: &moments,
        tensors,
    })
}

fn check_defined_in_range(spec: &MetricSpec, v: MetricValue) -> f64 {
    let x = v
        .value()
        .unwrap_or_else(|| panic!("{}: undefined {v:?}", spec.name));
    assert!(x.is_finite(), "{}: {x}", spec.name);
    assert!(
        spec.range.0 <= x && x <= spec.range.1,
        "{}: {x} outside range",
        spec.name
    );
    x
}

#[test]
fn every_metric_conforms() {
    let names: Vec<_> = weightkin_metrics::ALL.iter().map(|s| s.name).collect();
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        names.len(),
        "duplicate metric names: {names:?}"
    );

    for spec in weightkin_metrics::ALL {
        assert!(!spec.doc.is_empty(), "{} has no doc", spec.name);
        let a = vec(10_000, 1, 0.3);
        let b = vec(10_000, 2, -0.1);
        let c: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + 0.1 * y).collect();

        // Identity.
        if let Some(id) = spec.identity {
            assert_eq!(eval(spec, &a, &a), MetricValue::Value(id), "{}", spec.name);
        }
        // Range and symmetry on related and unrelated pairs.
        for (x, y) in [(&a, &b), (&a, &c), (&b, &c)] {
            let xy = check_defined_in_range(spec, eval(spec, x, y));
            let yx = check_defined_in_range(spec, eval(spec, y, x));
            if spec.symmetric {
                assert!((xy - yx).abs() < 1e-12, "{}: {xy} vs {yx}", spec.name);
            }
        }
        // Degenerate inputs.
        for (x, y) in [
            (vec![], vec![]),
            (vec![f32::NAN, 1.0], vec![1.0, 2.0]),
            (vec![1.0, f32::INFINITY], vec![1.0, 2.0]),
            (vec![0.0; 8], vec(8, 3, 0.0)),
            (vec![2.0; 8], vec(8, 3, 0.0)),
        ] {
            let v = eval(spec, &x, &y);
            if let MetricValue::Value(v) = v {
                assert!(v.is_finite() && spec.range.0 <= v && v <= spec.range.1);
            }
        }
        // Unknown parameters are rejected, naming the parameter.
        let mut p = Params::new();
        p.insert("no_such_param".into(), ParamValue::Bool(true));
        let err = (spec.build)(&p).err().expect("unknown param accepted");
        assert!(matches!(err, weightkin_core::Error::InvalidParam { .. }));
    }
}

#[test]
fn degenerate_inputs_give_the_documented_reason() {
    use weightkin_core::Undefined::*;
    let cos = &weightkin_metrics::cosine::SPEC;
    let pear = &weightkin_metrics::pearson::SPEC;
    let r = vec(8, 3, 0.0);
    assert_eq!(eval(cos, &[], &[]), MetricValue::Undefined(Empty));
    assert_eq!(eval(cos, &[0.0; 8], &r), MetricValue::Undefined(ZeroNorm));
    assert_eq!(eval(pear, &[2.0; 8], &r), MetricValue::Undefined(Constant));
    assert_eq!(
        eval(pear, &[f32::NAN; 8], &r),
        MetricValue::Undefined(NonFinite)
    );
    // A constant non-zero tensor still has a direction.
    assert!(eval(cos, &[2.0; 8], &r).value().is_some());
}

#[test]
fn cosine_and_pearson_known_values() {
    let cos = &weightkin_metrics::cosine::SPEC;
    let pear = &weightkin_metrics::pearson::SPEC;
    // Orthogonal and anti-parallel.
    assert_eq!(eval(cos, &[1.0, 0.0], &[0.0, 1.0]), MetricValue::Value(0.0));
    let v = eval(cos, &[1.0, 2.0, 3.0], &[-1.0, -2.0, -3.0])
        .value()
        .unwrap();
    assert!((v + 1.0).abs() < 1e-15);
    // Pearson ignores shift and positive scale; cosine does not.
    let a = vec(1000, 7, 0.0);
    let shifted: Vec<f32> = a.iter().map(|x| 3.0 * x + 5.0).collect();
    assert!((eval(pear, &a, &shifted).value().unwrap() - 1.0).abs() < 1e-6);
    assert!(eval(cos, &a, &shifted).value().unwrap() < 0.5);
    // The LayerNorm trap: two unrelated vectors near 1.0.
    let n1: Vec<f32> = vec(4096, 11, 0.0).iter().map(|x| 1.0 + 0.02 * x).collect();
    let n2: Vec<f32> = vec(4096, 12, 0.0).iter().map(|x| 1.0 + 0.02 * x).collect();
    assert!(eval(cos, &n1, &n2).value().unwrap() > 0.999);
    assert!(eval(pear, &n1, &n2).value().unwrap().abs() < 0.1);
}
