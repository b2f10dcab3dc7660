//! The runner's error: every way an audit can fail, each naming what it was working on.

use std::path::PathBuf;

use crate::recipe::RecipeError;
use crate::report::WriteError;

/// Errors from running an audit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The recipe file could not be read.
    #[error("cannot read recipe {}", path.display())]
    ReadRecipe {
        /// The recipe path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The recipe is invalid; the error lists every problem.
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    /// A model could not be opened.
    #[error("cannot open model `{model}` ({path})")]
    OpenModel {
        /// Model name in the recipe.
        model: String,
        /// Its path as written.
        path: String,
        /// Why.
        #[source]
        source: Box<weightkin_core::Error>,
    },
    /// An `hf://` model could not be located, or its provenance not recorded.
    #[error("cannot open model `{model}` ({path})")]
    Hub {
        /// Model name in the recipe.
        model: String,
        /// Its path as written.
        path: String,
        /// Why.
        #[source]
        source: Box<weightkin_hub::Error>,
    },
    /// The tensors a comparison pairs could not be fetched from the hub.
    #[error("comparison `{compare}`: cannot fetch the paired tensors of model `{model}`")]
    Fetch {
        /// The comparison.
        compare: String,
        /// The model.
        model: String,
        /// Why.
        #[source]
        source: Box<weightkin_core::Error>,
    },
    /// Rename rules mapped two tensors of one model to the same name.
    #[error(
        "model `{model}`: rename rules map both `{first}` and `{second}` to `{renamed}`; \
         make the rules more specific"
    )]
    RenameCollision {
        /// Model name.
        model: String,
        /// The name both became.
        renamed: String,
        /// First original name.
        first: String,
        /// Second original name.
        second: String,
    },
    /// Presenting a model's tensors as views (fused parts, transposes) failed.
    #[error("model `{model}`: could not present its tensors for pairing")]
    Views {
        /// Model name.
        model: String,
        /// Why.
        #[source]
        source: Box<weightkin_core::Error>,
    },
    /// Reading or converting tensor data failed during a comparison.
    #[error("comparison `{compare}`: tensor `{tensor}`")]
    Measure {
        /// The comparison.
        compare: String,
        /// The (renamed) tensor.
        tensor: String,
        /// Why.
        #[source]
        source: Box<weightkin_core::Error>,
    },
    /// The assignment that aligns hidden units failed (a non-finite similarity: the
    /// tensors hold NaN or infinite values).
    #[error("comparison `{compare}`: cannot align the hidden units of `{tensor}`")]
    Align {
        /// The comparison.
        compare: String,
        /// A tensor of the layer.
        tensor: String,
        /// Why.
        #[source]
        source: weightkin_core::lap::LapError,
    },
    /// A file beside a model's weights (`tokenizer.json`, `vocab.txt`, `config.json`) or its
    /// tokenizer or head counts in GGUF metadata are malformed ([`crate::align::vocab`],
    /// [`crate::align::facts`]).
    #[error("{}", path.display())]
    ModelFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        problem: FileProblem,
    },
    /// A report file could not be written.
    #[error(transparent)]
    WriteReport(#[from] WriteError),
    /// A shared-library plugin could not be loaded ([`weightkin_plugin_host::load`]); the
    /// host's error names the library and says why.
    #[error(transparent)]
    Plugin(#[from] weightkin_plugin_host::Error),
    /// A model file changed while the audit read it: the audit is void
    /// ([`crate::open::stamp`]).
    #[error(
        "model `{model}`: {} changed while being read ({change}); no report was written over \
         mixed bytes: run the audit again once the file is complete",
        path.display()
    )]
    Changed {
        /// Model name in the recipe.
        model: String,
        /// The file.
        path: PathBuf,
        /// What changed.
        change: Change,
    },
    /// `weightkin verify` could not be completed for this report ([`crate::verify`]).
    #[error("cannot verify report {}", report.display())]
    Verify {
        /// The report.
        report: PathBuf,
        /// Why.
        #[source]
        problem: VerifyProblem,
    },
    /// The front end asked the audit to stop ([`crate::Progress::cancelled`]): no report.
    #[error("the audit was cancelled")]
    Cancelled,
    /// A model named by its path alone (`weightkin inspect`) could not be opened.
    #[error("cannot open {path}")]
    Open {
        /// The path (or `hf://` reference) as given.
        path: String,
        /// Why.
        #[source]
        source: Box<weightkin_core::Error>,
    },
    /// An `hf://` model named by its reference alone (`weightkin inspect`) could not be
    /// located.
    #[error("cannot open {path}")]
    Locate {
        /// The reference as given.
        path: String,
        /// Why.
        #[source]
        source: Box<weightkin_hub::Error>,
    },
    /// A broken invariant inside weightkin (a bug, not bad input).
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// What is wrong with a file beside the weights ([`crate::align::beside`]), or with the
/// tokenizer or head counts in a model's own metadata.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileProblem {
    /// The file exists but could not be read.
    #[error("cannot read it")]
    Read(#[source] std::io::Error),
    /// The file is larger than [`crate::align::beside::MAX_FILE_BYTES`].
    #[error("it is {size} bytes, more than the {limit} read")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// The file is not UTF-8 text.
    #[error("it is not UTF-8 text")]
    NotUtf8,
    /// The file is not valid JSON (truncated, for instance), or not of the expected shape.
    #[error("not the JSON expected")]
    Json(#[source] serde_json::Error),
    /// A value is missing or of the wrong kind.
    #[error("`{key}`: expected {expected}")]
    BadValue {
        /// The key (a JSON path or a metadata key).
        key: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A token's id is too large to be a row of an embedding.
    #[error("token {token:?} has id {id}, beyond the {limit} rows accepted")]
    IdOutOfRange {
        /// The token.
        token: String,
        /// Its id.
        id: u64,
        /// The bound.
        limit: u64,
    },
    /// Two different tokens claim the same id.
    #[error("id {id} is given to both {first:?} and {second:?}")]
    DuplicateId {
        /// The id.
        id: u64,
        /// The first token with it.
        first: String,
        /// The second.
        second: String,
    },
    /// One token is listed twice in one map (JSON allows it; a vocabulary cannot mean it).
    #[error("token {token:?} is listed twice in `{key}`")]
    DuplicateToken {
        /// The map.
        key: String,
        /// The token.
        token: String,
    },
    /// The file has more tokens than a vocabulary is allowed to have.
    #[error("it lists more than {limit} tokens")]
    TooManyTokens {
        /// The bound.
        limit: u64,
    },
    /// Head counts that cannot describe an attention layer.
    #[error(
        "{heads} attention heads and {kv_heads} key/value heads: key/value heads must be at \
         least 1 and divide the attention heads"
    )]
    InconsistentHeads {
        /// Query heads.
        heads: u64,
        /// Key/value heads.
        kv_heads: u64,
    },
}

