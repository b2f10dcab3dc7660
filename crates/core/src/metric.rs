//! The [`Metric`] trait and the static description of a metric, [`MetricSpec`].
//!
//! Design choice: every built-in metric so far is a function of the same few moments of a
//! tensor pair (see [`Moments`]), so a metric does not read data itself. The executor streams
//! each pair once, accumulates one [`Moments`] value, and hands it to every requested metric.
//! That is what "fuse all moment metrics into one pass" means in practice, and it keeps each
//! metric a few lines of arithmetic that are easy to check.
//!
//! A metric is described by a [`MetricSpec`] (name, docs, declared properties, accepted
//! parameters), registered once, and *built* from recipe parameters into a `Box<dyn Metric>`
//! (config object ≠ runtime object).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::{Moments, Result};

/// A parameter value from a recipe's `params` table, independent of the recipe syntax.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Integer(i64),
    /// A float.
    Float(f64),
    /// A string.
    String(String),
}

/// Parameters for building a metric, by name.
pub type Params = BTreeMap<String, ParamValue>;

/// Why a metric has no value for a pair. Reported instead of a NaN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Undefined {
    /// The tensors have no elements.
    Empty,
    /// At least one tensor contains NaN or infinity.
    NonFinite,
    /// At least one tensor is all zeros, so its direction is undefined (cosine).
    ZeroNorm,
    /// At least one tensor is constant, so its variance is zero (Pearson).
    Constant,
    /// The metric compares matrices and the tensors are one-dimensional (CKA).
    NotAMatrix,
    /// Too few examples (rows) for the estimator (debiased CKA needs at least 4).
    TooFewExamples,
    /// The matrix backend failed (for instance could not allocate a Gram matrix).
    BackendFailed,
    /// A single example (one row, or one column for a column-example metric) holds more
    /// elements than the metric's [`Metric::max_elements`], so not even one whole example
    /// fits the memory bound. Set by the executor, which then does not call the metric.
    ExampleTooLarge,
    /// A shared-library plugin's code failed on this pair: it reported an error, panicked,
    /// or returned NaN or a value outside its declared range. Only reached through
    /// [`Metric::evaluate`]; [`Metric::try_evaluate`] returns the failure itself, with the
    /// plugin's message, as [`crate::Error::MetricFailed`].
    PluginFailed,
}

impl Undefined {
    /// Human-readable reason, as printed in reports.
    pub const fn reason(self) -> &'static str {
        match self {
            Undefined::Empty => "empty tensors",
            Undefined::NonFinite => "tensor contains NaN or infinity",
            Undefined::ZeroNorm => "a tensor is all zeros (zero norm)",
            Undefined::Constant => "a tensor is constant (zero variance)",
            Undefined::NotAMatrix => "needs matrices, the tensors are one-dimensional",
            Undefined::TooFewExamples => "too few rows for the estimator",
            Undefined::BackendFailed => "the matrix backend failed",
            Undefined::ExampleTooLarge => {
                "one example holds more elements than the metric's max-elements"
            }
            Undefined::PluginFailed => "the metric's plugin failed on this pair",
        }
    }
}

impl fmt::Display for Undefined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// The result of one metric on one pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricValue {
    /// A finite value within the metric's declared range.
    Value(f64),
    /// No value, for the stated reason.
    Undefined(Undefined),
}

impl MetricValue {
    /// The value, if defined.
    pub fn value(self) -> Option<f64> {
        match self {
            MetricValue::Value(v) => Some(v),
            MetricValue::Undefined(_) => None,
        }
    }
}

/// What a metric reads, declared in its [`MetricSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Needs {
    /// Only the pair's [`Moments`]: one streaming pass, memory independent of tensor size.
    Moments,
    /// Both tensors as f32 (matrix metrics such as CKA): whole up to the metric's
    /// [`Metric::max_elements`] per side, else a deterministic subset of whole examples of
    /// that size ([`ExampleAxis`]), on top of the moments of the whole pair.
    Tensors,
}

/// Both tensors of a pair, converted to f32, row-major: whole, or (above the metric's
/// [`Metric::max_elements`]) the same evenly strided subset of whole examples of each, with
/// `shape` the subset's shape (see [`ExampleAxis`]).
#[derive(Debug, Clone, Copy)]
pub struct Tensors<'a> {
    /// Tensor A.
    pub a: &'a [f32],
    /// Tensor B (same shape).
    pub b: &'a [f32],
    /// The shared shape.
    pub shape: &'a [usize],
}

/// Which axis of a tensor holds a [`Needs::Tensors`] metric's *examples* (the rest of the
/// tensor being their features), as the metric declares with [`Metric::example_axis`].
///
/// A tensor is viewed as a matrix `[shape[0], numel / shape[0]]` (a tensor of rank < 2 as
/// `[numel, 1]`, rows being its only axis). When a pair holds more elements per side than
/// the metric's [`Metric::max_elements`], the executor hands the metric an evenly strided,
/// deterministic subset of whole examples of both tensors instead of the whole tensors:
/// `k = ⌊max_elements / features⌋` of the `n` examples, example `i < k` being example
/// `⌊i·n / k⌋`. A metric whose value is an expectation over examples (CKA's debiased
/// estimator is unbiased on a subset of examples) then estimates the same quantity within a
/// fixed memory bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExampleAxis {
    /// Rows are examples: a subsample keeps whole rows, and its shape is the tensor's with
    /// `shape[0]` replaced by the rows kept.
    Rows,
    /// Columns (of the `[shape[0], rest]` matrix) are examples: a subsample keeps whole
    /// columns, and its shape is `[shape[0], columns kept]`.
    Columns,
}

