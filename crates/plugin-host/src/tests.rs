//! Unit tests of the loader without a shared library: descriptor validation on descriptors
//! built in this process (including one exported by `export_plugin!` into this test binary),
//! and the host-side checks of every result. The header check on crafted bytes is tested in
//! `object_check/tests.rs`; opening real libraries end to end in `tests/plugins.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::c_char;

use weightkin_core::testing::error_chain;
use weightkin_core::{
    Input, Metric, MetricFailure, MetricValue, Moments, Needs, ParamProblem, ParamValue, Params,
    Tensors, Undefined,
};
use weightkin_plugin_abi::{
    export_plugin, flags, status, ComputeInput, ComputeOutput, Failure, Input as AbiInput,
    MetricDescriptor, Params as AbiParams, PluginDescriptor,
};

use super::*;
use crate::adapter::PluginMetric;

// ---- an in-process plugin, exported exactly as a real one is --------------------------

fn scaled_mean_diff(input: &AbiInput<'_>, params: &AbiParams) -> Result<f64, Failure> {
    if input.a.is_empty() {
        return Err(abi::Undefined::Empty.into());
    }
    if !input.a.iter().chain(input.b).all(|v| v.is_finite()) {
        return Err(abi::Undefined::NonFinite.into());
    }
    let scale = params.float("scale")?.unwrap_or(1.0);
    let d: f64 = input
        .a
        .iter()
        .zip(input.b)
        .map(|(x, y)| f64::from(x - y))
        .sum();
    Ok(scale * d / input.a.len() as f64)
}

fn positive_scale(params: &AbiParams) -> Result<(), String> {
    match params.float("scale").map_err(|e| e.to_string())? {
        Some(s) if s <= 0.0 => Err(format!("`scale` must be positive, got {s}")),
        _ => Ok(()),
    }
}

fn misbehave(input: &AbiInput<'_>, params: &AbiParams) -> Result<f64, Failure> {
    match params.string("how")?.unwrap_or("") {
        "panic" => panic!("deliberate panic on {} elements", input.a.len()),
        "nan" => Ok(f64::NAN),
        "big" => Ok(7.0),
        "error" => Err("no good".into()),
        "long-error" => Err("é".repeat(MESSAGE_CAP).into()),
        _ => Ok(0.25),
    }
}

export_plugin! {
    name: "in-process",
    version: "0.0.1",
    metrics: [
        {
            name: "scaled-mean-diff",
            doc: "scale × mean(a − b)",
            range: (-10.0, 10.0),
            symmetric: false,
            identity: Some(0.0),
            params: ["scale"],
            check_params: positive_scale,
            compute: scaled_mean_diff,
        },
        {
            name: "misbehave",
            doc: "misbehaves as told",
            range: (0.0, 1.0),
            symmetric: true,
            identity: None,
            params: ["how"],
            compute: misbehave,
        },
    ],
}

fn origin_path() -> PathBuf {
    PathBuf::from("/plugins/libin_process.so")
}

/// A registry with the built-in metrics. (`weightkin_runner::registry::builtin` adds the
/// formats too; this crate does not depend on the runner, and these tests need no formats.)
fn builtin() -> Registry {
    let mut r = Registry::new();
    for m in weightkin_metrics::ALL {
        r.add_metric(m).unwrap();
    }
    r
}

/// A registry with the built-ins and the in-process plugin.
fn registry() -> (Registry, Loaded) {
    let mut r = builtin();
    // SAFETY: the in-process entry returns a static descriptor.
    let d = unsafe { read_descriptor(weightkin_plugin_entry()) }.unwrap();
    let loaded = register(&mut r, origin_path(), d).unwrap();
    (r, loaded)
}

