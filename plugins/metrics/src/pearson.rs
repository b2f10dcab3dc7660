//! Pearson correlation: the cosine of the mean-centred tensors.
//!
//! Invariant to shifting and positively scaling either tensor, so it ignores the shared
//! "everything near 1.0" structure of norm weights. If either tensor is constant (zero
//! variance) the result is [`Undefined::Constant`]; NaN or ±inf gives
//! [`Undefined::NonFinite`].

use weightkin_core::{Input, Metric, MetricSpec, MetricValue, Needs, Params, Result, Undefined};

/// Name used in recipes.
pub const NAME: &str = "pearson";

/// Registration entry.
pub static SPEC: MetricSpec = MetricSpec {
    name: NAME,
    doc: "Pearson correlation of the flattened tensors (cosine after removing each mean); \
          ≈ 0 for unrelated tensors whatever their means",
    range: (-1.0, 1.0),
    symmetric: true,
    identity: Some(1.0),
    params: &[],
    needs: Needs::Moments,
    build: &build,
};

fn build(params: &Params) -> Result<Box<dyn Metric>> {
    SPEC.check_param_names(params)?;
    Ok(Box::new(Pearson))
}

struct Pearson;

impl Metric for Pearson {
    fn evaluate(&self, input: &Input<'_>) -> MetricValue {
        let m = input.moments;
        if m.n == 0 {
            return MetricValue::Undefined(Undefined::Empty);
        }
        if !m.is_finite() {
            return MetricValue::Undefined(Undefined::NonFinite);
        }
        if m.m2_a <= 0.0 || m.m2_b <= 0.0 {
            return MetricValue::Undefined(Undefined::Constant);
        }
        if m.sum_sq_diff == 0.0 {
            return MetricValue::Value(1.0);
        }
        MetricValue::Value(super::clamp_unit(m.c_ab / (m.m2_a.sqrt() * m.m2_b.sqrt())))
    }
}
