//! [`Problem`]: what can be wrong with an ONNX file that no other format has.
//!
//! Problems every format shares (a truncated file, too many tensors, an overflowing shape, a
//! tensor's bytes not matching its shape) are `weightkin-core`'s [`HeaderProblem`] and
//! [`TensorProblem`] variants. The ONNX-only ones — the protobuf wire encoding, a field of
//! the wrong wire type, graphs nested too deep, a name defined twice, external data that
//! escapes the model's directory — are variants here, carried by core's `Format` variants
//! (see [`FormatSpecific`]). Callers match them with [`Error::format_problem`]`::<Problem>()`.

use weightkin_core::FormatSpecific;
#[cfg(doc)]
use weightkin_core::{Error, HeaderProblem, TensorProblem};

pub use crate::wire::WireFault;

/// What is wrong with an ONNX file, beyond what every format can get wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The protobuf encoding is malformed at byte `at` of the file.
    #[error("protobuf, byte {at}, in {message}: {fault}")]
    Wire {
        /// The message being read (`ModelProto`, `TensorProto`, …).
        message: &'static str,
        /// Absolute offset of the fault.
        at: u64,
        /// What is wrong.
        fault: WireFault,
    },
    /// A known field has a wire type `onnx.proto` does not give it (a string field encoded
    /// as a varint, say): the bytes are not an ONNX model, or not this version's.
    #[error(
        "protobuf, byte {at}: field `{message}.{field}` is {found}, onnx.proto says {expected}"
    )]
    WrongWireType {
        /// The message.
        message: &'static str,
        /// The field's name in `onnx.proto`.
        field: &'static str,
        /// The wire type found.
        found: &'static str,
        /// The wire type `onnx.proto` gives it.
        expected: &'static str,
        /// Absolute offset of the field.
        at: u64,
    },
    /// A string field (a name, an op type) is not UTF-8; protobuf requires it.
    #[error("protobuf, byte {at}: field `{message}.{field}` is not UTF-8")]
    NotUtf8 {
        /// The message.
        message: &'static str,
        /// The field.
        field: &'static str,
        /// Absolute offset of the string.
        at: u64,
    },
    /// The model has no graph (`ModelProto.graph` is absent): nothing to read.
    #[error("the model has no graph")]
    NoGraph,
    /// The graph reaches more nodes, attributes, names and dimensions than allowed.
    #[error("the graph holds more than {limit} nodes, attributes, names and dimensions")]
    TooManyItems {
        /// The limit ([`crate::MAX_GRAPH_ITEMS`]).
        limit: u64,
    },
    /// A value name (initializer, Constant output) is defined twice. ONNX values are in
    /// static single-assignment form across a graph and its subgraphs (ONNX IR spec, "Names
    /// Within a Graph"), and two tensors of one name would make which one a node reads
    /// ambiguous.
    #[error("tensor `{name}` is defined twice: as {first} and as {second}")]
    DuplicateName {
        /// The name.
        name: String,
        /// Where it was defined first.
        first: String,
        /// Where it was defined again.
        second: String,
    },
    /// A dimension is negative.
    #[error("dimension {0} is negative")]
    NegativeDim(i64),
    /// A tensor of non-zero size has no data in any of the fields that could hold it.
    #[error("tensor has {numel} elements but no data (no raw_data, typed field or external data)")]
    NoData {
        /// Elements its shape declares.
        numel: u64,
    },
    /// A tensor stores its elements in more than one field (`raw_data` and a typed field, or
    /// a typed field that does not belong to its data type).
    #[error("tensor of type {data_type} stores elements in `{field}`, which onnx.proto reserves for other types or forbids beside `{other}`")]
    ConflictingData {
        /// The tensor's data type name.
        data_type: &'static str,
        /// The field found.
        field: &'static str,
        /// The field it conflicts with (or `data_type`).
        other: &'static str,
    },
    /// The tensor is one segment of a tensor split across several TensorProtos
    /// (`TensorProto.segment`), which no current exporter writes.
    #[error(
        "tensor is a segment of a tensor split across several TensorProtos, which is not read"
    )]
    Segmented,
    /// A typed data field holds a different number of elements than the shape.
    #[error("`{field}` holds {found} values, the shape needs {expected}")]
    ElementCount {
        /// The field.
        field: &'static str,
        /// Values the shape needs.
        expected: u64,
        /// Values present.
        found: u64,
    },
    /// A packed fixed-width field (`float_data`, `double_data`) whose length is not a whole
    /// number of values.
    #[error("packed `{field}` is {len} bytes, not a multiple of {width}")]
    PackedLength {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: u64,
        /// Bytes per value.
        width: u64,
    },
    /// A value in `int32_data` does not fit the data type it encodes (an f16 bit pattern
    /// above 0xFFFF, an FP8 above 0xFF).
    #[error("`int32_data` value {value} does not fit a {data_type} bit pattern")]
    BadBits {
        /// The value.
        value: u64,
        /// The data type.
        data_type: &'static str,
    },
    /// An `external_data` entry is malformed (an offset or length that is not a decimal
    /// integer, no `location`).
    #[error("external data: {0}")]
    ExternalEntry(String),
    /// An external data file's location is refused: absolute, with a `..` component, or
    /// resolving (through links) outside the model's directory. ONNX requires a path
    /// relative to the model's directory (`onnx.proto`, `TensorProto.external_data`), and
    /// onnx's own loader refuses these too (`onnx/external_data_helper.py`,
    /// `onnx/checker.cc` "Data of TensorProto ... should be stored in ..., but it doesn't
    /// exist or is not accessible"); weightkin reads only files beside the model.
    #[error("external data location `{location}` refused: {reason}")]
    ExternalPath {
        /// The location as written.
        location: String,
        /// Why.
        reason: &'static str,
    },
    /// External data read from bytes with no directory to resolve it in (the fuzz entry
    /// point, a file with no parent).
    #[error("external data location `{0}` cannot be resolved: the model has no directory")]
    NoDirectory(String),
    /// An external data range does not fit its file.
    #[error("external data `{location}`: bytes {offset}..{offset}+{length} are outside its {size} bytes")]
    ExternalRange {
        /// The file.
        location: String,
        /// Offset declared.
        offset: u64,
        /// Length declared (or implied).
        length: u64,
        /// The file's size.
        size: u64,
    },
}

impl FormatSpecific for Problem {}
