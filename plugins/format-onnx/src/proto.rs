//! The parts of `onnx.proto` weightkin reads, decoded from the memory map by [`crate::wire`].
//!
//! Five messages matter — `ModelProto`, `GraphProto`, `NodeProto`, `AttributeProto`,
//! `TensorProto` (plus the small `OperatorSetIdProto` and `StringStringEntryProto`) — and of
//! them only the fields listed below; every other field is skipped as protobuf requires, so
//! files from newer ONNX versions still open. Field numbers are those of `onnx/onnx.proto`
//! (IR version 11, onnx 1.23). Strings and tensor payloads are borrowed from the map.
//!
//! Bounds: graphs nest (`If`, `Loop`, `Scan` bodies are graph attributes) at most
//! [`MAX_GRAPH_DEPTH`] deep, and the nodes, attributes, names and dimensions kept are
//! counted against [`MAX_GRAPH_ITEMS`], so neither the stack nor the heap grows with what a
//! hostile file claims — only, boundedly, with the bytes it has.

use weightkin_core::HeaderProblem;

use crate::error::Problem;
use crate::wire::{Fault, Field, Fields, Value};

/// Deepest nesting of graphs (a graph attribute of a node of a graph of …) read. Protobuf's
/// C++ parser, which onnx and onnxruntime load models with, stops at 100 nested messages by
/// default (`CodedInputStream::SetRecursionLimit`), and each graph level is three messages
/// (graph → node → attribute), so no file onnx itself loads nests deeper than 33 graphs.
pub const MAX_GRAPH_DEPTH: usize = 33;

/// Most nodes, attributes, input and output names, initializers and dimensions kept from one
/// model, together: 2²⁴. Large ONNX exports are far below it (a 32-layer decoder exported by
/// optimum has on the order of 10⁴ nodes, each with a handful of names); each item costs at
/// most a few dozen bytes, so a hostile file cannot make the parse take more than a few
/// hundred megabytes whatever its size.
pub const MAX_GRAPH_ITEMS: u64 = 1 << 24;

/// `TensorProto.DataLocation.EXTERNAL`.
pub(crate) const EXTERNAL: u64 = 1;

/// A parsed `ModelProto`.
#[derive(Debug, Default)]
pub(crate) struct Model<'a> {
    pub ir_version: Option<u64>,
    pub producer_name: &'a str,
    pub producer_version: &'a str,
    pub domain: &'a str,
    pub model_version: Option<u64>,
    pub doc_string: &'a str,
    /// `(domain, version)` of each `opset_import`.
    pub opsets: Vec<(&'a str, u64)>,
    pub metadata_props: Vec<(&'a str, &'a str)>,
    pub graph: Option<Graph<'a>>,
    /// Number of `functions` (model-local functions; their nodes are not read).
    pub functions: u64,
    /// Number of `training_info` entries (not read).
    pub training_info: u64,
}

/// A parsed `GraphProto`.
#[derive(Debug, Default)]
pub(crate) struct Graph<'a> {
    pub name: &'a str,
    pub nodes: Vec<Node<'a>>,
    pub initializers: Vec<Tensor<'a>>,
    /// Names of `sparse_initializer` entries (their `values` tensor's name): listed as not
    /// read.
    pub sparse_initializers: Vec<&'a str>,
}

/// A parsed `NodeProto`, with the attributes weightkin uses.
#[derive(Debug, Default)]
pub(crate) struct Node<'a> {
    pub name: &'a str,
    pub op_type: &'a str,
    pub domain: &'a str,
    pub inputs: Vec<&'a str>,
    pub outputs: Vec<&'a str>,
    /// Gemm's `transB` attribute.
    pub trans_b: Option<u64>,
    /// A Constant node's `value` (a tensor attribute).
    pub value: Option<Tensor<'a>>,
    /// A Constant node's other value attributes (`sparse_value`, `value_float`, …), by name.
    pub other_values: Vec<&'a str>,
    /// Graph attributes (`then_branch`, `body`, …), parsed.
    pub subgraphs: Vec<Graph<'a>>,
}

/// Which typed repeated field of a `TensorProto` a piece of data came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Typed {
    /// `float_data` (4): packed fixed32.
    Float,
    /// `int32_data` (5): packed varints.
    Int32,
    /// `string_data` (6): one string per element.
    String,
    /// `int64_data` (7): packed varints.
    Int64,
    /// `double_data` (10): packed fixed64.
    Double,
    /// `uint64_data` (11): packed varints.
    Uint64,
}