fn params(pairs: &[(&str, ParamValue)]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn eval_with(
    spec: &MetricSpec,
    p: &Params,
    a: &[f32],
    b: &[f32],
    shape: &[usize],
) -> weightkin_core::Result<MetricValue> {
    let m = (spec.build)(p)?;
    let moments = Moments::of_slices(a, b);
    m.try_evaluate(&Input {
        moments: &moments,
        tensors: Some(Tensors { a, b, shape }),
    })
}

#[test]
fn an_exported_plugin_registers_with_its_origin() {
    let (r, loaded) = registry();
    assert_eq!(loaded.name, "in-process");
    assert_eq!(loaded.version, "0.0.1");
    let names: Vec<_> = loaded.metrics.iter().map(|m| m.name).collect();
    assert_eq!(names, ["scaled-mean-diff", "misbehave"]);
    let spec = r.metric("scaled-mean-diff").unwrap();
    assert_eq!(spec.doc, "scale × mean(a − b)");
    assert_eq!(spec.range, (-10.0, 10.0));
    assert!(!spec.symmetric);
    assert_eq!(spec.identity, Some(0.0));
    assert_eq!(spec.params, ["scale"]);
    assert_eq!(spec.needs, Needs::Tensors);
    assert_eq!(
        r.metric_origin("misbehave").unwrap().to_string(),
        "plugin in-process 0.0.1 (/plugins/libin_process.so)"
    );
    assert_eq!(r.metric_origin("cosine"), Some(&Origin::BuiltIn));
    // Found again by path, without registering twice.
    let again = already_loaded(&r, &origin_path()).unwrap();
    assert_eq!(again.metrics.len(), 2);
    assert!(already_loaded(&r, Path::new("/elsewhere.so")).is_none());
}

#[test]
fn values_and_parameters_cross_the_boundary() {
    let (r, _) = registry();
    let spec = r.metric("scaled-mean-diff").unwrap();
    let v = eval_with(spec, &Params::new(), &[3.0, 5.0], &[1.0, 1.0], &[2]).unwrap();
    assert_eq!(v, MetricValue::Value(3.0));
    let p = params(&[("scale", ParamValue::Float(0.5))]);
    let v = eval_with(spec, &p, &[3.0, 5.0, 1.0, 1.0], &[1.0; 4], &[2, 2]).unwrap();
    assert_eq!(v, MetricValue::Value(0.75));
    let p = params(&[("scale", ParamValue::Integer(2))]);
    let v = eval_with(spec, &p, &[3.0, 5.0], &[1.0, 1.0], &[2]).unwrap();
    assert_eq!(v, MetricValue::Value(6.0));
    // Undefined reasons map onto the core's.
    let v = eval_with(spec, &Params::new(), &[], &[], &[0]).unwrap();
    assert_eq!(v, MetricValue::Undefined(Undefined::Empty));
}

#[test]
fn parameters_are_checked_when_the_metric_is_built() {
    let (r, _) = registry();
    let spec = r.metric("scaled-mean-diff").unwrap();
    // Unknown names, like the built-ins.
    let err = (spec.build)(&params(&[("scal", ParamValue::Float(1.0))]))
        .err()
        .unwrap();
    assert!(
        matches!(&err, CoreError::InvalidParam { metric: "scaled-mean-diff", param, .. } if param == "scal"),
        "{err:?}"
    );
    // The plugin's own check, with its message.
    let err = (spec.build)(&params(&[("scale", ParamValue::Float(-1.0))]))
        .err()
        .unwrap();
    assert!(
        matches!(&err, CoreError::ParamsRejected { metric: "scaled-mean-diff", message }
            if message == "`scale` must be positive, got -1"),
        "{err:?}"
    );
    let err = (spec.build)(&params(&[("scale", ParamValue::String("x".into()))]))
        .err()
        .unwrap();
    assert!(
        matches!(&err, CoreError::ParamsRejected { message, .. }
            if message == "parameter `scale`: expected a number, found a string"),
        "{err:?}"
    );
    // JSON cannot carry NaN: refused before the plugin sees it.
    let err = (spec.build)(&params(&[("scale", ParamValue::Float(f64::NAN))]))
        .err()
        .unwrap();
    assert!(
        matches!(
            &err,
            CoreError::InvalidParam {
                problem: ParamProblem::BadValue { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn every_misbehaviour_becomes_an_error_and_never_a_value() {
    let (r, _) = registry();
    let spec = r.metric("misbehave").unwrap();
    let run = |how: &str| {
        eval_with(
            spec,
            &params(&[("how", ParamValue::String(how.into()))]),
            &[1.0, 2.0],
            &[1.0, 2.0],
            &[2],
        )
    };
    assert_eq!(run("fine").unwrap(), MetricValue::Value(0.25));
    let problem = |how: &str| match run(how) {
        Err(CoreError::MetricFailed {
            metric: "misbehave",
            problem,
        }) => problem,
        other => panic!("{how}: {other:?}"),
    };
    assert_eq!(
        problem("panic"),
        MetricFailure::Reported("panicked: deliberate panic on 2 elements".into())
    );
    assert!(matches!(problem("nan"), MetricFailure::NotFinite(v) if v.is_nan()));
    assert_eq!(
        problem("big"),
        MetricFailure::OutOfRange {
            value: 7.0,
            lo: 0.0,
            hi: 1.0
        }
    );
    assert_eq!(problem("error"), MetricFailure::Reported("no good".into()));
    // A message longer than the host's buffer is cut, on a character boundary.
    match problem("long-error") {
        MetricFailure::Reported(m) => {
            assert_eq!(m, "é".repeat(MESSAGE_CAP / 2));
        }
        other => panic!("{other:?}"),
    }
    // The infallible path reports the failure as a stated reason, never a value.
    let m = (spec.build)(&params(&[("how", ParamValue::String("nan".into()))])).unwrap();
    let moments = Moments::of_slices(&[1.0], &[1.0]);
    let input = Input {
        moments: &moments,
        tensors: Some(Tensors {
            a: &[1.0],
            b: &[1.0],
            shape: &[1],
        }),
    };
    assert_eq!(
        m.evaluate(&input),
        MetricValue::Undefined(Undefined::PluginFailed)
    );
}

#[test]
fn buffers_that_disagree_with_the_shape_never_reach_the_plugin() {
    let (r, _) = registry();
    let spec = r.metric("misbehave").unwrap();
    for (a, b, shape) in [
        (&[1.0f32, 2.0][..], &[1.0f32][..], &[2usize][..]),
        (&[1.0, 2.0], &[1.0, 2.0], &[3]),
        (&[1.0, 2.0], &[1.0, 2.0], &[usize::MAX, 2]),
    ] {
        let err = eval_with(spec, &Params::new(), a, b, shape).unwrap_err();
        assert!(
            matches!(
                err,
                CoreError::MetricFailed {
                    problem: MetricFailure::ShapeMismatch { .. },
                    ..
                }
            ),
            "{err:?}"
        );
    }
    // Moments only: the plugin cannot run.
    let m = (spec.build)(&Params::new()).unwrap();
    let moments = Moments::of_slices(&[1.0], &[1.0]);
    let err = m
        .try_evaluate(&Input {
            moments: &moments,
            tensors: None,
        })
        .unwrap_err();
    assert!(matches!(
        err,
        CoreError::MetricFailed {
            problem: MetricFailure::NoTensors,
            ..
        }
    ));
}

#[test]
fn the_in_process_plugin_passes_the_conformance_kit_where_it_should() {
    let (r, _) = registry();
    let good = weightkin_core::conformance::check(r.metric("scaled-mean-diff").unwrap());
    // Not symmetric and range-bounded by its declaration: everything that applies passes.
    assert!(good.passed(), "{good}");
    let bad = weightkin_core::conformance::check(r.metric("misbehave").unwrap());
    // Declares identity none and range [0, 1]; returns 0.25 for everything, including empty
    // and non-finite input, which the kit flags.
    assert!(!bad.passed());
    assert!(matches!(
        bad.outcome(weightkin_core::conformance::Check::Empty),
        Some(weightkin_core::conformance::Outcome::Fail(_))
    ));
}

// ---- results a well-behaved macro never produces: written by hand ----------------------

unsafe extern "C" fn status_seven(_: *const ComputeInput, _: *mut ComputeOutput) -> i32 {
    7
}

unsafe extern "C" fn undefined_reason_99(_: *const ComputeInput, out: *mut ComputeOutput) -> i32 {
    // SAFETY: the host passes a writable output.
    unsafe { (*out).reason = 99 };
    status::UNDEFINED
}

unsafe extern "C" fn error_claiming_a_huge_message(
    _: *const ComputeInput,
    out: *mut ComputeOutput,
) -> i32 {
    // Writes two bytes but claims far more than the buffer holds.
    // SAFETY: the host passes a writable output.
    let out = unsafe { &mut *out };
    // SAFETY: the host's message buffer holds at least two bytes.
    unsafe { out.message.ptr.copy_from_nonoverlapping(b"hi".as_ptr(), 2) };
    out.message.len = usize::MAX;
    status::ERROR
}

fn hand_metric(compute: abi::ComputeFn) -> PluginMetric {
    PluginMetric {
        name: "hand",
        range: (0.0, 1.0),
        compute,
        params_json: b"{}".to_vec(),
    }
}

fn run_hand(m: &PluginMetric) -> weightkin_core::Result<MetricValue> {
    let moments = Moments::of_slices(&[1.0], &[1.0]);
    m.try_evaluate(&Input {
        moments: &moments,
        tensors: Some(Tensors {
            a: &[1.0],
            b: &[1.0],
            shape: &[1],
        }),
    })
}

#[test]
fn unknown_codes_are_errors_and_message_lengths_are_bounded() {
    let problem = |f| match run_hand(&hand_metric(f)) {
        Err(CoreError::MetricFailed { problem, .. }) => problem,
        other => panic!("{other:?}"),
    };
    assert_eq!(problem(status_seven), MetricFailure::UnknownStatus(7));
    assert_eq!(
        problem(undefined_reason_99),
        MetricFailure::UnknownReason(99)
    );
    let MetricFailure::Reported(m) = problem(error_claiming_a_huge_message) else {
        panic!()
    };
    // The host reads at most its own buffer: "hi" and then the buffer's zero bytes.
    assert!(m.starts_with("hi") && m.len() == MESSAGE_CAP, "{}", m.len());
}

// ---- descriptor validation on hand-built descriptors ------------------------------------

unsafe extern "C" fn zero(_: *const ComputeInput, out: *mut ComputeOutput) -> i32 {
    // SAFETY: the host passes a writable output.
    unsafe { (*out).value = 0.0 };
    status::OK
}

fn metric(name: *const c_char) -> MetricDescriptor {
    MetricDescriptor {
        name,
        doc: c"a metric".as_ptr(),
        range_lo: 0.0,
        range_hi: 1.0,
        flags: flags::SYMMETRIC,
        identity: 0.0,
        params: std::ptr::null(),
        param_count: 0,
        check_params: None,
        compute: Some(zero),
    }
}

fn plugin(metrics: &'static [MetricDescriptor]) -> &'static PluginDescriptor {
    Box::leak(Box::new(PluginDescriptor {
        abi_version: abi::ABI_VERSION,
        name: c"hand-made".as_ptr(),
        version: c"1".as_ptr(),
        metrics: metrics.as_ptr(),
        metric_count: metrics.len(),
    }))
}

fn read(d: &PluginDescriptor) -> Result<Descriptor, LoadProblem> {
    // SAFETY: `d` is a live descriptor built by the test.
    unsafe { read_descriptor(d) }
}

fn field_problem(r: Result<Descriptor, LoadProblem>) -> (String, &'static str) {
    match r {
        Err(LoadProblem::InvalidDescriptor { field, problem }) => (field, problem),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn the_abi_version_is_read_first_and_range_checked() {
    // Everything after the version is garbage: a loader that read it would crash. Version 99
    // must be refused on the version alone.
    let dangling = std::ptr::NonNull::<c_char>::dangling().as_ptr();
    let future = Box::leak(Box::new(PluginDescriptor {
        abi_version: 99,
        name: dangling,
        version: dangling,
        metrics: std::ptr::NonNull::dangling().as_ptr(),
        metric_count: usize::MAX,
    }));
    assert!(matches!(
        read(future),
        Err(LoadProblem::AbiTooNew {
            found: 99,
            newest: NEWEST_ABI
        })
    ));
    future.abi_version = 0;
    assert!(matches!(
        read(future),
        Err(LoadProblem::AbiTooOld { found: 0, .. })
    ));
    assert!(check_abi_version(NEWEST_ABI).is_ok());
    assert!(check_abi_version(OLDEST_ABI).is_ok());
    assert!(matches!(
        // SAFETY: a null pointer is refused before it is read.
        unsafe { read_descriptor(std::ptr::null()) },
        Err(LoadProblem::BadDescriptor)
    ));
    let misaligned = (std::ptr::from_ref(plugin(&[])) as usize + 1) as *const PluginDescriptor;
    assert!(matches!(
        // SAFETY: a misaligned pointer is refused before it is read.
        unsafe { read_descriptor(misaligned) },
        Err(LoadProblem::BadDescriptor)
    ));
}

#[test]
fn invalid_descriptors_are_refused_with_the_field_named() {
    let leak = |m: MetricDescriptor| -> &'static [MetricDescriptor] { Box::leak(Box::new([m])) };
    let not_utf8: &'static [u8] = b"sp\xffearman\0";
    let (field, problem) = field_problem(read(plugin(leak(metric(not_utf8.as_ptr().cast())))));
    assert_eq!(
        (field.as_str(), problem),
        ("metric #1 name", "not valid UTF-8")
    );

    let (field, _) = field_problem(read(plugin(leak(metric(c"Spearman".as_ptr())))));
    assert_eq!(field, "metric #1 name `Spearman`");
    let (_, problem) = field_problem(read(plugin(leak(metric(std::ptr::null())))));
    assert_eq!(problem, "null pointer");
    let (field, problem) = field_problem(read(plugin(&[])));
    assert_eq!(
        (field.as_str(), problem),
        ("metrics", "the plugin declares no metrics")
    );

    let mut m = metric(c"m".as_ptr());
    m.doc = c"two\nlines".as_ptr();
    assert_eq!(field_problem(read(plugin(leak(m)))).0, "metric `m` doc");
    let mut m = metric(c"m".as_ptr());
    m.range_hi = f64::NAN;
    assert_eq!(field_problem(read(plugin(leak(m)))).0, "metric `m` range");
    let mut m = metric(c"m".as_ptr());
    m.flags = 1 << 7;
    assert_eq!(field_problem(read(plugin(leak(m)))).0, "metric `m` flags");
    let mut m = metric(c"m".as_ptr());
    m.flags = flags::HAS_IDENTITY;
    m.identity = 2.0;
    assert_eq!(
        field_problem(read(plugin(leak(m)))).0,
        "metric `m` identity"
    );
    let mut m = metric(c"m".as_ptr());
    m.compute = None;
    assert_eq!(field_problem(read(plugin(leak(m)))).0, "metric `m` compute");
    let mut m = metric(c"m".as_ptr());
    m.param_count = 1;
    assert_eq!(
        field_problem(read(plugin(leak(m)))).0,
        "metric `m` parameters"
    );
    let names: &'static [abi::__private::CStrPtr] = Box::leak(Box::new([
        abi::__private::CStrPtr(c"k".as_ptr()),
        abi::__private::CStrPtr(c"k".as_ptr()),
    ]));
    let mut m = metric(c"m".as_ptr());
    m.params = names.as_ptr().cast();
    m.param_count = 2;
    assert_eq!(
        field_problem(read(plugin(leak(m)))).0,
        "metric `m` parameter `k`"
    );

    let twice: &'static [MetricDescriptor] =
        Box::leak(Box::new([metric(c"m".as_ptr()), metric(c"m".as_ptr())]));
    assert_eq!(
        field_problem(read(plugin(twice))),
        ("metric `m`".to_owned(), "declared twice by this plugin")
    );
}

#[test]
fn a_taken_name_names_its_owner_and_nothing_is_registered() {
    let (mut r, _) = registry();
    let before = r.metrics().len();
    // "cosine" is built in; the first metric is free, so all-or-none matters.
    let metrics: &'static [MetricDescriptor] = Box::leak(Box::new([
        metric(c"fresh".as_ptr()),
        metric(c"cosine".as_ptr()),
    ]));
    let d = read(plugin(metrics)).unwrap();
    let err = register(&mut r, "/other/libx.so".into(), d).unwrap_err();
    let Error::Load { path, problem } = &err;
    assert_eq!(path, Path::new("/other/libx.so"));
    assert!(matches!(
        &**problem,
        LoadProblem::Register(CoreError::NameTaken { name, owner, .. })
            if name == "cosine" && **owner == Origin::BuiltIn
    ));
    assert_eq!(r.metrics().len(), before);
    assert!(r.metric("fresh").is_none());
    // Against another plugin, the owner is that plugin and its path.
    let d = read(plugin(Box::leak(Box::new([metric(c"misbehave".as_ptr())])))).unwrap();
    let err = register(&mut r, "/other/libx.so".into(), d).unwrap_err();
    let text = error_chain(&err);
    assert_eq!(
        text,
        "cannot load plugin /other/libx.so: cannot register its metrics: a metric named \
         `misbehave` is already registered by plugin in-process 0.0.1 (/plugins/libin_process.so)"
    );
}

#[test]
fn the_plugin_path_variable_is_split_like_path() {
    // Only this test touches the variable in this binary.
    let joined = std::env::join_paths(["/a/liba.so", "", "/b/libb.so"]).unwrap();
    // SAFETY: no other thread of this test binary reads or writes this variable.
    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var(PLUGIN_PATH_ENV, &joined) };
    let paths = env_paths();
    // SAFETY: as above.
    unsafe { std::env::remove_var(PLUGIN_PATH_ENV) };
    assert_eq!(
        paths,
        [PathBuf::from("/a/liba.so"), PathBuf::from("/b/libb.so")]
    );
    assert!(env_paths().is_empty());
}

#[test]
fn loading_a_missing_or_non_library_file_fails_before_the_loader() {
    let mut r = builtin();
    let err = load(&mut r, Path::new("/no/such/plugin.so")).unwrap_err();
    assert!(
        matches!(&err, Error::Load { problem, .. } if matches!(**problem, LoadProblem::Read(_))),
        "{err:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("libnot.so");
    std::fs::write(&text, "not a library").unwrap();
    let err = load(&mut r, &text).unwrap_err();
    assert!(
        matches!(&err, Error::Load { problem, .. }
            if matches!(**problem, LoadProblem::NotSharedLibrary(_))),
        "{err:?}"
    );
}
