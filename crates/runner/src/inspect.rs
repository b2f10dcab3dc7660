//! One model described by its path alone: `weightkin inspect` and the Python package's
//! `weightkin.inspect`. Only headers are read (for an `hf://` model, only headers are
//! fetched); no recipe, no report.
//!
//! Both fronts open the model with [`open`] and describe it with [`ModelInfo`], so that the
//! CLI's `inspect --json` and Python's `ModelInfo.to_dict()` are the same object.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use weightkin_core::{Limits, Registry, TensorInfo, Transform, WeightSource};
use weightkin_hub::{HfRef, Hub};

use crate::Error;

/// What `inspect` shows of a model: its format, files, metadata, transforms and tensors.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// The format that opened it.
    pub format: &'static str,
    /// Its files.
    pub files: Vec<FileInfo>,
    /// Total elements over all tensors.
    pub parameters: u64,
    /// The format's metadata (GGUF key/values, safetensors `__metadata__`, …).
    pub metadata: BTreeMap<String, String>,
    /// What the format did to present the tensors.
    pub transforms: Vec<Transform>,
    /// Every tensor, in the source's order.
    pub tensors: Vec<TensorInfo>,
}

/// One file of a model.
#[derive(Debug, Clone, Serialize)]
pub struct FileInfo {
    /// Its path (as opened; for an `hf://` model, where its header was stored locally).
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
}

impl ModelInfo {
    /// Describes `source`.
    pub fn of(source: &dyn WeightSource) -> ModelInfo {
        ModelInfo {
            format: source.format(),
            files: source
                .files()
                .iter()
                .map(|f| FileInfo {
                    path: f.path.to_string_lossy().into_owned(),
                    bytes: f.size,
                })
                .collect(),
            parameters: source.tensors().iter().map(|t| t.numel as u64).sum(),
            metadata: source.metadata().clone(),
            transforms: source.transforms().to_vec(),
            tensors: source.tensors().to_vec(),
        }
    }

    /// Pretty-printed JSON with a trailing newline (`weightkin inspect --json`).
    pub fn to_json(&self) -> String {
        // Plain structs, strings and integers: serialising cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

/// Opens `model` — a file, a directory or an `hf://org/name[@revision][/subpath]` reference
/// (located through `hub`, headers only) — with `format` if given, else the format its
/// bytes name.
pub fn open(
    model: &Path,
    format: Option<&str>,
    registry: &Registry,
    hub: &Hub,
) -> Result<Box<dyn WeightSource>, Error> {
    let given = model.display().to_string();
    let open = |path: &Path| {
        registry
            .open(path, format, &Limits::default())
            .map_err(|source| Error::Open {
                path: given.clone(),
                source: Box::new(source),
            })
    };
    match model.to_str().filter(|m| HfRef::is_hf(m)) {
        Some(text) => {
            let located = HfRef::parse(text)
                .and_then(|r| hub.locate(&r))
                .map_err(|source| Error::Locate {
                    path: given.clone(),
                    source: Box::new(source),
                })?;
            open(&located.path)
        }
        None => open(model),
    }
}