/// What changed about a model file while the audit read it ([`crate::open::stamp`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Change {
    /// Its size changed.
    #[error("its size went from {before} to {after} bytes")]
    Size {
        /// Bytes when opened.
        before: u64,
        /// Bytes at the end.
        after: u64,
    },
    /// Another file now has its name (replaced, e.g. renamed over).
    #[error("it was replaced by another file")]
    Replaced,
    /// Its contents were rewritten (modification or status-change time moved).
    #[error("it was written to")]
    Modified,
    /// It cannot be found or read any more.
    #[error("it is gone")]
    Gone,
    /// A read faulted: the file was shorter than its mapping (truncated while mapped).
    #[error(
        "a read at offset {offset} faulted: the file is now shorter than when it was opened, \
         or its disk failed"
    )]
    Fault {
        /// The offset of the first faulting read.
        offset: u64,
    },
}

/// Why a report could not be verified at all, the command not completed ([`crate::verify`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyProblem {
    /// The report could not be read.
    #[error("cannot read it")]
    Read(#[source] std::io::Error),
    /// The report is not JSON.
    #[error("it is not JSON")]
    Json(#[source] serde_json::Error),
    /// A field verify needs is missing or of the wrong kind.
    #[error("`{field}`: expected {expected}")]
    Field {
        /// The field (a dotted path).
        field: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A local model's path does not exist under any directory tried.
    #[error(
        "model `{model}` ({path}) is not found relative to {}; pass --base DIR, the directory \
         the recipe's relative paths are relative to",
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" or ")
    )]
    ModelNotFound {
        /// The model.
        model: String,
        /// Its path as written.
        path: String,
        /// The directories tried.
        tried: Vec<PathBuf>,
    },
    /// A model file the report lists is missing or unreadable.
    #[error("model `{model}`: cannot read its file {}", path.display())]
    File {
        /// The model.
        model: String,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The report names a model the embedded recipe does not declare.
    #[error("the report lists model `{0}`, which its embedded recipe does not declare")]
    UnknownModel(String),
}
