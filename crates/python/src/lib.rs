//! `weightkin._weightkin`: the native half of the `weightkin` Python package.
//!
//! Thin by design, like the CLI: every function here turns Python arguments into the runner's
//! (`weightkin_runner::compare`, `audit_file`, `audit_str`, `inspect::open`, `demo::generate`)
//! and the runner's results and errors into Python values. Nothing decides what a report
//! says, so a report made here is byte-identical to the CLI's for the same inputs (the pytest
//! suite checks it). The Python half (`python/weightkin`) adds what suits Python users: the
//! `Report` class over the canonical JSON, tables, the notebook view, keyword arguments.
//!
//! Long runs release the GIL and honour Ctrl-C (`interruptible`): the audit runs on a
//! worker thread while the calling thread waits without the GIL, waking every
//! `SIGNAL_POLL` to let Python run its signal handlers. When a handler raises (Ctrl-C's
//! `KeyboardInterrupt`), the runner is told to stop through [`Progress::cancelled`] and the
//! handler's exception is raised at once. The worker is not waited for: it stops at the
//! runner's next checkpoint (before its next tensor pair, grid slab or file to hash), which
//! for a large pair under CKA can be seconds away, and it holds no Python object, so
//! Python goes on meanwhile. Report files are written by the calling thread, after the run,
//! so an interrupted audit writes nothing.
//!
//! Errors become the Python `WeightkinError` hierarchy (`weightkin._errors`), carrying the
//! CLI's message chain and, where the runner's error names them, the recipe's line and
//! column or the model file and tensor (`raise`).

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod lineage;

use pyo3::exceptions::{PyKeyboardInterrupt, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use weightkin_core::Registry;
use weightkin_runner::{Adhoc, Error, Progress, Report, ReportFormat, RunOptions};

/// How often a waiting call lets Python check for signals (Ctrl-C): short enough to feel
/// immediate, long enough to cost nothing.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Name a recipe given as text has in errors (like Python's `compile`); its relative model
/// paths are relative to the current directory.
const STRING_RECIPE: &str = "<string>";

/// A report from the runner, with the formats its recipe asks for (`[report] formats`).
#[pyclass(frozen, module = "weightkin._weightkin")]
pub struct NativeReport {
    report: Report,
    formats: Vec<ReportFormat>,
}

#[pymethods]
impl NativeReport {
    /// The report rendered as `format`: "json" (canonical, `report.json`), "md"
    /// (`report.md`) or "html" (`report.html`).
    fn render(&self, format: &str) -> PyResult<String> {
        Ok(parse_format(format)?.render(&self.report))
    }

    /// The formats the recipe asks for, by name.
    fn formats(&self) -> Vec<&'static str> {
        self.formats.iter().map(|f| f.name()).collect()
    }

    /// Writes the report in `formats` (default: the recipe's) into `dir`, as the CLI's
    /// `audit --out DIR` does; returns the paths written.
    #[pyo3(signature = (dir, formats=None))]
    fn write(
        &self,
        py: Python<'_>,
        dir: PathBuf,
        formats: Option<Vec<String>>,
    ) -> PyResult<Vec<PathBuf>> {
        let formats = match formats {
            Some(names) => names
                .iter()
                .map(|n| parse_format(n))
                .collect::<PyResult<Vec<_>>>()?,
            None => self.formats.clone(),
        };
        py.detach(|| self.report.write(&dir, &formats))
            .map_err(|e| raise(py, &Error::WriteReport(e)))
    }
}

