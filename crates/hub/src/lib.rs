//! `weightkin-hub`: models named `hf://org/name[@revision][/subpath]`, read from the local
//! Hugging Face cache or, byte range by byte range, from the hub itself.
//!
//! The provenance disputes weightkin serves are about hub models of tens of gigabytes where
//! the question concerns one component (a 1 GB vision tower of a 65 GB checkpoint). So a
//! remote model is never downloaded whole: [`Hub::locate`] fetches the headers (a
//! safetensors file's 8-byte length and JSON, a shard index, a GGUF header) into a sparse
//! local copy the ordinary format readers open, and [`Located::wrap`] returns a
//! [`weightkin_core::WeightSource`] that fetches a tensor's bytes — coalesced, in parallel,
//! with retries and resume — only when the audit prefetches or reads it.
//!
//! # Where a reference resolves (in order)
//!
//! 1. The Hugging Face cache ([`hfcache`]), when its snapshot holds the weights: no network.
//! 2. The fetched-bytes store ([`store`]): what earlier runs fetched; the revision's commit
//!    is looked up again on the hub unless the network is off or the revision is a commit.
//! 3. The hub at `HF_ENDPOINT` ([`http`]), unless [`HubOptions::offline`] or
//!    `HF_HUB_OFFLINE` is set, which is an [`Error::Offline`] naming what the caches lack.
//!
//! # Provenance
//!
//! A partially fetched file has no whole-file hash. [`Handle::provenance`] says what does
//! identify the bytes audited: the repository, the resolved commit, each file's size and the
//! hub's SHA-256 (its LFS object id), the whole file's BLAKE3 once every byte is present (and
//! the SHA-256 then verified), and otherwise the BLAKE3 of each tensor the audit read.
//!
//! # Trust
//!
//! Everything from the network is untrusted ([`http`]); the token goes only to the
//! endpoint's origin and is never printed ([`env::Token`]).

pub mod env;
mod error;
mod gguf;
pub mod hfcache;
pub mod http;
pub mod reference;
mod remote;
mod source;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use env::{HubEnv, Token};
pub use error::{Error, Result};
pub use http::{Retry, Warning, WarningSink};
pub use reference::HfRef;
pub use remote::{Hub, HubOptions, Located};
pub use source::{FileProvenance, Handle, Origin, Provenance};