impl Typed {
    /// The field's name in `onnx.proto`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Typed::Float => "float_data",
            Typed::Int32 => "int32_data",
            Typed::String => "string_data",
            Typed::Int64 => "int64_data",
            Typed::Double => "double_data",
            Typed::Uint64 => "uint64_data",
        }
    }
}

/// One occurrence of a typed field: a packed run (or a string), or one unpacked scalar
/// (protobuf parsers must accept both encodings of a repeated scalar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// A length-delimited run and its absolute offset.
    Packed(&'a [u8], usize),
    /// One value: a varint, or fixed32/fixed64 bits.
    Scalar(u64),
}

/// A parsed `TensorProto`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tensor<'a> {
    pub name: &'a str,
    pub dims: Vec<i64>,
    pub data_type: u64,
    /// `raw_data` and its absolute offset.
    pub raw: Option<(&'a [u8], usize)>,
    /// The typed data fields, in file order.
    pub typed: Vec<(Typed, Piece<'a>)>,
    /// `external_data` key/value pairs.
    pub external: Vec<(&'a str, &'a str)>,
    pub data_location: u64,
    /// Whether `segment` is set (a tensor split across several TensorProtos).
    pub segmented: bool,
}

/// The parse state: item budget and depth.
struct Budget {
    items: u64,
}

impl Budget {
    fn take(&mut self, n: u64) -> Result<(), HeaderProblem> {
        self.items = self.items.saturating_add(n);
        if self.items > MAX_GRAPH_ITEMS {
            return Err(Problem::TooManyItems {
                limit: MAX_GRAPH_ITEMS,
            }
            .into());
        }
        Ok(())
    }
}

fn wire(message: &'static str) -> impl Fn(Fault) -> HeaderProblem {
    move |f| {
        Problem::Wire {
            message,
            at: f.at as u64,
            fault: f.fault,
        }
        .into()
    }
}

fn wrong(
    message: &'static str,
    field: &'static str,
    f: &Field<'_>,
    expected: &'static str,
) -> HeaderProblem {
    Problem::WrongWireType {
        message,
        field,
        found: f.value.wire_name(),
        expected,
        at: f.at as u64,
    }
    .into()
}

fn bytes<'a>(
    message: &'static str,
    field: &'static str,
    f: &Field<'a>,
) -> Result<(&'a [u8], usize), HeaderProblem> {
    match f.value {
        Value::Bytes(b, at) => Ok((b, at)),
        _ => Err(wrong(message, field, f, "length-delimited")),
    }
}

fn string<'a>(
    message: &'static str,
    field: &'static str,
    f: &Field<'a>,
) -> Result<&'a str, HeaderProblem> {
    let (b, at) = bytes(message, field, f)?;
    std::str::from_utf8(b).map_err(|_| {
        Problem::NotUtf8 {
            message,
            field,
            at: at as u64,
        }
        .into()
    })
}

fn varint(message: &'static str, field: &'static str, f: &Field<'_>) -> Result<u64, HeaderProblem> {
    match f.value {
        Value::Varint(v) => Ok(v),
        _ => Err(wrong(message, field, f, "varint")),
    }
}

/// Parses a whole file as a `ModelProto`.
pub(crate) fn model(file: &[u8]) -> Result<Model<'_>, HeaderProblem> {
    const M: &str = "ModelProto";
    let mut budget = Budget { items: 0 };
    let mut m = Model::default();
    for f in Fields::new(file, 0) {
        let f = f.map_err(wire(M))?;
        match f.number {
            1 => m.ir_version = Some(varint(M, "ir_version", &f)?),
            2 => m.producer_name = string(M, "producer_name", &f)?,
            3 => m.producer_version = string(M, "producer_version", &f)?,
            4 => m.domain = string(M, "domain", &f)?,
            5 => m.model_version = Some(varint(M, "model_version", &f)?),
            6 => m.doc_string = string(M, "doc_string", &f)?,
            7 => {
                let (b, at) = bytes(M, "graph", &f)?;
                // A repeated occurrence of a singular message field merges into the first in
                // protobuf; a second graph is not something an exporter writes, and merging
                // two graphs' lists would only hide it. The last one wins here, as it does for
                // scalars, and both are bounded by the budget.
                m.graph = Some(graph(b, at, 1, &mut budget)?);
            }
            8 => {
                let (b, at) = bytes(M, "opset_import", &f)?;
                budget.take(1)?;
                m.opsets.push(opset(b, at)?);
            }
            14 => {
                let (b, at) = bytes(M, "metadata_props", &f)?;
                budget.take(1)?;
                m.metadata_props.push(entry(b, at)?);
            }
            20 => {
                bytes(M, "training_info", &f)?;
                m.training_info += 1;
            }
            25 => {
                bytes(M, "functions", &f)?;
                m.functions += 1;
            }
            _ => {}
        }
    }
    Ok(m)
}

