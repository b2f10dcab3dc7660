//! Cosine similarity: Σab / (‖a‖·‖b‖).
//!
//! Defined for any two tensors with non-zero norm; if either is all zeros the result is
//! [`weightkin_core::Undefined::ZeroNorm`] (reported as such, never NaN). NaN or ±inf in either input gives
//! [`weightkin_core::Undefined::NonFinite`]. Not invariant to a shift of either tensor: see the crate docs.

use weightkin_core::{Input, Metric, MetricSpec, MetricValue, Needs, Params, Result};

/// Name used in recipes.
pub const NAME: &str = "cosine";

/// Registration entry.
pub static SPEC: MetricSpec = MetricSpec {
    name: NAME,
    doc: "cosine similarity Σab/(‖a‖‖b‖) of the flattened tensors; dominated by the mean, so \
          near 1 for any two norm-weight vectors",
    range: (-1.0, 1.0),
    symmetric: true,
    identity: Some(1.0),
    params: &[],
    needs: Needs::Moments,
    build: &build,
};

fn build(params: &Params) -> Result<Box<dyn Metric>> {
    SPEC.check_param_names(params)?;
    Ok(Box::new(Cosine))
}

struct Cosine;

impl Metric for Cosine {
    fn evaluate(&self, input: &Input<'_>) -> MetricValue {
        input.moments.cosine()
    }
}
