//! `weightkin-metrics`: the built-in metrics: `cosine` and `pearson` (moment metrics) and
//! `cka` (a matrix metric).
//!
//! The two moment metrics read the same [`Moments`] that the runner's measure stage
//! accumulates in one fused pass per tensor pair, so asking for both costs one read of the
//! data; CKA needs the tensors themselves (whole, or an evenly strided subset of whole
//! examples above its `max-elements`). Each metric is a [`MetricSpec`]
//! (`pub static SPEC`) with a unique `pub const NAME`; the runner registers them from one
//! literal list.
//!
//! Why cosine and Pearson both: cosine compares raw directions and is what most public comparisons use, but it is
//! dominated by a tensor's mean. Norm weights sit near 1.0 in every model, so their cosine is
//! ≈ 0.99 between *unrelated* models; Pearson (cosine of the centred tensors) removes the mean
//! and falls to ≈ 0 for them. Reports show both so that the difference is visible.

pub mod cka;
pub mod cosine;
pub mod pearson;

use weightkin_core::MetricSpec;

pub use weightkin_core::Moments;

/// Every metric in this crate, for the runner's registration list.
pub const ALL: &[&MetricSpec] = &[&cosine::SPEC, &pearson::SPEC, &cka::SPEC];