fn opset(b: &[u8], at: usize) -> Result<(&str, u64), HeaderProblem> {
    const M: &str = "OperatorSetIdProto";
    let (mut domain, mut version) = ("", 0);
    for f in Fields::new(b, at) {
        let f = f.map_err(wire(M))?;
        match f.number {
            1 => domain = string(M, "domain", &f)?,
            2 => version = varint(M, "version", &f)?,
            _ => {}
        }
    }
    Ok((domain, version))
}

fn entry(b: &[u8], at: usize) -> Result<(&str, &str), HeaderProblem> {
    const M: &str = "StringStringEntryProto";
    let (mut key, mut value) = ("", "");
    for f in Fields::new(b, at) {
        let f = f.map_err(wire(M))?;
        match f.number {
            1 => key = string(M, "key", &f)?,
            2 => value = string(M, "value", &f)?,
            _ => {}
        }
    }
    Ok((key, value))
}

fn graph<'a>(
    b: &'a [u8],
    at: usize,
    depth: usize,
    budget: &mut Budget,
) -> Result<Graph<'a>, HeaderProblem> {
    const M: &str = "GraphProto";
    if depth > MAX_GRAPH_DEPTH {
        return Err(HeaderProblem::TooDeep {
            depth,
            limit: MAX_GRAPH_DEPTH,
        });
    }
    let mut g = Graph::default();
    for f in Fields::new(b, at) {
        let f = f.map_err(wire(M))?;
        match f.number {
            1 => {
                let (b, at) = bytes(M, "node", &f)?;
                budget.take(1)?;
                let n = node(b, at, depth, budget)?;
                g.nodes.push(n);
            }
            2 => g.name = string(M, "name", &f)?,
            5 => {
                let (b, at) = bytes(M, "initializer", &f)?;
                budget.take(1)?;
                g.initializers.push(tensor(b, at, budget)?);
            }
            15 => {
                let (b, at) = bytes(M, "sparse_initializer", &f)?;
                budget.take(1)?;
                g.sparse_initializers.push(sparse_name(b, at)?);
            }
            _ => {}
        }
    }
    Ok(g)
}

/// The name of a `SparseTensorProto`: its `values` tensor's name.
fn sparse_name(b: &[u8], at: usize) -> Result<&str, HeaderProblem> {
    const M: &str = "SparseTensorProto";
    let mut name = "";
    for f in Fields::new(b, at) {
        let f = f.map_err(wire(M))?;
        if f.number == 1 {
            let (b, at) = bytes(M, "values", &f)?;
            for f in Fields::new(b, at) {
                let f = f.map_err(wire("TensorProto"))?;
                if f.number == 8 {
                    name = string("TensorProto", "name", &f)?;
                }
            }
        }
    }
    Ok(name)
}

fn node<'a>(
    b: &'a [u8],
    at: usize,
    depth: usize,
    budget: &mut Budget,
) -> Result<Node<'a>, HeaderProblem> {
    const M: &str = "NodeProto";
    let mut n = Node::default();
    for f in Fields::new(b, at) {
        let f = f.map_err(wire(M))?;
        match f.number {
            1 => {
                budget.take(1)?;
                n.inputs.push(string(M, "input", &f)?);
            }
            2 => {
                budget.take(1)?;
                n.outputs.push(string(M, "output", &f)?);
            }
            3 => n.name = string(M, "name", &f)?,
            4 => n.op_type = string(M, "op_type", &f)?,
            7 => n.domain = string(M, "domain", &f)?,
            5 => {
                let (b, at) = bytes(M, "attribute", &f)?;
                budget.take(1)?;
                attribute(b, at, depth, budget, &mut n)?;
            }
            _ => {}
        }
    }
    Ok(n)
}

