//! The lineage crate's one error type: every variant names the file, model or pair it is
//! about.

use std::path::PathBuf;

/// What can go wrong in the sketch store, the search, the audits and the graph.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{}: cannot {action}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was attempted.
        action: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A Parquet file could not be read or written (truncated, not Parquet, corrupt).
    #[error("{}: not a readable sketch store (Parquet)", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The file is Parquet, but not a sketch store this version reads.
    #[error("{}: {problem}", path.display())]
    Schema {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: SchemaProblem,
    },
    /// Two sketches in the stores read have the same model name.
    #[error("model `{model}` is sketched twice: in {} and {}", first.display(), second.display())]
    DuplicateModel {
        /// The model.
        model: String,
        /// Where it was first read.
        first: PathBuf,
        /// Where it was read again.
        second: PathBuf,
    },
    /// Sketching a model failed.
    #[error("cannot sketch {path}")]
    Sketch {
        /// The model's path.
        path: String,
        /// Why.
        #[source]
        source: Box<weightkin_runner::Error>,
    },
    /// Sketches taken with different settings cannot be compared.
    #[error(
        "sketches of `{first}` and `{second}` were taken with different settings (seed or samples per tensor); sketch them again with the same ones"
    )]
    Incompatible {
        /// A model.
        first: String,
        /// Another.
        second: String,
    },
    /// A model index outside the sketches.
    #[error("model index {index} is out of range: the sketches hold {models} models")]
    NoSuchModel {
        /// The index asked for.
        index: usize,
        /// How many models there are.
        models: usize,
    },
    /// The exact audit of a candidate pair failed.
    #[error("cannot audit candidate pair `{a}` / `{b}`")]
    Audit {
        /// Model A.
        a: String,
        /// Model B.
        b: String,
        /// Why.
        #[source]
        source: Box<weightkin_runner::Error>,
    },
    /// A model's files are not the ones its sketch records.
    #[error(
        "model `{model}`: {file} is not the file that was sketched (BLAKE3 {now}, the sketch records {sketched}); sketch it again"
    )]
    Changed {
        /// The model.
        model: String,
        /// The file (relative to the model's path).
        file: String,
        /// Its hash now.
        now: String,
        /// The hash in the sketch.
        sketched: String,
    },
    /// A simulated hub's manifest is malformed.
    #[error("{}: not a simulated hub manifest", path.display())]
    Manifest {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// How a Parquet file fails to be a sketch store.
#[derive(Debug, thiserror::Error)]
pub enum SchemaProblem {
    /// No `weightkin.sketch.schema_version` key: not written by `weightkin sketch`.
    #[error("no `weightkin.sketch.schema_version` metadata: not a weightkin sketch store")]
    NotASketch,
    /// Another schema version.
    #[error(
        "sketch schema version {found}, this weightkin reads version {expected}: sketch the models again with this version"
    )]
    Version {
        /// What the file says.
        found: String,
        /// What this version reads.
        expected: u32,
    },
    /// A column is missing or has another type.
    #[error("column `{column}` is missing or is not {expected}")]
    Column {
        /// The column.
        column: &'static str,
        /// Its expected Arrow type.
        expected: &'static str,
    },
    /// A value is out of range or inconsistent.
    #[error("row {row} (model `{model}`): {what}")]
    Value {
        /// Row in the file.
        row: usize,
        /// The row's model.
        model: String,
        /// What is wrong.
        what: String,
    },
}