/// `weightkin.compare`: an ad-hoc comparison of models `a` and `b`, as `weightkin compare A B`.
#[pyfunction]
#[allow(clippy::too_many_arguments)] // Python keyword arguments, passed through one by one.
fn compare(
    py: Python<'_>,
    a: String,
    b: String,
    metrics: Vec<String>,
    include: Vec<String>,
    exclude: Vec<String>,
    align_units: bool,
    threads: Option<usize>,
    hash_cache: bool,
    offline: bool,
) -> PyResult<NativeReport> {
    let adhoc = Adhoc {
        a,
        b,
        metrics,
        include,
        exclude,
        align_units,
    };
    let run = Run {
        hash_cache,
        offline,
    };
    let registry = registry(py)?;
    let report = interruptible(py, threads, move |progress| {
        weightkin_runner::compare(&adhoc, &registry, &run.options(progress))
    })?;
    Ok(NativeReport {
        report,
        formats: vec![ReportFormat::Json, ReportFormat::Markdown],
    })
}

/// `weightkin.audit` with a recipe file: runs it and, with `out`, writes its reports there as
/// `weightkin audit RECIPE --out DIR` does.
#[pyfunction]
fn audit_file(
    py: Python<'_>,
    recipe: PathBuf,
    out: Option<PathBuf>,
    threads: Option<usize>,
    hash_cache: bool,
    offline: bool,
) -> PyResult<NativeReport> {
    let run = Run {
        hash_cache,
        offline,
    };
    let registry = registry(py)?;
    let (recipe, report) = interruptible(py, threads, move |progress| {
        weightkin_runner::audit_file(&recipe, &registry, &run.options(progress))
    })?;
    finish(py, report, recipe.formats, out.as_deref())
}

/// `weightkin.audit` with a recipe's text (relative model paths are relative to the current
/// directory).
#[pyfunction]
fn audit_text(
    py: Python<'_>,
    text: String,
    out: Option<PathBuf>,
    threads: Option<usize>,
    hash_cache: bool,
    offline: bool,
) -> PyResult<NativeReport> {
    let run = Run {
        hash_cache,
        offline,
    };
    let registry = registry(py)?;
    let (recipe, report) = interruptible(py, threads, move |progress| {
        let opts = run.options(progress);
        weightkin_runner::audit_str(Path::new(STRING_RECIPE), &text, &registry, &opts)
    })?;
    finish(py, report, recipe.formats, out.as_deref())
}

/// `weightkin.inspect`: the model at `path` (file, directory or `hf://` reference; headers
/// only) described as `weightkin inspect --json` prints it.
#[pyfunction]
fn inspect(
    py: Python<'_>,
    path: PathBuf,
    format: Option<String>,
    offline: bool,
) -> PyResult<String> {
    let registry = registry(py)?;
    interruptible(py, None, move |_| {
        let hub = weightkin_runner::hub_from_env(offline);
        let source = weightkin_runner::inspect::open(&path, format.as_deref(), &registry, &hub)?;
        Ok(weightkin_runner::inspect::ModelInfo::of(source.as_ref()).to_json())
    })
}

/// `weightkin.demo`: writes the demo's model family and recipe into `dir` (`weightkin demo
/// --keep DIR` without the audit); returns the recipe's path.
#[pyfunction]
fn demo(py: Python<'_>, dir: PathBuf) -> PyResult<PathBuf> {
    py.detach(|| weightkin_runner::demo::generate(&dir))
        .map_err(|e| raise_chain(py, "WeightkinError", &e, &PyDict::new(py)))
}

/// The tool version (the crate's, as reports record it).
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// How an audit runs, not what its report says (the CLI's `RunArgs`; the thread count is
/// [`interruptible`]'s).
struct Run {
    hash_cache: bool,
    offline: bool,
}

impl Run {
    /// The runner's options for this run, with `progress` as its cancellation hook.
    fn options<'a>(&self, progress: &'a dyn Progress) -> RunOptions<'a> {
        RunOptions::from_env(progress, self.hash_cache, self.offline)
    }
}

