//! Unit tests: the parameter parser, the message buffer, and what `export_plugin!` generates,
//! driven through the raw C ABI exactly as a host would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::CStr;

use crate::{
    flags, reason, status, ComputeInput, ComputeOutput, Failure, Input, Message, ParamError,
    ParamValue, Params, PluginDescriptor, Undefined, ABI_VERSION,
};

fn mean_diff(input: &Input<'_>, params: &Params) -> Result<f64, Failure> {
    if input.a.is_empty() {
        return Err(Undefined::Empty.into());
    }
    if params.bool("explode")?.unwrap_or(false) {
        panic!("boom {}", input.a.len());
    }
    if let Some(text) = params.string("fail")? {
        return Err(Failure::Error(text.to_owned()));
    }
    let s: f64 = input
        .a
        .iter()
        .zip(input.b)
        .map(|(x, y)| f64::from(x - y))
        .sum();
    Ok(s / input.a.len() as f64)
}

fn check(params: &Params) -> Result<(), String> {
    match params.integer("n").map_err(|e| e.to_string())? {
        Some(n) if n < 1 => Err(format!("`n` must be positive, got {n}")),
        _ => Ok(()),
    }
}

fn constant(_: &Input<'_>, _: &Params) -> Result<f64, Failure> {
    Ok(0.5)
}

export_plugin! {
    name: "test-plugin",
    version: "1.2.3",
    metrics: [
        {
            name: "mean-diff",
            doc: "mean of a − b",
            range: (f64::NEG_INFINITY, f64::INFINITY),
            symmetric: false,
            identity: Some(0.0),
            params: ["explode", "fail", "n"],
            check_params: check,
            compute: mean_diff,
        },
        {
            name: "half",
            doc: "always ½",
            range: (0.0, 1.0),
            symmetric: true,
            identity: None,
            params: [],
            compute: constant,
        },
    ],
}

fn descriptor() -> &'static PluginDescriptor {
    // SAFETY: the entry point returns a pointer to a static descriptor.
    unsafe { &*weightkin_plugin_entry() }
}

fn text(p: *const std::ffi::c_char) -> &'static str {
    // SAFETY: the descriptor's strings are static, NUL-terminated literals.
    unsafe { CStr::from_ptr(p) }.to_str().unwrap()
}

struct Call {
    status: i32,
    value: f64,
    reason: u32,
    message: String,
}

fn call(metric: usize, a: &[f32], b: &[f32], shape: &[usize], params: &str, cap: usize) -> Call {
    let d = descriptor();
    // SAFETY: `metric` < `metric_count`, the length of the static metrics array.
    let m = unsafe { &*d.metrics.add(metric) };
    let mut buf = vec![0u8; cap];
    let mut out = ComputeOutput {
        value: f64::NAN,
        reason: 0,
        message: Message {
            ptr: buf.as_mut_ptr(),
            cap,
            len: 0,
        },
    };
    let input = ComputeInput {
        a: if a.is_empty() {
            std::ptr::null()
        } else {
            a.as_ptr()
        },
        b: b.as_ptr(),
        len: a.len(),
        shape: shape.as_ptr(),
        rank: shape.len(),
        params: params.as_ptr(),
        params_len: params.len(),
    };
    // SAFETY: `input` points at live buffers of the lengths it states; `out` is writable.
    let status = unsafe { (m.compute.unwrap())(&input, &mut out) };
    let len = out.message.len.min(cap);
    Call {
        status,
        value: out.value,
        reason: out.reason,
        message: String::from_utf8(buf[..len].to_vec()).unwrap(),
    }
}

