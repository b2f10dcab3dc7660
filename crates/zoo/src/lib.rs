//! `weightkin-zoo`: a reproducible zoo of small, really trained models with known lineage.
//!
//! weightkin's verdicts rest on a null — what unrelated weights look like — that was measured
//! on Gaussian draws. Trained weights share structure that draws do not (smooth kernels,
//! token-frequency structure, norm-weight profiles), so the null must also be checked on
//! trained models whose lineage is known. This crate trains such a zoo offline, with candle on
//! the CPU, deterministically, and writes a manifest recording every model's parents and
//! transform ([`manifest`]); [`validate`] then runs weightkin's real comparison on unrelated
//! and derived pairs and tabulates false positives and power.
//!
//! Layout: [`rng`] (seeded streams), [`data`] (generated training data), [`nn`] (training),
//! [`arch`] (Llama, ResNet and MLP models), [`weights`] (tensors and safetensors files),
//! [`plan`] (which models the zoo holds and how each is made), [`build`] (training and
//! writing them, with the cache check), [`manifest`] (the JSON truth file), [`validate`],
//! [`rename`] (hiding B's tensor names, to validate automatic pairing), [`scramble`]
//! (function-preserving permutations of B, to validate alignment).

pub mod arch;
pub mod build;
pub mod data;
pub mod manifest;
pub mod nn;
pub mod plan;
pub mod rename;
pub mod rng;
pub mod scramble;
pub mod validate;
pub mod weights;

use std::path::PathBuf;

/// The generator's version: part of the cache path, and bumped whenever any model's bytes
/// could change (data, architecture, schedule, plan or file layout).
pub const GENERATOR_VERSION: &str = "1";

/// Errors of the zoo.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A candle operation failed while training.
    #[error("training failed")]
    Candle(#[from] candle_core::Error),
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A safetensors file could not be encoded or decoded.
    #[error("safetensors: {what}")]
    Safetensors {
        /// The model or file.
        what: String,
        /// Why.
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// A model file holds a dtype the zoo never writes.
    #[error("{}: tensor `{tensor}` has dtype {dtype}, not one the zoo writes", path.display())]
    UnexpectedDtype {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its dtype.
        dtype: String,
    },
    /// The manifest is not valid JSON of the documented schema.
    #[error("manifest {} is invalid", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The manifest was written by another generator version.
    #[error("manifest {} is from generator version {found}, this is version {expected}", path.display())]
    ManifestVersion {
        /// The manifest file.
        path: PathBuf,
        /// Its version.
        found: String,
        /// This generator's version.
        expected: &'static str,
    },
    /// A model file's hash does not match the manifest.
    #[error("model {model}: {} has BLAKE3 {found}, the manifest says {expected}", path.display())]
    HashMismatch {
        /// The model.
        model: String,
        /// Its file.
        path: PathBuf,
        /// Hash in the manifest.
        expected: String,
        /// Hash of the file.
        found: String,
    },
    /// A model the manifest lists has no file.
    #[error("model {model}: {} is missing", path.display())]
    MissingFile {
        /// The model.
        model: String,
        /// Its file.
        path: PathBuf,
    },
    /// A plan entry names a parent that is not planned before it (a bug in [`plan`]).
    #[error("model {model}: parent {parent} is not built before it")]
    MissingParent {
        /// The model.
        model: String,
        /// The parent.
        parent: String,
    },
    /// weightkin could not run a comparison.
    #[error("comparing {a} with {b}")]
    Compare {
        /// Model A.
        a: String,
        /// Model B.
        b: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// weightkin's JSON report lacks a field the validation reads.
    #[error("weightkin's report has no `{field}` (schema changed?)")]
    ReportField {
        /// The JSON path.
        field: &'static str,
    },
    /// A model could not be scrambled (a tensor is missing or not of the configured shape).
    #[error("model {model}: cannot scramble `{tensor}`: {reason}")]
    Scramble {
        /// The model.
        model: String,
        /// The tensor.
        tensor: String,
        /// Why.
        reason: String,
    },
    /// The thread pool could not be built.
    #[error("cannot start {threads} worker threads")]
    ThreadPool {
        /// Threads asked for.
        threads: usize,
        /// Why.
        #[source]
        source: rayon::ThreadPoolBuildError,
    },
}