/// The CLI's registry: the built-in plugins, then the shared-library plugins that
/// `WEIGHTKIN_PLUGIN_PATH` names.
fn registry(py: Python<'_>) -> PyResult<Registry> {
    let mut registry = weightkin_runner::registry::builtin()
        .map_err(|e| raise_chain(py, "WeightkinError", &e, &PyDict::new(py)))?;
    weightkin_plugin_host::load_all(&mut registry, weightkin_plugin_host::env_paths())
        .map_err(|e| raise(py, &Error::Plugin(e)))?;
    Ok(registry)
}

/// Writes `report` into `out` (if given) in `formats`, as `weightkin audit --out` does.
fn finish(
    py: Python<'_>,
    report: Report,
    formats: Vec<ReportFormat>,
    out: Option<&Path>,
) -> PyResult<NativeReport> {
    if let Some(dir) = out {
        py.detach(|| report.write(dir, &formats))
            .map_err(|e| raise(py, &Error::WriteReport(e)))?;
    }
    Ok(NativeReport { report, formats })
}

fn parse_format(name: &str) -> PyResult<ReportFormat> {
    ReportFormat::parse(name).ok_or_else(|| {
        let known: Vec<&str> = ReportFormat::ALL.iter().map(|f| f.name()).collect();
        PyValueError::new_err(format!(
            "unknown report format {name:?} (known: {})",
            known.join(", ")
        ))
    })
}

/// Stops the runner once set ([`Progress::cancelled`]).
struct Interrupt(AtomicBool);

impl Progress for Interrupt {
    fn cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Runs `work` on a worker thread (on a pool of `threads` threads if given, else rayon's
/// global pool) while this thread waits without the GIL, checking for signals every
/// [`SIGNAL_POLL`]; see the module documentation.
fn interruptible<T, F>(py: Python<'_>, threads: Option<usize>, work: F) -> PyResult<T>
where
    T: Send + 'static,
    F: FnOnce(&dyn Progress) -> Result<T, Error> + Send + 'static,
{
    let pool = match threads {
        Some(0) => return Err(PyValueError::new_err("threads must be at least 1")),
        Some(n) => Some(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| PyValueError::new_err(format!("cannot start {n} threads: {e}")))?,
        ),
        None => None,
    };
    let interrupt = Arc::new(Interrupt(AtomicBool::new(false)));
    let (done, outcome) = mpsc::channel();
    let flag = Arc::clone(&interrupt);
    std::thread::Builder::new()
        .name("weightkin".to_owned())
        .spawn(move || {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| match pool {
                Some(pool) => pool.install(|| work(flag.as_ref())),
                None => work(flag.as_ref()),
            }));
            // The receiver is gone when the call was interrupted: the result is dropped here.
            let _ = done.send(result);
        })
        .map_err(|e| raise_chain(py, "WeightkinError", &e, &PyDict::new(py)))?;
    // `Receiver` is not `Sync`; the mutex lets the waiting closure borrow it without the GIL.
    let outcome = Mutex::new(outcome);
    loop {
        let received = py.detach(|| match outcome.lock() {
            Ok(rx) => rx.recv_timeout(SIGNAL_POLL),
            Err(_) => Err(RecvTimeoutError::Disconnected),
        });
        match received {
            Ok(Ok(Ok(value))) => return Ok(value),
            Ok(Ok(Err(e))) => return Err(raise(py, &e)),
            Ok(Err(panic)) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let e = Error::Internal("weightkin panicked");
                return Err(
                    raise_chain(py, "WeightkinError", &e, &PyDict::new(py)).and_note(py, &what)
                );
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                let e = Error::Internal("the worker thread ended without a result");
                return Err(raise_chain(py, "WeightkinError", &e, &PyDict::new(py)));
            }
        }
        if let Err(signal) = py.check_signals() {
            // The handler's exception (KeyboardInterrupt); the worker stops at its next
            // checkpoint.
            interrupt.0.store(true, Ordering::Relaxed);
            return Err(signal);
        }
    }
}