/// Reads one `AttributeProto` into what `n` keeps of it.
fn attribute<'a>(
    b: &'a [u8],
    at: usize,
    depth: usize,
    budget: &mut Budget,
    n: &mut Node<'a>,
) -> Result<(), HeaderProblem> {
    const M: &str = "AttributeProto";
    let mut name = "";
    let mut int = None;
    let mut tensor_value = None;
    let mut has_other = false;
    for f in Fields::new(b, at) {
        let f = f.map_err(wire(M))?;
        match f.number {
            1 => name = string(M, "name", &f)?,
            3 => int = Some(varint(M, "i", &f)?),
            5 => {
                let (b, at) = bytes(M, "t", &f)?;
                tensor_value = Some(tensor(b, at, budget)?);
            }
            6 => {
                let (b, at) = bytes(M, "g", &f)?;
                let g = graph(b, at, depth + 1, budget)?;
                n.subgraphs.push(g);
            }
            11 => {
                let (b, at) = bytes(M, "graphs", &f)?;
                budget.take(1)?;
                let g = graph(b, at, depth + 1, budget)?;
                n.subgraphs.push(g);
            }
            // f, s, sparse_tensor, floats, ints, strings, tensors
            2 | 4 | 22 | 7 | 8 | 9 | 10 => has_other = true,
            _ => {}
        }
    }
    match name {
        "transB" => n.trans_b = int,
        "value" if tensor_value.is_some() => n.value = tensor_value,
        "sparse_value" | "value_float" | "value_floats" | "value_int" | "value_ints"
        | "value_string" | "value_strings"
            if has_other || int.is_some() =>
        {
            n.other_values.push(name)
        }
        _ => {}
    }
    Ok(())
}

fn tensor<'a>(b: &'a [u8], at: usize, budget: &mut Budget) -> Result<Tensor<'a>, HeaderProblem> {
    const M: &str = "TensorProto";
    let mut t = Tensor::default();
    for f in Fields::new(b, at) {
        let f = f.map_err(wire(M))?;
        let typed = match f.number {
            1 => {
                match f.value {
                    Value::Varint(v) => {
                        budget.take(1)?;
                        t.dims.push(v as i64);
                    }
                    Value::Bytes(b, at) => {
                        for v in crate::wire::varints(b, at) {
                            budget.take(1)?;
                            t.dims.push(v.map_err(wire(M))? as i64);
                        }
                    }
                    _ => return Err(wrong(M, "dims", &f, "varint")),
                }
                continue;
            }
            2 => {
                t.data_type = varint(M, "data_type", &f)?;
                continue;
            }
            3 => {
                bytes(M, "segment", &f)?;
                t.segmented = true;
                continue;
            }
            4 => Typed::Float,
            5 => Typed::Int32,
            6 => Typed::String,
            7 => Typed::Int64,
            8 => {
                t.name = string(M, "name", &f)?;
                continue;
            }
            9 => {
                t.raw = Some(bytes(M, "raw_data", &f)?);
                continue;
            }
            10 => Typed::Double,
            11 => Typed::Uint64,
            13 => {
                let (b, at) = bytes(M, "external_data", &f)?;
                budget.take(1)?;
                t.external.push(entry(b, at)?);
                continue;
            }
            14 => {
                t.data_location = varint(M, "data_location", &f)?;
                continue;
            }
            _ => continue,
        };
        // The wire type each typed field allows unpacked; packed (length-delimited) is always
        // allowed, and is the only encoding of `string_data`.
        let piece = match (typed, f.value) {
            (_, Value::Bytes(b, at)) => Piece::Packed(b, at),
            (Typed::Float, Value::Fixed32(v)) => Piece::Scalar(u64::from(v)),
            (Typed::Double, Value::Fixed64(v)) => Piece::Scalar(v),
            (Typed::Int32 | Typed::Int64 | Typed::Uint64, Value::Varint(v)) => Piece::Scalar(v),
            _ => {
                let expected = match typed {
                    Typed::Float => "32-bit",
                    Typed::Double => "64-bit",
                    Typed::String => "length-delimited",
                    _ => "varint",
                };
                return Err(wrong(M, typed.name(), &f, expected));
            }
        };
        budget.take(1)?;
        t.typed.push((typed, piece));
    }
    Ok(t)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn wrong_wire_type_is_named() {
        // ModelProto.producer_name (2) as a varint.
        let err = model(&[0x10, 1]).unwrap_err();
        let HeaderProblem::Format(p) = &err else {
            panic!("{err}")
        };
        assert!(
            matches!(
                p.downcast_ref(),
                Some(Problem::WrongWireType {
                    field: "producer_name",
                    ..
                })
            ),
            "{err}"
        );
    }

    #[test]
    fn empty_bytes_are_a_model_without_graph() {
        let m = model(&[]).unwrap();
        assert!(m.graph.is_none());
    }
}
