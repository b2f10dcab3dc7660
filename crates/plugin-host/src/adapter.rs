//! The adapters: each plugin metric as a [`Metric`] the pipeline runs like a built-in.
//!
//! Everything that crosses the boundary at run time passes through here: the recipe's
//! parameters go out as JSON (checked by the plugin's own `check_params` when the metric is
//! built), tensors go out as borrowed `f32` buffers whose lengths are checked against their
//! shape first, and every status, reason code, message length and value that comes back is
//! checked before it becomes a [`MetricValue`] — a plugin that misbehaves yields an error,
//! never a number in a report.

use std::sync::OnceLock;

use weightkin_core::{
    Error as CoreError, Input, Metric, MetricFailure, MetricSpec, MetricValue, Needs, ParamProblem,
    ParamValue, Params, Undefined,
};
use weightkin_plugin_abi as abi;

use crate::descriptor::MetricDesc;
use crate::MESSAGE_CAP;

/// A `'static` [`MetricSpec`] for a plugin metric. Leaked on purpose: plugins are never
/// unloaded, and a spec lives as long as the registry that may hand it out.
pub(crate) fn leak_spec(m: MetricDesc) -> &'static MetricSpec {
    let name: &'static str = Box::leak(m.name.into_boxed_str());
    let params: &'static [&'static str] = Box::leak(
        m.params
            .into_iter()
            .map(|p| &*Box::leak(p.into_boxed_str()))
            .collect::<Box<[&'static str]>>(),
    );
    // The builder needs its own spec (to check parameter names the way built-ins do); the
    // spec needs the builder. The cell is filled right after the spec is made, before the
    // spec is registered, so `get` never finds it empty.
    let cell: &'static OnceLock<&'static MetricSpec> = Box::leak(Box::new(OnceLock::new()));
    let (range, compute, check_params) = (m.range, m.compute, m.check_params);
    let build = move |p: &Params| -> weightkin_core::Result<Box<dyn Metric>> {
        if let Some(spec) = cell.get() {
            spec.check_param_names(p)?;
        }
        let params_json = params_json(name, p)?;
        if let Some(check) = check_params {
            check_with_plugin(name, check, &params_json)?;
        }
        Ok(Box::new(PluginMetric {
            name,
            range,
            compute,
            params_json,
        }))
    };
    let spec: &'static MetricSpec = Box::leak(Box::new(MetricSpec {
        name,
        doc: Box::leak(m.doc.into_boxed_str()),
        range: m.range,
        symmetric: m.symmetric,
        identity: m.identity,
        params,
        // The ABI passes f32 buffers, so a plugin metric always reads the whole tensors.
        needs: Needs::Tensors,
        build: Box::leak(Box::new(build)),
    }));
    let _ = cell.set(spec);
    spec
}

/// The recipe's parameters as the JSON object the ABI passes. JSON has no NaN or infinity,
/// so such floats are refused here rather than silently becoming `null`.
fn params_json(metric: &'static str, p: &Params) -> weightkin_core::Result<Vec<u8>> {
    if let Some((k, _)) = p
        .iter()
        .find(|(_, v)| matches!(v, ParamValue::Float(f) if !f.is_finite()))
    {
        return Err(CoreError::InvalidParam {
            metric,
            param: k.clone(),
            problem: ParamProblem::BadValue {
                expected: "a finite number (plugins receive parameters as JSON)",
            },
        });
    }
    serde_json::to_vec(p).map_err(|e| CoreError::ParamsRejected {
        metric,
        message: format!("cannot encode the parameters as JSON: {e}"),
    })
}

/// Runs a plugin's own parameter check.
fn check_with_plugin(
    metric: &'static str,
    check: abi::CheckParamsFn,
    params_json: &[u8],
) -> weightkin_core::Result<()> {
    let mut buf = [0u8; MESSAGE_CAP];
    let mut message = abi::Message {
        ptr: buf.as_mut_ptr(),
        cap: buf.len(),
        len: 0,
    };
    // SAFETY: `params_json` is valid for its length and `message` points to `MESSAGE_CAP`
    // writable bytes, as `CheckParamsFn` requires.
    let status = unsafe { check(params_json.as_ptr(), params_json.len(), &mut message) };
    if status == abi::status::OK {
        return Ok(());
    }
    Err(CoreError::ParamsRejected {
        metric,
        message: message_text(&buf, message.len, status),
    })
}

