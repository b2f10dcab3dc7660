//! Recovering the source parameter name (and orientation) of a weight an exporter renamed.
//!
//! PyTorch's TorchScript-based exporter (`torch.onnx.export`, and `optimum` on top of it)
//! keeps a parameter's name when it stores the parameter as is (`encoder.0.weight`, a bias),
//! but gives a generated name to every initializer it had to *change*: the transposed copy a
//! `Linear` layer becomes when exported as `MatMul` (`onnx::MatMul_1234`, shape [in, out]),
//! the gate-reordered and stacked weights of a GRU/LSTM (`onnx::GRU_227`), a convolution
//! with batch norm folded into it (`onnx::Conv_45`). The module that owned the parameter
//! survives in the name of the node that reads it: the exporter names nodes by module scope,
//! `/encoder/layer.0/attention/self/query/MatMul`. So a generated name is recovered from its
//! reader: the scope gives the module path (`encoder.layer.0.attention.self.query`), and the
//! op and input slot give the parameter and the layout change to undo:
//!
//! | op, input | presented as | view |
//! |---|---|---|
//! | `MatMul` B (rank 2) | `<module>.weight` [out, in] | transposed back from [in, out] |
//! | `Gemm` B | `<module>.weight` | transposed back unless `transB = 1` |
//! | `Gemm` C, `Conv`/`ConvTranspose` bias | `<module>.bias` | as stored |
//! | `Conv`/`ConvTranspose` W | `<module>.weight` | as stored |
//! | `GRU`/`LSTM`/`RNN` W, R | `<module>.weight_ih_l<k>`, `weight_hh_l<k>` (`_reverse` for the second direction) | one tensor per direction, gate blocks back in PyTorch's order |
//! | `GRU`/`LSTM`/`RNN` B | `<module>.bias_ih_l<k>` and `bias_hh_l<k>` | split, gates reordered |
//!
//! ONNX orders a GRU's gates z, r, h and an LSTM's i, o, f, c (ONNX operator spec, GRU and
//! LSTM); PyTorch orders them r, z, n and i, f, g, o (`torch.nn.GRU`, `torch.nn.LSTM`), and
//! its exporter reorders the blocks (`torch/onnx/symbolic_opset9.py`, `_generic_rnn`,
//! `reform_weights`). Layer `k` is the node's index among the scope's RNN nodes as the
//! exporter numbers them (`GRU`, `GRU_1`, …: one node per layer).
//!
//! A name is recovered only when every node that reads the tensor gives the same answer;
//! otherwise (no reader, a reader whose name is not a scope path, an op with no rule, readers
//! that disagree) the tensor keeps its stored name and is reported as unrecovered.

use std::fmt;

/// How a presented tensor's elements are found among its stored tensor's elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum View {
    /// As stored.
    Whole,
    /// Stored `[rows, cols]` row-major, presented `[cols, rows]`.
    Transposed {
        /// Rows of the stored matrix.
        rows: usize,
        /// Columns of the stored matrix.
        cols: usize,
    },
    /// The concatenation of element ranges `(start, len)` of the stored tensor.
    Segments(Vec<(usize, usize)>),
}

/// One tensor as presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Presented {
    /// The recovered name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Where its elements are.
    pub view: View,
}

/// Which layout change a recovery undid (for the transform list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Undo {
    /// Only the name changed.
    Nothing,
    /// A transposition (`MatMul`, `Gemm` with `transB = 0`).
    Transpose,
    /// An RNN's per-direction stacking and gate order.
    RnnGates,
}

/// A recovered name: the tensors presented for one stored tensor, and what was undone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// One tensor, or several (directions of an RNN weight, `bias_ih`/`bias_hh`).
    pub tensors: Vec<Presented>,
    /// The layout change undone.
    pub undo: Undo,
}

/// Why a generated name was not recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unrecovered {
    /// No node reads the tensor.
    NoReader,
    /// A reader's name is not a `/scope/.../Op` path.
    NoScope(String),
    /// The reading op and input slot have no rule.
    NoRule {
        /// The op.
        op: String,
        /// The input slot.
        input: usize,
    },
    /// The shape is not the one the op's rule expects.
    Shape(String),
    /// Readers give different names.
    Disagree,
    /// The recovered name is already a tensor's.
    Taken(String),
}

impl fmt::Display for Unrecovered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unrecovered::NoReader => write!(f, "no node reads it"),
            Unrecovered::NoScope(n) => write!(f, "read by node `{n}`, whose name is no scope path"),
            Unrecovered::NoRule { op, input } => {
                write!(f, "read as input {input} of {op} (no rule)")
            }
            Unrecovered::Shape(op) => write!(f, "its shape does not fit the {op} rule"),
            Unrecovered::Disagree => write!(f, "its readers give different names"),
            Unrecovered::Taken(n) => write!(f, "the recovered name `{n}` is already taken"),
        }
    }
}

/// One node input that reads a tensor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Use<'a> {
    /// The node's name.
    pub node: &'a str,
    /// Its op type.
    pub op: &'a str,
    /// The input slot.
    pub input: usize,
    /// Gemm's `transB`.
    pub trans_b: Option<u64>,
}

