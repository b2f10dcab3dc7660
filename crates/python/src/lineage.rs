//! The native half of `weightkin.lineage` (issue 21): sketches written to the Parquet store,
//! the candidate search, one candidate's audit, and the lineage graph — each a call into
//! `weightkin-lineage`, so that the Python half can spread the per-model and per-pair steps
//! over Ray tasks. Nothing here decides anything the CLI's `weightkin sketch` / `weightkin
//! lineage` would decide differently: the same functions run in the same order.
//!
//! A Ray task gets plain values (paths, JSON strings), never a native object: tasks may run
//! in other processes or on other machines.

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use weightkin_lineage::graph::{self, Audited};
use weightkin_lineage::search::{self, Search, SearchOptions};
use weightkin_lineage::store;
use weightkin_runner::report::Verdict;
use weightkin_runner::sketch::{Sketch, SketchFile, SketchOptions, SKETCH_VERSION};

use crate::{interruptible, raise_chain, registry, Run};

/// A lineage error as a `WeightkinError`, with the CLI's message chain.
fn raise(py: Python<'_>, e: &weightkin_lineage::Error) -> PyErr {
    raise_chain(py, "WeightkinError", e, &PyDict::new(py))
}

/// Sketches each of `paths` (one streaming pass each) and writes the sketches, in the order
/// given, into the Parquet file `out` (one shard of a store); returns how many were written.
#[pyfunction]
#[pyo3(signature = (paths, out, samples=None, seed=None, threads=None, hash_cache=true, offline=false))]
#[allow(clippy::too_many_arguments)] // Python keyword arguments, passed through one by one.
pub fn sketch_store(
    py: Python<'_>,
    paths: Vec<String>,
    out: PathBuf,
    samples: Option<usize>,
    seed: Option<u64>,
    threads: Option<usize>,
    hash_cache: bool,
    offline: bool,
) -> PyResult<usize> {
    let mut opts = SketchOptions::default();
    if let Some(k) = samples {
        if k == 0 {
            return Err(PyValueError::new_err("samples must be at least 1"));
        }
        opts.samples = k;
    }
    if let Some(s) = seed {
        opts.seed = s;
    }
    let registry = registry(py)?;
    let run = Run {
        hash_cache,
        offline,
    };
    let written = interruptible(py, threads, move |progress| {
        let sketched =
            weightkin_lineage::sketch_paths(&paths, &registry, &opts, &run.options(progress));
        Ok(sketched.and_then(|s| store::write_parquet(&s, &out).map(|()| s.len())))
    })?;
    written.map_err(|e| raise(py, &e))
}

/// A sketch store read once in the driver: the candidate search, the references an audit task
/// needs, and the graph from the audits' results.
#[pyclass(frozen, module = "weightkin._weightkin")]
pub struct LineageIndex {
    sketches: Vec<Sketch>,
    search: Mutex<Option<Search>>,
}

#[pymethods]
impl LineageIndex {
    /// Reads the store at `path`: a Parquet file or a directory of Parquet shards.
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<LineageIndex> {
        let sketches = py
            .detach(|| store::read_store(&path))
            .map_err(|e| raise(py, &e))?;
        Ok(LineageIndex {
            sketches,
            search: Mutex::new(None),
        })
    }

    /// Models in the store.
    fn __len__(&self) -> usize {
        self.sketches.len()
    }

    /// (name, path) of every model, in store order.
    fn models(&self) -> Vec<(String, String)> {
        self.sketches
            .iter()
            .map(|s| (s.model.clone(), s.path.clone()))
            .collect()
    }

    /// Runs the candidate search (blocked by architecture, with the search's null; `alpha` is
    /// its family-wise rate) and keeps it for [`Self::graph`]; returns the search as JSON:
    /// `candidates` (indices `a`, `b` into the store, `z`, `component`, ...) and `stats`.
    #[pyo3(signature = (alpha=None))]
    fn search(&self, py: Python<'_>, alpha: Option<f64>) -> PyResult<String> {
        let mut opts = SearchOptions::default();
        if let Some(a) = alpha {
            if !(a > 0.0 && a < 1.0) {
                return Err(PyValueError::new_err(format!(
                    "alpha must be in (0, 1), not {a}"
                )));
            }
            opts.alpha = a;
        }
        let found = py
            .detach(|| search::search(&self.sketches, &opts))
            .map_err(|e| raise(py, &e))?;
        let json = serde_json::to_string(&found)
            .map_err(|e| PyValueError::new_err(format!("search as JSON: {e}")))?;
        *self
            .search
            .lock()
            .map_err(|_| PyValueError::new_err("a search panicked"))? = Some(found);
        Ok(json)
    }