/// The message a plugin wrote into `buf`, bounded by the buffer whatever `len` it claims.
fn message_text(buf: &[u8], len: usize, status: i32) -> String {
    let text = String::from_utf8_lossy(&buf[..len.min(buf.len())]).into_owned();
    if text.is_empty() {
        format!("(no message; status {status})")
    } else {
        text
    }
}

/// A plugin metric, built with its parameters.
///
/// It keeps the [`Metric`] defaults for [`Metric::example_axis`] (rows) and
/// [`Metric::max_elements`] ([`weightkin_core::DEFAULT_MAX_ELEMENTS`]): the ABI has no way to
/// declare either, so a pair larger than the bound reaches the plugin as an evenly strided
/// subset of whole rows of both tensors, with `shape[0]` reduced to match.
pub(crate) struct PluginMetric {
    pub(crate) name: &'static str,
    pub(crate) range: (f64, f64),
    pub(crate) compute: abi::ComputeFn,
    pub(crate) params_json: Vec<u8>,
}

impl Metric for PluginMetric {
    fn evaluate(&self, input: &Input<'_>) -> MetricValue {
        self.try_evaluate(input)
            .unwrap_or(MetricValue::Undefined(Undefined::PluginFailed))
    }

    fn try_evaluate(&self, input: &Input<'_>) -> weightkin_core::Result<MetricValue> {
        let fail = |problem| CoreError::MetricFailed {
            metric: self.name,
            problem,
        };
        let t = input
            .tensors
            .ok_or_else(|| fail(MetricFailure::NoTensors))?;
        let numel = t.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        // The ABI passes one length for both buffers: never hand the plugin buffers that
        // disagree with it.
        if t.a.len() != t.b.len() || numel != Some(t.a.len()) {
            return Err(fail(MetricFailure::ShapeMismatch {
                a: t.a.len(),
                b: t.b.len(),
                shape: t.shape.to_vec(),
            }));
        }
        let mut buf = [0u8; MESSAGE_CAP];
        let mut out = abi::ComputeOutput {
            value: f64::NAN,
            reason: 0,
            message: abi::Message {
                ptr: buf.as_mut_ptr(),
                cap: buf.len(),
                len: 0,
            },
        };
        let raw = abi::ComputeInput {
            a: t.a.as_ptr(),
            b: t.b.as_ptr(),
            len: t.a.len(),
            shape: t.shape.as_ptr(),
            rank: t.shape.len(),
            params: self.params_json.as_ptr(),
            params_len: self.params_json.len(),
        };
        // SAFETY: every pointer in `raw` is valid for the length it states for the duration
        // of the call, `out` is exclusively ours with `MESSAGE_CAP` writable bytes behind its
        // message, and the library is never unloaded.
        let status = unsafe { (self.compute)(&raw, &mut out) };
        let (lo, hi) = self.range;
        match status {
            abi::status::OK => {
                let v = out.value;
                if !v.is_finite() {
                    Err(fail(MetricFailure::NotFinite(v)))
                } else if v < lo || v > hi {
                    Err(fail(MetricFailure::OutOfRange { value: v, lo, hi }))
                } else {
                    Ok(MetricValue::Value(v))
                }
            }
            abi::status::UNDEFINED => undefined(out.reason)
                .map(MetricValue::Undefined)
                .ok_or_else(|| fail(MetricFailure::UnknownReason(out.reason))),
            abi::status::ERROR => Err(fail(MetricFailure::Reported(message_text(
                &buf,
                out.message.len,
                status,
            )))),
            other => Err(fail(MetricFailure::UnknownStatus(other))),
        }
    }
}

/// The core reason for an ABI reason code.
fn undefined(code: u32) -> Option<Undefined> {
    Some(match abi::Undefined::from_code(code)? {
        abi::Undefined::Empty => Undefined::Empty,
        abi::Undefined::NonFinite => Undefined::NonFinite,
        abi::Undefined::ZeroNorm => Undefined::ZeroNorm,
        abi::Undefined::Constant => Undefined::Constant,
        abi::Undefined::NotAMatrix => Undefined::NotAMatrix,
        abi::Undefined::TooFewExamples => Undefined::TooFewExamples,
    })
}
