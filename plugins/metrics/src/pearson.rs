//! Pearson correlation: the cosine of the mean-centred tensors.
//!
//! Invariant to shifting and positively scaling either tensor, so it ignores the shared
//! "everything near 1.0" structure of norm weights. If either tensor is constant (zero
//! variance) the result is [`weightkin_core::Undefined::Constant`]; NaN or ±inf gives
//! [`weightkin_core::Undefined::NonFinite`].

use weightkin_core::{Input, Metric, MetricSpec, MetricValue, Needs, Params, Result};

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
        input.moments.pearson()
    }
}
