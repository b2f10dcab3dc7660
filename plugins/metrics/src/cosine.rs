//! Cosine similarity: Σab / (‖a‖·‖b‖).
//!
//! Defined for any two tensors with non-zero norm; if either is all zeros the result is
//! [`Undefined::ZeroNorm`] (reported as such, never NaN). NaN or ±inf in either input gives
//! [`Undefined::NonFinite`]. Not invariant to a shift of either tensor: see the crate docs.

use weightkin_core::{Input, Metric, MetricSpec, MetricValue, Needs, Params, Result, Undefined};

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
        let m = input.moments;
        if m.n == 0 {
            return MetricValue::Undefined(Undefined::Empty);
        }
        if !m.is_finite() {
            return MetricValue::Undefined(Undefined::NonFinite);
        }
        let (aa, bb) = (m.sum_sq_a(), m.sum_sq_b());
        if aa <= 0.0 || bb <= 0.0 {
            return MetricValue::Undefined(Undefined::ZeroNorm);
        }
        // Identical inputs: report exactly 1 rather than 1 ± rounding, so a self-comparison
        // reads as what it is.
        if m.sum_sq_diff == 0.0 {
            return MetricValue::Value(1.0);
        }
        MetricValue::Value(super::clamp_unit(m.sum_ab() / (aa.sqrt() * bb.sqrt())))
    }
}