/// Adds a note (`BaseException.add_note`, Python 3.11+) to an error when there is one to add.
trait AndNote {
    fn and_note(self, py: Python<'_>, note: &str) -> Self;
}

impl AndNote for PyErr {
    fn and_note(self, py: Python<'_>, note: &str) -> PyErr {
        if !note.is_empty() {
            let _ = self.value(py).call_method1("add_note", (note,));
        }
        self
    }
}

/// The Python exception for a runner error: its class in the `WeightkinError` hierarchy and
/// the attributes that class carries.
fn raise(py: Python<'_>, e: &Error) -> PyErr {
    let kwargs = PyDict::new(py);
    let set = |key: &str, value: Option<String>| {
        let _ = kwargs.set_item(key, value);
    };
    let model_file = |model: Option<&str>, source: &weightkin_core::Error| -> &'static str {
        set("model", model.map(str::to_owned));
        set("file", source.file_path().map(|p| p.display().to_string()));
        set("tensor", source.tensor_name().map(str::to_owned));
        match source {
            weightkin_core::Error::Io { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                "ModelNotFoundError"
            }
            _ => "ModelFileError",
        }
    };
    let class = match e {
        Error::Cancelled => return PyKeyboardInterrupt::new_err(e.to_string()),
        Error::Recipe(r) => {
            let diagnostics: Vec<(usize, usize, &str)> = r
                .diagnostics
                .iter()
                .map(|d| (d.line, d.column, d.message.as_str()))
                .collect();
            let _ = kwargs.set_item("diagnostics", diagnostics);
            set("path", Some(r.path.display().to_string()));
            "RecipeError"
        }
        Error::ReadRecipe { path, .. } => {
            set("path", Some(path.display().to_string()));
            "RecipeError"
        }
        Error::OpenModel { model, source, .. } | Error::Views { model, source } => {
            model_file(Some(model), source)
        }
        Error::Open { source, .. } => model_file(None, source),
        Error::Measure { tensor, source, .. } => {
            let class = model_file(None, source);
            if source.tensor_name().is_none() {
                set("tensor", Some(tensor.clone()));
            }
            class
        }
        Error::Align { tensor, .. } => {
            set("tensor", Some(tensor.clone()));
            "ModelFileError"
        }
        Error::ModelFile { path, .. } => {
            set("file", Some(path.display().to_string()));
            "ModelFileError"
        }
        Error::Changed { model, path, .. } => {
            set("model", Some(model.clone()));
            set("file", Some(path.display().to_string()));
            "ModelChangedError"
        }
        Error::Hub { model, .. } | Error::Fetch { model, .. } => {
            set("model", Some(model.clone()));
            "HubError"
        }
        Error::Locate { .. } => "HubError",
        _ => "WeightkinError",
    };
    raise_chain(py, class, e, &kwargs)
}

/// An instance of `weightkin._errors.<class>` made from `e`'s message chain (the CLI's
/// `error:` line, then one `caused by:` per source) and `kwargs`.
fn raise_chain(
    py: Python<'_>,
    class: &str,
    e: &(dyn std::error::Error + 'static),
    kwargs: &Bound<'_, PyDict>,
) -> PyErr {
    let mut messages = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        messages.push(c.to_string());
        cause = c.source();
    }
    let made = py
        .import("weightkin._errors")
        .and_then(|m| m.getattr(class))
        .and_then(|cls| {
            let args = PyTuple::new(py, [PyList::new(py, &messages)?])?;
            cls.call(args, Some(kwargs))
        });
    match made {
        Ok(value) => PyErr::from_value(value),
        // The package is broken (its Python half missing): say so, with the message.
        Err(err) => err.and_note(py, &messages.join("\n  caused by: ")),
    }
}

/// The native module; `weightkin/__init__.py` is the API.
#[pymodule]
mod _weightkin {
    #[pymodule_export]
    use super::lineage::{audit_refs, sketch_store, LineageIndex};
    #[pymodule_export]
    use super::{audit_file, audit_text, compare, demo, inspect, version, NativeReport};
}