#[test]
fn descriptor_describes_the_plugin() {
    let d = descriptor();
    assert_eq!(d.abi_version, ABI_VERSION);
    assert_eq!(text(d.name), "test-plugin");
    assert_eq!(text(d.version), "1.2.3");
    assert_eq!(d.metric_count, 2);
    // SAFETY: the static metrics array has `metric_count` entries.
    let m = unsafe { std::slice::from_raw_parts(d.metrics, d.metric_count) };
    assert_eq!(text(m[0].name), "mean-diff");
    assert_eq!(text(m[0].doc), "mean of a − b");
    assert_eq!(m[0].flags, flags::HAS_IDENTITY);
    assert_eq!(m[0].identity, 0.0);
    assert_eq!(m[0].range_lo, f64::NEG_INFINITY);
    let names: Vec<_> = (0..m[0].param_count)
        // SAFETY: `i` < `param_count`, the length of the static parameter-name array.
        .map(|i| text(unsafe { *m[0].params.add(i) }))
        .collect();
    assert_eq!(names, ["explode", "fail", "n"]);
    assert!(m[0].check_params.is_some());
    assert_eq!(m[1].flags, flags::SYMMETRIC);
    assert_eq!(m[1].param_count, 0);
    assert!(m[1].check_params.is_none());
    // The entry point returns the same static every time.
    assert!(std::ptr::eq(descriptor(), d));
}

#[test]
fn compute_returns_values_and_reasons() {
    let c = call(0, &[3.0, 5.0], &[1.0, 1.0], &[2], "{}", 64);
    assert_eq!((c.status, c.value), (status::OK, 3.0));
    let c = call(0, &[3.0, 5.0, 1.0, 1.0], &[1.0; 4], &[2, 2], "", 64);
    assert_eq!((c.status, c.value), (status::OK, 1.5));
    let c = call(0, &[], &[], &[0], "{}", 64);
    assert_eq!((c.status, c.reason), (status::UNDEFINED, reason::EMPTY));
    let c = call(1, &[1.0], &[2.0], &[1], "{}", 64);
    assert_eq!((c.status, c.value), (status::OK, 0.5));
}

