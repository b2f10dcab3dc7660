//! A minimal ONNX writer for fixtures built in code (feature `testing`): protobuf messages
//! assembled field by field, so tests can write what no well-behaved exporter writes
//! (duplicate names, graphs nested a hundred deep, external data pointing anywhere, lengths
//! past the end).
//!
//! Field numbers are `onnx.proto`'s (see [`crate::proto`]).

/// A protobuf message under construction.
#[derive(Debug, Clone, Default)]
pub struct Msg(Vec<u8>);

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

impl Msg {
    /// An empty message.
    pub fn new() -> Msg {
        Msg::default()
    }

    /// Appends varint field `field`.
    pub fn varint(mut self, field: u64, v: u64) -> Msg {
        put_varint(&mut self.0, field << 3);
        put_varint(&mut self.0, v);
        self
    }

    /// Appends length-delimited field `field` holding `b`.
    pub fn bytes(mut self, field: u64, b: &[u8]) -> Msg {
        put_varint(&mut self.0, field << 3 | 2);
        put_varint(&mut self.0, b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    /// Appends string field `field`.
    pub fn str(self, field: u64, s: &str) -> Msg {
        self.bytes(field, s.as_bytes())
    }

    /// Appends embedded message `m` as field `field`.
    pub fn msg(self, field: u64, m: &Msg) -> Msg {
        self.bytes(field, &m.0)
    }

    /// Appends raw bytes, unframed (to write what the encoding forbids).
    pub fn raw(mut self, b: &[u8]) -> Msg {
        self.0.extend_from_slice(b);
        self
    }

    /// The encoded message.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// ONNX `TensorProto.DataType.FLOAT`.
pub const FLOAT: u64 = 1;

/// Little-endian bytes of `values`.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A `TensorProto` named `name` of `dims` and `data_type` with `raw_data` `raw`.
pub fn tensor(name: &str, dims: &[u64], data_type: u64, raw: &[u8]) -> Msg {
    let mut t = Msg::new();
    for &d in dims {
        t = t.varint(1, d);
    }
    t.varint(2, data_type).str(8, name).bytes(9, raw)
}

/// A FLOAT `TensorProto` whose data is in external file `location` at `offset` (`length`
/// bytes, when given).
pub fn external_tensor(
    name: &str,
    dims: &[u64],
    location: &str,
    offset: u64,
    length: Option<u64>,
) -> Msg {
    let entry = |k: &str, v: &str| Msg::new().str(1, k).str(2, v);
    let mut t = Msg::new();
    for &d in dims {
        t = t.varint(1, d);
    }
    t = t
        .varint(2, FLOAT)
        .str(8, name)
        .msg(13, &entry("location", location))
        .msg(13, &entry("offset", &offset.to_string()));
    if let Some(l) = length {
        t = t.msg(13, &entry("length", &l.to_string()));
    }
    t.varint(14, 1)
}

/// A `NodeProto`.
pub fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> Msg {
    let mut n = Msg::new();
    for i in inputs {
        n = n.str(1, i);
    }
    for o in outputs {
        n = n.str(2, o);
    }
    n.str(3, name).str(4, op)
}

/// An `AttributeProto` named `name` holding graph `g`.
pub fn graph_attribute(name: &str, g: &Msg) -> Msg {
    Msg::new().str(1, name).msg(6, g).varint(20, 5)
}

/// An `AttributeProto` named `name` holding tensor `t`.
pub fn tensor_attribute(name: &str, t: &Msg) -> Msg {
    Msg::new().str(1, name).msg(5, t).varint(20, 4)
}

/// A `GraphProto`.
pub fn graph(name: &str, nodes: &[Msg], initializers: &[Msg]) -> Msg {
    let mut g = Msg::new();
    for n in nodes {
        g = g.msg(1, n);
    }
    g = g.str(2, name);
    for t in initializers {
        g = g.msg(5, t);
    }
    g
}

/// A `ModelProto` (IR 8, opset 17, producer `weightkin-testing`) holding `graph`.
pub fn model(graph: &Msg) -> Vec<u8> {
    Msg::new()
        .varint(1, 8)
        .str(2, "weightkin-testing")
        .msg(7, graph)
        .msg(8, &Msg::new().str(1, "").varint(2, 17))
        .into_bytes()
}

/// A model whose graph holds an `If` node whose branch holds an `If` node … `depth` graphs
/// deep, the innermost holding one initializer.
pub fn nested(depth: usize) -> Vec<u8> {
    let mut g = graph(
        "g0",
        &[],
        &[tensor("w", &[2], FLOAT, &f32_bytes(&[1.0, 2.0]))],
    );
    for i in 1..depth {
        let n =
            node(&format!("if{i}"), "If", &["c"], &[]).msg(5, &graph_attribute("then_branch", &g));
        g = graph(&format!("g{i}"), &[n], &[]);
    }
    model(&g)
}
