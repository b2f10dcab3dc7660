//! A deliberately broken weightkin metric plugin (test fixture for `tests/plugins.rs`): each
//! metric breaks one promise, to show that the host and the conformance kit catch it. All
//! inputs other than empty or non-finite ones reach the misbehaviour.

use std::sync::atomic::{AtomicU64, Ordering};

use weightkin_plugin_abi::{export_plugin, Failure, Input, Params, Undefined};

/// The degenerate cases every metric here handles correctly, so that each metric fails only
/// the checks for its own misbehaviour.
fn degenerate(input: &Input<'_>) -> Result<(), Failure> {
    if input.a.is_empty() {
        return Err(Undefined::Empty.into());
    }
    if !input.a.iter().chain(input.b).all(|v| v.is_finite()) {
        return Err(Undefined::NonFinite.into());
    }
    Ok(())
}

/// Panics (the macro turns it into an error status).
fn panics(input: &Input<'_>, _: &Params) -> Result<f64, Failure> {
    degenerate(input)?;
    let v: Vec<f32> = Vec::new();
    Ok(f64::from(v[input.a.len()]))
}

/// Declares [0, 1] and returns 1.5.
fn out_of_range(input: &Input<'_>, _: &Params) -> Result<f64, Failure> {
    degenerate(input)?;
    Ok(1.5)
}

/// Returns NaN.
fn nan(input: &Input<'_>, _: &Params) -> Result<f64, Failure> {
    degenerate(input)?;
    Ok(f64::NAN)
}

/// Declared symmetric, but depends on A only: tanh(mean(A)), always within range.
fn asymmetric(input: &Input<'_>, _: &Params) -> Result<f64, Failure> {
    degenerate(input)?;
    let mean = input.a.iter().map(|&x| f64::from(x)).sum::<f64>() / input.a.len() as f64;
    Ok(mean.tanh())
}

/// A different value on every call.
fn restless(input: &Input<'_>, _: &Params) -> Result<f64, Failure> {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    degenerate(input)?;
    Ok((CALLS.fetch_add(1, Ordering::Relaxed) % 10) as f64 / 10.0)
}

export_plugin! {
    name: "weightkin-test-plugin-broken",
    version: "0.0.0",
    metrics: [
        {
            name: "broken-panics",
            doc: "panics on every non-degenerate input",
            range: (-1.0, 1.0),
            symmetric: true,
            identity: Some(1.0),
            params: [],
            compute: panics,
        },
        {
            name: "broken-out-of-range",
            doc: "declares [0, 1] and returns 1.5",
            range: (0.0, 1.0),
            symmetric: true,
            identity: None,
            params: [],
            compute: out_of_range,
        },
        {
            name: "broken-nan",
            doc: "returns NaN",
            range: (-1.0, 1.0),
            symmetric: true,
            identity: None,
            params: [],
            compute: nan,
        },
        {
            name: "broken-asymmetric",
            doc: "declared symmetric, but reads only tensor A",
            range: (-1.0, 1.0),
            symmetric: true,
            identity: None,
            params: [],
            compute: asymmetric,
        },
        {
            name: "broken-restless",
            doc: "returns a different value on every call",
            range: (0.0, 1.0),
            symmetric: false,
            identity: None,
            params: [],
            compute: restless,
        },
    ],
}