#[test]
fn panics_become_error_status_with_the_message() {
    let c = call(0, &[1.0; 3], &[1.0; 3], &[3], r#"{"explode": true}"#, 64);
    assert_eq!(c.status, status::ERROR);
    assert_eq!(c.message, "panicked: boom 3");
}

#[test]
fn errors_are_truncated_to_the_host_buffer_on_a_char_boundary() {
    let c = call(0, &[1.0], &[1.0], &[1], r#"{"fail": "ab€cd"}"#, 64);
    assert_eq!((c.status, c.message.as_str()), (status::ERROR, "ab€cd"));
    // "ab€" is 5 bytes; a 4-byte buffer must not split the euro sign.
    let c = call(0, &[1.0], &[1.0], &[1], r#"{"fail": "ab€cd"}"#, 4);
    assert_eq!((c.status, c.message.as_str()), (status::ERROR, "ab"));
    let c = call(0, &[1.0], &[1.0], &[1], r#"{"fail": "x"}"#, 0);
    assert_eq!((c.status, c.message.as_str()), (status::ERROR, ""));
}

#[test]
fn bad_input_is_an_error_not_undefined_behaviour() {
    // Shape that does not hold `len` elements.
    let c = call(0, &[1.0; 4], &[1.0; 4], &[3], "{}", 128);
    assert_eq!(c.status, status::ERROR);
    assert!(
        c.message.contains("shape [3] does not hold 4"),
        "{}",
        c.message
    );
    // Overflowing shape.
    let c = call(0, &[1.0; 4], &[1.0; 4], &[usize::MAX, 2], "{}", 128);
    assert_eq!(c.status, status::ERROR);
    // Malformed params and params of the wrong type.
    let c = call(0, &[1.0], &[1.0], &[1], "{", 128);
    assert_eq!(c.status, status::ERROR);
    assert!(
        c.message.starts_with("invalid params JSON"),
        "{}",
        c.message
    );
    let c = call(0, &[1.0], &[1.0], &[1], r#"{"explode": 1}"#, 128);
    assert_eq!(
        c.message,
        "parameter `explode`: expected a boolean, found an integer"
    );
    // Null output.
    let d = descriptor();
    // SAFETY: the descriptor has at least one metric.
    let m = unsafe { &*d.metrics };
    // SAFETY: null pointers are part of the contract under test: the entry refuses them.
    let s = unsafe { (m.compute.unwrap())(std::ptr::null(), std::ptr::null_mut()) };
    assert_eq!(s, status::ERROR);
}

#[test]
fn check_params_runs_the_authors_check() {
    // SAFETY: the descriptor has at least one metric.
    let m = unsafe { &*descriptor().metrics };
    let f = m.check_params.unwrap();
    let run = |params: &str| {
        let mut buf = [0u8; 64];
        let mut msg = Message {
            ptr: buf.as_mut_ptr(),
            cap: buf.len(),
            len: 0,
        };
        // SAFETY: `params` is a live buffer of `params.len()` bytes; `msg` is writable.
        let s = unsafe { f(params.as_ptr(), params.len(), &mut msg) };
        (s, String::from_utf8(buf[..msg.len].to_vec()).unwrap())
    };
    assert_eq!(run(r#"{"n": 3}"#), (status::OK, String::new()));
    assert_eq!(
        run(r#"{"n": 0}"#),
        (status::ERROR, "`n` must be positive, got 0".to_owned())
    );
    assert_eq!(run(r#"{"n": "x"}"#).0, status::ERROR);
    assert_eq!(run("[]").0, status::ERROR);
}

#[test]
fn params_parse_the_json_serde_writes() {
    let p = Params::parse(
        br#" { "flag" : true, "n": -12, "x": 1.5e3, "y": 2.0, "s": "a\"b\\\u00e9\ud83d\ude00\n" } "#,
    )
    .unwrap();
    assert_eq!(p.get("flag"), Some(&ParamValue::Bool(true)));
    assert_eq!(p.integer("n"), Ok(Some(-12)));
    assert_eq!(p.float("n"), Ok(Some(-12.0)));
    assert_eq!(p.float("x"), Ok(Some(1500.0)));
    assert_eq!(p.get("y"), Some(&ParamValue::Float(2.0)));
    assert_eq!(p.string("s"), Ok(Some("a\"b\\é😀\n")));
    assert_eq!(p.integer("missing"), Ok(None));
    assert_eq!(p.iter().count(), 5);
    assert!(Params::parse(b"{}").unwrap().is_empty());
    assert!(Params::parse(b"").unwrap().is_empty());
    // Integers beyond i64 become floats.
    assert_eq!(
        Params::parse(br#"{"big": 18446744073709551616}"#)
            .unwrap()
            .float("big"),
        Ok(Some(18_446_744_073_709_551_616.0))
    );
}

#[test]
fn params_reject_everything_else() {
    for bad in [
        &b"{"[..],
        b"[1]",
        b"{\"a\": null}",
        b"{\"a\": [1]}",
        b"{\"a\": {}}",
        b"{\"a\": 1,}",
        b"{\"a\" 1}",
        b"{\"a\": 01}",
        b"{\"a\": 1.}",
        b"{\"a\": -}",
        b"{\"a\": 1e}",
        b"{\"a\": 1e999}",
        b"{\"a\": \"\\x\"}",
        b"{\"a\": \"\\ud800\"}",
        b"{\"a\": \"\\udc00\"}",
        b"{\"a\": \"\x01\"}",
        b"{\"a\": \"\xff\"}",
        b"{\"a\": tru}",
        b"{\"a\": 1} x",
        b"{a: 1}",
    ] {
        assert!(
            matches!(Params::parse(bad), Err(ParamError::Syntax { .. })),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(
        Params::parse(br#"{"a": 1, "a": 2}"#),
        Err(ParamError::Duplicate("a".into()))
    );
}

#[test]
fn params_never_panic_on_arbitrary_bytes() {
    // A cheap deterministic fuzz: every prefix and every single-byte corruption of a valid
    // blob parses or errors, never panics.
    let valid = br#"{"a": true, "b": -1.5e-3, "c": "x\u00e9\ud83d\ude00"}"#;
    for end in 0..=valid.len() {
        let _ = Params::parse(&valid[..end]);
    }
    for i in 0..valid.len() {
        for b in [0u8, b'"', b'\\', b'{', b'}', b'-', b'e', b'.', 0xff] {
            let mut v = valid.to_vec();
            v[i] = b;
            let _ = Params::parse(&v);
        }
    }
}

#[test]
fn undefined_codes_round_trip() {
    for u in [
        Undefined::Empty,
        Undefined::NonFinite,
        Undefined::ZeroNorm,
        Undefined::Constant,
        Undefined::NotAMatrix,
        Undefined::TooFewExamples,
    ] {
        assert_eq!(Undefined::from_code(u.code()), Some(u));
    }
    assert_eq!(Undefined::from_code(0), None);
    assert_eq!(Undefined::from_code(99), None);
}
