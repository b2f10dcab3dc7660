//! The hub crate's one error type. No variant ever holds the access token: errors name the
//! reference, the URL (which never carries it: the token travels only in a header) and what
//! was expected.

use std::path::PathBuf;

/// Errors from resolving an `hf://` reference, talking to the hub, or the fetched-bytes store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not a valid `hf://org/name[@revision][/subpath]` reference.
    #[error("`{text}` is not a valid hf:// reference: {problem}")]
    BadReference {
        /// The text as given.
        text: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The network is off (`--offline` or `HF_HUB_OFFLINE`) and the caches do not hold what
    /// is needed.
    #[error(
        "{reference}: offline, and {missing} (looked in: {searched}); run once without \
         --offline / HF_HUB_OFFLINE to fetch it"
    )]
    Offline {
        /// The reference.
        reference: String,
        /// What the caches lack.
        missing: String,
        /// The directories searched.
        searched: String,
    },
    /// The hub refused access: a gated or private repository.
    #[error(
        "{url}: HTTP {status}: the repository is gated or private{hint}",
        hint = if *with_token {
            "; the token given has no access to it (accept its terms on the hub, or use a \
             token of an account that has)"
        } else {
            "; set HF_TOKEN to an access token (or log in with `hf auth login`), after \
             accepting the repository's terms on the hub"
        }
    )]
    Unauthorized {
        /// The URL asked for.
        url: String,
        /// 401 or 403.
        status: u16,
        /// Whether a token was sent.
        with_token: bool,
    },
    /// The hub has no such repository, revision or file.
    #[error("{url}: not found (HTTP 404): no such repository, revision or file")]
    NotFound {
        /// The URL asked for.
        url: String,
    },
    /// The server answered with a status weightkin does not accept.
    #[error("{url}: unexpected HTTP status {status}")]
    Status {
        /// The URL asked for.
        url: String,
        /// The status.
        status: u16,
    },
    /// The request failed at the transport level, after every retry.
    #[error("{url}: request failed after {attempts} attempt(s)")]
    Transport {
        /// The URL asked for.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A response does not fit what was asked or what the hub said before (a wrong
    /// `Content-Range`, a size that changed, a body that is too large or not JSON, a
    /// redirect without a location, too many redirects).
    #[error("{url}: bad response: {problem}")]
    BadResponse {
        /// The URL asked for.
        url: String,
        /// What is wrong.
        problem: String,
    },
    /// A whole fetched file does not have the SHA-256 the hub lists for it.
    #[error("{file}: fetched bytes have SHA-256 {actual}, but the hub lists {expected}")]
    HashMismatch {
        /// The repository file.
        file: String,
        /// What the hub said.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// The repository holds no weights weightkin can pick without being told which.
    #[error("{reference}: {problem}")]
    NoWeights {
        /// The reference.
        reference: String,
        /// What was found instead.
        problem: String,
    },
    /// A file or directory of the caches could not be read or written.
    #[error("{}: cannot {action}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A read asked for bytes of a file that were never fetched (and the network is off).
    #[error(
        "{file}: bytes {start}..{end} are not in the fetched-bytes cache, and the network is off"
    )]
    NotFetched {
        /// The repository file.
        file: String,
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// No directory is available for the fetched-bytes cache (no `$WEIGHTKIN_CACHE_DIR`,
    /// `$XDG_CACHE_HOME` or `$HOME`), or the one found is not safe to trust.
    #[error("no usable directory for fetched hub bytes: {0}")]
    NoStore(&'static str),
    /// A broken invariant inside weightkin (a bug, not bad input).
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(path: &std::path::Path, action: &'static str, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_owned(),
        action,
        source,
    }
}
