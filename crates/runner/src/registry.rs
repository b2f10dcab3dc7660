//! The one explicit list of built-in plugins.
//!
//! Adding a format or metric means adding it here, and nowhere else.

use weightkin_core::{Format, MetricSpec, Registry, Result};

/// Built-in formats, in sniffing order.
pub const FORMATS: &[&dyn Format] = &[
    &weightkin_core::safetensors::FORMAT,
    &weightkin_format_gguf::FORMAT,
    &weightkin_format_pytorch::FORMAT,
    &weightkin_format_onnx::FORMAT,
];

/// Built-in metrics.
pub const METRICS: &[&MetricSpec] = weightkin_metrics::ALL;

/// A registry holding every built-in plugin.
pub fn builtin() -> Result<Registry> {
    let mut r = Registry::new();
    for f in FORMATS {
        r.add_format(*f)?;
    }
    for m in METRICS {
        r.add_metric(m)?;
    }
    Ok(r)
}