/// Whether `name` is one an exporter generated rather than a parameter's: the TorchScript
/// exporter's `onnx::<Op>_<n>` and its scoped value names (`/encoder/Constant_output_0`).
pub(crate) fn is_generated(name: &str) -> bool {
    name.starts_with("onnx::") || name.starts_with('/')
}

/// The module path and op index of a node named by scope: `/encoder/layer.0/query/MatMul_3`
/// read by op `MatMul` gives (`encoder.layer.0.query`, 3).
fn scope(node: &str, op: &str) -> Option<(String, usize)> {
    let mut parts: Vec<&str> = node.strip_prefix('/')?.split('/').collect();
    let last = parts.pop()?;
    let index = if last == op {
        0
    } else {
        last.strip_prefix(op)?.strip_prefix('_')?.parse().ok()?
    };
    if parts.is_empty() || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    Some((parts.join("."), index))
}

/// The presented tensors for a stored tensor of `shape` read by `uses`.
pub(crate) fn recover(shape: &[usize], uses: &[Use<'_>]) -> Result<Recovered, Unrecovered> {
    let mut found: Option<Recovered> = None;
    for u in uses {
        let r = rule(shape, u)?;
        match &found {
            Some(f) if *f != r => return Err(Unrecovered::Disagree),
            _ => found = Some(r),
        }
    }
    found.ok_or(Unrecovered::NoReader)
}

fn one(name: String, shape: Vec<usize>, view: View, undo: Undo) -> Recovered {
    Recovered {
        tensors: vec![Presented { name, shape, view }],
        undo,
    }
}

fn rule(shape: &[usize], u: &Use<'_>) -> Result<Recovered, Unrecovered> {
    let no_rule = || Unrecovered::NoRule {
        op: u.op.to_owned(),
        input: u.input,
    };
    let bad_shape = || Unrecovered::Shape(u.op.to_owned());
    let (module, index) = match u.op {
        "MatMul" | "Gemm" | "Conv" | "ConvTranspose" | "GRU" | "LSTM" | "RNN" => {
            scope(u.node, u.op).ok_or_else(|| Unrecovered::NoScope(u.node.to_owned()))?
        }
        _ => return Err(no_rule()),
    };
    let weight = format!("{module}.weight");
    match (u.op, u.input, shape) {
        ("MatMul", 1, &[rows, cols]) => Ok(one(
            weight,
            vec![cols, rows],
            View::Transposed { rows, cols },
            Undo::Transpose,
        )),
        ("MatMul", 1, _) => Err(bad_shape()),
        ("Gemm", 1, &[rows, cols]) if u.trans_b != Some(1) => Ok(one(
            weight,
            vec![cols, rows],
            View::Transposed { rows, cols },
            Undo::Transpose,
        )),
        ("Gemm", 1, &[_, _]) => Ok(one(weight, shape.to_vec(), View::Whole, Undo::Nothing)),
        ("Gemm", 1, _) => Err(bad_shape()),
        ("Conv" | "ConvTranspose", 1, _) => {
            Ok(one(weight, shape.to_vec(), View::Whole, Undo::Nothing))
        }
        ("Gemm" | "Conv" | "ConvTranspose", 2, _) => Ok(one(
            format!("{module}.bias"),
            shape.to_vec(),
            View::Whole,
            Undo::Nothing,
        )),
        ("GRU" | "LSTM" | "RNN", 1..=3, _) => {
            rnn(u.op, &module, index, u.input, shape).ok_or_else(bad_shape)
        }
        _ => Err(no_rule()),
    }
}

/// Gates per op, and for each PyTorch gate block the ONNX block it is stored as.
fn gates(op: &str) -> &'static [usize] {
    match op {
        // ONNX z, r, h → PyTorch r, z, n.
        "GRU" => &[1, 0, 2],
        // ONNX i, o, f, c → PyTorch i, f, g, o.
        "LSTM" => &[0, 2, 3, 1],
        _ => &[0],
    }
}