    /// What an audit task needs of model `i` (name, path, files and their BLAKE3), as JSON
    /// for [`audit_refs`].
    fn audit_ref(&self, i: usize) -> PyResult<String> {
        let s = self
            .sketches
            .get(i)
            .ok_or_else(|| PyValueError::new_err(format!("no model {i} in the store")))?;
        let files: Vec<serde_json::Value> = s
            .files
            .iter()
            .map(|f| serde_json::json!({"path": f.path, "bytes": f.bytes, "blake3": f.blake3}))
            .collect();
        Ok(serde_json::json!({"model": s.model, "path": s.path, "files": files}).to_string())
    }

    /// The lineage graph from the kept search and the audits' results (`(a, b, verdict,
    /// pearson, sentence)` per candidate, from [`audit_refs`]); writes graph.json and
    /// graph.html into `out` if given; returns graph.json's text.
    #[pyo3(signature = (audited, out=None))]
    fn graph(
        &self,
        py: Python<'_>,
        audited: Vec<(usize, usize, String, Option<f64>, String)>,
        out: Option<PathBuf>,
    ) -> PyResult<String> {
        let guard = self
            .search
            .lock()
            .map_err(|_| PyValueError::new_err("a search panicked"))?;
        let found = guard
            .as_ref()
            .ok_or_else(|| PyValueError::new_err("graph() needs search() first"))?;
        let mut rows = Vec::with_capacity(audited.len());
        for (a, b, verdict, pearson, sentence) in audited {
            let verdict = Verdict::parse(&verdict)
                .ok_or_else(|| PyValueError::new_err(format!("unknown verdict {verdict:?}")))?;
            if a >= self.sketches.len() || b >= self.sketches.len() {
                return Err(PyValueError::new_err(format!(
                    "audit of models {a} and {b}: the store holds {}",
                    self.sketches.len()
                )));
            }
            rows.push(Audited {
                a,
                b,
                verdict,
                pearson,
                sentence,
            });
        }
        let g = graph::graph(&self.sketches, found, &rows);
        if let Some(dir) = out {
            py.detach(|| g.write(&dir)).map_err(|e| raise(py, &e))?;
        }
        Ok(g.to_json())
    }
}

/// A model reference from [`LineageIndex::audit_ref`] as the sketch an audit reads (its name,
/// path and files; no tensors).
fn sketch_ref(json: &str) -> PyResult<Sketch> {
    let bad = |what: &str| PyValueError::new_err(format!("audit reference: {what}"));
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| bad(&format!("not JSON ({e})")))?;
    let text = |key: &str| {
        v.get(key)
            .and_then(|x| x.as_str())
            .map(str::to_owned)
            .ok_or_else(|| bad(&format!("no string `{key}`")))
    };
    let mut files = Vec::new();
    for f in v
        .get("files")
        .and_then(|f| f.as_array())
        .ok_or_else(|| bad("no list `files`"))?
    {
        let field = |key: &str| {
            f.get(key)
                .ok_or_else(|| bad(&format!("a file has no `{key}`")))
        };
        files.push(SketchFile {
            path: field("path")?.as_str().unwrap_or_default().to_owned(),
            bytes: field("bytes")?.as_u64().unwrap_or_default(),
            blake3: field("blake3")?.as_str().unwrap_or_default().to_owned(),
        });
    }
    Ok(Sketch {
        version: SKETCH_VERSION,
        model: text("model")?,
        path: text("path")?,
        format: String::new(),
        parameters: 0,
        dtype: String::new(),
        bits: 0.0,
        arch_key: String::new(),
        seed: 0,
        samples: 0,
        files,
        tensors: Vec::new(),
    })
}

/// Audits the candidate pair `a`, `b` (references from [`LineageIndex::audit_ref`]) exactly
/// as `weightkin compare` does, after checking each file's BLAKE3 against the sketch's;
/// returns `(verdict, pearson, sentence)` for [`LineageIndex::graph`].
#[pyfunction]
#[pyo3(signature = (a, b, threads=None, hash_cache=true, offline=false))]
pub fn audit_refs(
    py: Python<'_>,
    a: String,
    b: String,
    threads: Option<usize>,
    hash_cache: bool,
    offline: bool,
) -> PyResult<(String, Option<f64>, String)> {
    let pair = [sketch_ref(&a)?, sketch_ref(&b)?];
    let registry = registry(py)?;
    let run = Run {
        hash_cache,
        offline,
    };
    let audited = interruptible(py, threads, move |progress| {
        Ok(graph::audit_pair(
            &pair,
            0,
            1,
            &registry,
            &run.options(progress),
        ))
    })?
    .map_err(|e| raise(py, &e))?;
    Ok((
        audited.verdict.name().to_owned(),
        audited.pearson,
        audited.sentence,
    ))
}
