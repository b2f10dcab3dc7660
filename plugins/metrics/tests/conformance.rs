//! Conformance of every built-in metric, through the same kit
//! ([`weightkin_core::conformance`]) that `weightkin plugins check PATH` runs against
//! third-party plugins: identity, symmetry, declared range, degenerate inputs (empty, NaN,
//! constant, zero) give a stated `Undefined` and never NaN, determinism, unknown parameters
//! rejected. Then the documented reasons and known values of each built-in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use weightkin_core::conformance::{self, synthetic as vec};
use weightkin_core::{MetricSpec, MetricValue, Params};

fn eval(spec: &MetricSpec, a: &[f32], b: &[f32]) -> MetricValue {
    let metric = (spec.build)(&Params::new()).unwrap();
    conformance::evaluate(metric.as_ref(), spec.needs, a, b)
        .unwrap()
        .unwrap()
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
    let reports: Vec<_> = weightkin_metrics::ALL
        .iter()
        .map(|spec| conformance::check(spec))
        .collect();
    assert!(
        reports.iter().all(conformance::Report::passed),
        "{}",
        conformance::table(&reports)
    );
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