fn rnn(op: &str, module: &str, layer: usize, input: usize, shape: &[usize]) -> Option<Recovered> {
    let perm = gates(op);
    let g = perm.len();
    let dirs = *shape.first()?;
    if !(1..=2).contains(&dirs) {
        return None;
    }
    let suffix = |d: usize| if d == 0 { "" } else { "_reverse" };
    let mut tensors = Vec::new();
    match (input, shape) {
        (1 | 2, &[_, gh, k]) => {
            if gh == 0 || gh % g != 0 {
                return None;
            }
            let block = (gh / g).checked_mul(k)?;
            let kind = if input == 1 { "ih" } else { "hh" };
            for d in 0..dirs {
                let base = d.checked_mul(gh.checked_mul(k)?)?;
                tensors.push(Presented {
                    name: format!("{module}.weight_{kind}_l{layer}{}", suffix(d)),
                    shape: vec![gh, k],
                    view: View::Segments(perm.iter().map(|&p| (base + p * block, block)).collect()),
                });
            }
        }
        (3, &[_, two_gh]) => {
            if two_gh == 0 || two_gh % (2 * g) != 0 {
                return None;
            }
            let h = two_gh / (2 * g);
            for d in 0..dirs {
                let base = d.checked_mul(two_gh)?;
                for (kind, off) in [("ih", 0), ("hh", g * h)] {
                    tensors.push(Presented {
                        name: format!("{module}.bias_{kind}_l{layer}{}", suffix(d)),
                        shape: vec![g * h],
                        view: View::Segments(
                            perm.iter().map(|&p| (base + off + p * h, h)).collect(),
                        ),
                    });
                }
            }
        }
        _ => return None,
    }
    Some(Recovered {
        tensors,
        undo: Undo::RnnGates,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn reads(node: &'static str, op: &'static str, input: usize) -> Use<'static> {
        Use {
            node,
            op,
            input,
            trans_b: None,
        }
    }

    #[test]
    fn scopes() {
        assert_eq!(
            scope("/encoder/layer.0/attention/self/query/MatMul", "MatMul"),
            Some(("encoder.layer.0.attention.self.query".into(), 0))
        );
        assert_eq!(scope("/rnn/GRU_2", "GRU"), Some(("rnn".into(), 2)));
        assert_eq!(scope("/MatMul", "MatMul"), None);
        assert_eq!(scope("node_linear", "Gemm"), None);
        assert_eq!(scope("/a//MatMul", "MatMul"), None);
        assert_eq!(scope("/a/Add", "MatMul"), None);
    }

    #[test]
    fn matmul_is_transposed_back() {
        let r = recover(&[384, 1536], &[reads("/enc/ffn/up/MatMul", "MatMul", 1)]).unwrap();
        assert_eq!(r.undo, Undo::Transpose);
        assert_eq!(
            r.tensors,
            [Presented {
                name: "enc.ffn.up.weight".into(),
                shape: vec![1536, 384],
                view: View::Transposed {
                    rows: 384,
                    cols: 1536
                }
            }]
        );
    }

    #[test]
    fn gemm_honours_trans_b() {
        let mut u = reads("/fc/Gemm", "Gemm", 1);
        u.trans_b = Some(1);
        let r = recover(&[10, 4], &[u]).unwrap();
        assert_eq!(r.tensors[0].view, View::Whole);
        assert_eq!(r.tensors[0].shape, [10, 4]);
        u.trans_b = Some(0);
        assert_eq!(recover(&[10, 4], &[u]).unwrap().tensors[0].shape, [4, 10]);
    }

    #[test]
    fn gru_gates_and_bias_split() {
        // h = 2, input 3: W [1, 6, 3]; ONNX blocks z r h of 6 elements each.
        let r = recover(&[1, 6, 3], &[reads("/m/rnn/GRU", "GRU", 1)]).unwrap();
        assert_eq!(r.tensors.len(), 1);
        assert_eq!(r.tensors[0].name, "m.rnn.weight_ih_l0");
        assert_eq!(
            r.tensors[0].view,
            View::Segments(vec![(6, 6), (0, 6), (12, 6)])
        );
        let b = recover(&[2, 12], &[reads("/m/rnn/GRU_1", "GRU", 3)]).unwrap();
        let names: Vec<_> = b.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "m.rnn.bias_ih_l1",
                "m.rnn.bias_hh_l1",
                "m.rnn.bias_ih_l1_reverse",
                "m.rnn.bias_hh_l1_reverse"
            ]
        );
        assert_eq!(
            b.tensors[1].view,
            View::Segments(vec![(8, 2), (6, 2), (10, 2)])
        );
        assert_eq!(
            b.tensors[2].view,
            View::Segments(vec![(14, 2), (12, 2), (16, 2)])
        );
        // LSTM: i o f c → i f g o.
        let l = recover(&[1, 4, 1], &[reads("/lstm/LSTM", "LSTM", 2)]).unwrap();
        assert_eq!(
            l.tensors[0].view,
            View::Segments(vec![(0, 1), (2, 1), (3, 1), (1, 1)])
        );
    }

    #[test]
    fn unrecovered_reasons() {
        assert_eq!(recover(&[4], &[]), Err(Unrecovered::NoReader));
        assert!(matches!(
            recover(&[4], &[reads("/a/Add", "Add", 0)]),
            Err(Unrecovered::NoRule { .. })
        ));
        assert!(matches!(
            recover(&[4, 4], &[reads("MatMul_7", "MatMul", 1)]),
            Err(Unrecovered::NoScope(_))
        ));
        assert_eq!(
            recover(
                &[4, 4],
                &[
                    reads("/a/MatMul", "MatMul", 1),
                    reads("/b/MatMul", "MatMul", 1)
                ]
            ),
            Err(Unrecovered::Disagree)
        );
        assert!(matches!(
            recover(&[4], &[reads("/a/MatMul", "MatMul", 1)]),
            Err(Unrecovered::Shape(_))
        ));
        assert!(matches!(
            recover(&[1, 5, 3], &[reads("/a/GRU", "GRU", 1)]),
            Err(Unrecovered::Shape(_))
        ));
    }
}