/// Elements per side a [`Needs::Tensors`] metric is given at most, unless it says otherwise
/// ([`Metric::max_elements`]): 16 Mi (64 MiB of f32 per tensor). A 4096 × 4096 matrix is
/// still read whole.
pub const DEFAULT_MAX_ELEMENTS: usize = 1 << 24;

/// What a metric is evaluated on.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// Moments of the pair (always present).
    pub moments: &'a Moments,
    /// The tensors (whole, or a subset of whole examples above [`Metric::max_elements`]):
    /// present exactly when the metric's spec declares [`Needs::Tensors`].
    pub tensors: Option<Tensors<'a>>,
}

/// A metric ready to run: built from a [`MetricSpec`] and validated parameters.
pub trait Metric: Send + Sync {
    /// Computes the metric for a tensor pair (A first, B second).
    ///
    /// Must not return NaN or a value outside the spec's declared range: a degenerate input
    /// gives [`MetricValue::Undefined`] with its reason.
    fn evaluate(&self, input: &Input<'_>) -> MetricValue;

    /// Like [`evaluate`](Metric::evaluate), but a failure of the metric's own code is an
    /// error that carries its message rather than [`Undefined::PluginFailed`]. The
    /// [conformance kit](crate::conformance) calls this, and so should an executor that wants
    /// to stop on a broken plugin.
    ///
    /// Built-in metrics keep the default, `Ok(self.evaluate(input))`. A metric that runs
    /// foreign code (a shared-library plugin, which may report an error, panic, or return NaN
    /// or a value outside its declared range) overrides it and returns
    /// [`crate::Error::MetricFailed`].
    fn try_evaluate(&self, input: &Input<'_>) -> Result<MetricValue> {
        Ok(self.evaluate(input))
    }

    /// Values of the metric under the metric's own null, for a z-score beside its value:
    /// for example CKA recomputed with B's examples randomly permuted, which keeps every
    /// marginal property of both matrices and destroys their correspondence. Empty (the
    /// default) when the metric has no such null; deterministic for a given input.
    fn null_samples(&self, input: &Input<'_>) -> Vec<f64> {
        let _ = input;
        Vec::new()
    }

    /// For a [`Needs::Tensors`] metric: which axis holds its examples, along which the
    /// executor subsamples a pair larger than [`Self::max_elements`]. The default, rows, is
    /// what shared-library plugins get (the plugin ABI has no way to say otherwise).
    fn example_axis(&self) -> ExampleAxis {
        ExampleAxis::Rows
    }

    /// For a [`Needs::Tensors`] metric: the most elements of each tensor it is handed. A pair
    /// with more is given as an evenly strided subset of whole examples ([`ExampleAxis`]),
    /// which bounds the memory the metric's input takes whatever the tensor size; its moments
    /// still come from a streaming pass over the whole pair. The default is
    /// [`DEFAULT_MAX_ELEMENTS`]; a metric may make it a parameter (CKA's `max-elements`).
    fn max_elements(&self) -> usize {
        DEFAULT_MAX_ELEMENTS
    }
}

/// Static description of a metric, as registered.
pub struct MetricSpec {
    /// Unique name used in recipes (`cosine`, `pearson`, …).
    pub name: &'static str,
    /// One-line description for `weightkin plugins` and the README.
    pub doc: &'static str,
    /// Closed interval every defined value lies in.
    pub range: (f64, f64),
    /// Whether m(a, b) = m(b, a).
    pub symmetric: bool,
    /// m(a, a) for any non-degenerate a, if the metric has such a value.
    pub identity: Option<f64>,
    /// Names of accepted parameters (empty: none).
    pub params: &'static [&'static str],
    /// What the metric reads.
    pub needs: Needs,
    /// Validates parameters and builds the runnable metric. A reference to a function (or,
    /// for a shared-library plugin, to a leaked closure that owns the library handle: plugins
    /// are never unloaded, so `'static` is honest).
    pub build: &'static (dyn Fn(&Params) -> Result<Box<dyn Metric>> + Send + Sync),
}

impl fmt::Debug for MetricSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricSpec")
            .field("name", &self.name)
            .field("range", &self.range)
            .field("symmetric", &self.symmetric)
            .field("identity", &self.identity)
            .field("params", &self.params)
            .field("needs", &self.needs)
            .finish_non_exhaustive()
    }
}

impl MetricSpec {
    /// Rejects any parameter not in `self.params`; metrics call this first in `build`.
    pub fn check_param_names(&self, params: &Params) -> Result<()> {
        match params.keys().find(|k| !self.params.contains(&k.as_str())) {
            None => Ok(()),
            Some(unknown) => Err(crate::Error::InvalidParam {
                metric: self.name,
                param: unknown.clone(),
                problem: crate::ParamProblem::Unknown {
                    accepted: if self.params.is_empty() {
                        "none".to_owned()
                    } else {
                        self.params.join(", ")
                    },
                },
            }),
        }
    }
}
