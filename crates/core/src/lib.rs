//! `weightkin-core`: the data model every other weightkin crate builds on.
//!
//! weightkin audits whether one model's weights were derived from another's. This crate holds
//! what every part of that needs and nothing else: tensor metadata ([`TensorInfo`],
//! [`Dtype`]), the traits a file format implements ([`Format`], and [`WeightSource`] over a
//! [`TensorTable`]), the trait a metric implements ([`Metric`], described by a
//! [`MetricSpec`]), the fused moment pass all moment-based metrics share ([`Moments`],
//! [`pair_moments`]), the [`Registry`], resource [`Limits`], one [`Error`] type, and the
//! workspace's one seeded generator ([`rng::Rng`]); also the linear assignment solver that
//! matches tensors, units and rows by content ([`lap`]). It also holds the safetensors format,
//! because that is the reference format the others are checked against.
//!
//! It knows nothing of recipes (TOML) or reports: those belong to `weightkin-runner`.
//!
//! Model files are untrusted. Code here reads every size from a header with checked
//! arithmetic against a [`Limits`] value, never indexes untrusted data without a bound check,
//! and returns an [`Error`] naming the file and tensor rather than panicking.

pub mod conformance;
mod convert;
mod direct;
mod dtype;
mod error;
mod filehash;
pub mod guard;
pub mod lap;
mod limits;
mod metric;
mod mmap;
mod moments;
mod registry;
pub mod rng;
pub mod safetensors;
mod source;
mod subsample;
mod table;
mod tensor;
#[cfg(feature = "testing")]
pub mod testing;
mod ulp;

pub use convert::to_f32;
pub use direct::DirectReads;
pub use dtype::Dtype;
pub use error::{
    Error, FormatProblem, FormatSpecific, HeaderProblem, MetricFailure, ParamProblem, Result,
    TensorProblem,
};
pub use filehash::{FileHasher, FileHashers};
pub use limits::Limits;
pub use metric::{
    ExampleAxis, Input, Metric, MetricSpec, MetricValue, Needs, ParamValue, Params, Tensors,
    Undefined, DEFAULT_MAX_ELEMENTS,
};
pub use mmap::{prefetch_ahead, MappedFile};
pub use moments::{
    pair_moments, pair_moments_sampled, pair_moments_sampled_with, pair_pass, read_tensor,
    Magnitudes, Moments, PairPass, Samples, Taps, WindowObserver, CHUNK, RELEASE_CHUNKS,
};
pub use registry::{Origin, Registry, SNIFF_BYTES};
pub use source::{
    release_if_last, FetchProgress, FileInfo, Format, NoFetchProgress, RawTensor, Side,
    StoredRange, StoredRows, Transform, WeightSource,
};
pub use subsample::{read_examples, ExampleSample};
pub use table::{Located, Sorted, TensorTable};
pub use tensor::{checked_numel, TensorInfo};
pub use ulp::{bf16_ulp_sampled, UlpStats};
