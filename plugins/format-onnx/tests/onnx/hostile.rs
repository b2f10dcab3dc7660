use std::path::{Path, PathBuf};

use weightkin_core::{Error, Format, HeaderProblem, Limits, TensorProblem, WeightSource};
use weightkin_format_onnx::testing::{
    external_tensor, f32_bytes, graph, model, nested, node, tensor, tensor_attribute, Msg, FLOAT,
};
use weightkin_format_onnx::{Problem, WireFault, FORMAT, MAX_GRAPH_DEPTH};

use crate::fixture;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn open_bytes(bytes: &[u8]) -> Result<Box<dyn WeightSource>, Error> {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.onnx", bytes);
    FORMAT.open(&p, &Limits::default())
}

fn problem(e: &Error) -> &Problem {
    e.format_problem::<Problem>()
        .unwrap_or_else(|| panic!("not an ONNX problem: {e}"))
}

fn one_weight(name: &str) -> Msg {
    tensor(name, &[2], FLOAT, &f32_bytes(&[1.0, 2.0]))
}

/// Opens (as `dir/m.onnx`), and reads every tensor: never a panic, whatever the bytes.
fn survive(dir: &Path, bytes: &[u8]) {
    let p = write(dir, "m.onnx", bytes);
    if let Ok(s) = FORMAT.open(&p, &Limits::default()) {
        for (i, t) in s.tensors().iter().enumerate() {
            let mut out = vec![0f32; t.numel];
            let _ = s.read_f32(i, 0, &mut out);
        }
    }
}

#[test]
fn truncated_protobuf_is_an_error_naming_the_offset() {
    let bytes = std::fs::read(fixture("minilm_like.onnx")).unwrap();
    let err = open_bytes(&bytes[..bytes.len() / 2]).err().unwrap();
    assert!(
        matches!(
            problem(&err),
            Problem::Wire {
                fault: WireFault::Truncated { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("m.onnx"), "{err}");
    // Every prefix (in steps) opens or fails cleanly.
    let dir = tempfile::tempdir().unwrap();
    for cut in (0..bytes.len()).step_by(61) {
        survive(dir.path(), &bytes[..cut]);
    }
}

#[test]
fn lengths_past_the_end() {
    // A graph field declaring 1000 bytes with 10 present.
    let mut m = Msg::new().varint(1, 8).into_bytes();
    m.extend_from_slice(&[0x3a, 0xe8, 0x07]);
    m.extend_from_slice(&[0; 10]);
    let err = open_bytes(&m).err().unwrap();
    assert!(
        matches!(
            problem(&err),
            Problem::Wire {
                fault: WireFault::Truncated {
                    needed: 1000,
                    available: 10
                },
                ..
            }
        ),
        "{err}"
    );
    // raw_data declaring 2^60 bytes: refused before anything is allocated.
    let t = Msg::new()
        .varint(1, 2)
        .varint(2, FLOAT)
        .str(8, "w")
        .raw(&[0x4a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]);
    let err = open_bytes(&model(&graph("g", &[], &[t]))).err().unwrap();
    assert!(matches!(problem(&err), Problem::Wire { .. }), "{err}");
    // raw_data shorter than the shape needs.
    let t = tensor("w", &[3], FLOAT, &f32_bytes(&[1.0, 2.0]));
    let err = open_bytes(&model(&graph("g", &[], &[t]))).err().unwrap();
    assert!(
        matches!(&err, Error::InvalidTensor { tensor, problem: TensorProblem::SizeMismatch { expected: 12, actual: 8, .. }, .. } if tensor == "w"),
        "{err}"
    );
}

#[test]
fn external_data_outside_the_directory_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    let secret = write(root.path(), "secret.bin", &f32_bytes(&[1.0, 2.0]));
    write(&dir, "w.bin", &f32_bytes(&[1.0, 2.0, 3.0]));
    let open_ext = |name: &str, location: &str, offset: u64, length: Option<u64>| {
        let t = external_tensor("w", &[2], location, offset, length);
        let p = write(&dir, name, &model(&graph("g", &[], &[t])));
        FORMAT.open(&p, &Limits::default())
    };
    let refused = |e: Error| match problem(&e) {
        Problem::ExternalPath { reason, .. } => *reason,
        other => panic!("{other}"),
    };
    assert_eq!(
        refused(open_ext("a.onnx", "../secret.bin", 0, None).err().unwrap()),
        "it has a `..` component"
    );
    assert_eq!(
        refused(
            open_ext("b.onnx", "sub/../../secret.bin", 0, None)
                .err()
                .unwrap()
        ),
        "it has a `..` component"
    );
    let abs = secret.to_str().unwrap();
    assert_eq!(
        refused(open_ext("c.onnx", abs, 0, None).err().unwrap()),
        "it is an absolute path"
    );
    assert_eq!(
        refused(open_ext("d.onnx", "", 0, None).err().unwrap()),
        "it is empty"
    );
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&secret, dir.join("link.bin")).unwrap();
        let e = open_ext("e.onnx", "link.bin", 0, None).err().unwrap();
        assert!(refused(e).contains("outside the model's directory"));
    }
    // Inside the directory: the range must fit the file and match the shape.
    let ok = open_ext("f.onnx", "w.bin", 4, Some(8)).unwrap();
    assert_eq!(crate::values(&*ok, "w"), [2.0, 3.0]);
    let e = open_ext("g.onnx", "w.bin", 8, Some(8)).err().unwrap();
    assert!(
        matches!(
            problem(&e),
            Problem::ExternalRange {
                offset: 8,
                length: 8,
                size: 12,
                ..
            }
        ),
        "{e}"
    );
    let e = open_ext("h.onnx", "w.bin", 0, None).err().unwrap();
    assert!(
        matches!(
            &e,
            Error::InvalidTensor {
                problem: TensorProblem::SizeMismatch { .. },
                ..
            }
        ),
        "{e}"
    );
    let e = open_ext("i.onnx", "missing.bin", 0, None).err().unwrap();
    assert!(matches!(&e, Error::Io { .. }), "{e}");
}

#[test]
fn duplicate_names_are_refused() {
    let err = open_bytes(&model(&graph(
        "g",
        &[],
        &[one_weight("w"), one_weight("w")],
    )))
    .err()
    .unwrap();
    assert!(
        matches!(problem(&err), Problem::DuplicateName { name, .. } if name == "w"),
        "{err}"
    );
    // An initializer and a Constant node's output in a nested graph.
    let constant =
        node("c", "Constant", &[], &["w"]).msg(5, &tensor_attribute("value", &one_weight("")));
    let inner = graph("then", &[constant], &[]);
    let iff = node("if", "If", &["cond"], &["y"]).msg(
        5,
        &weightkin_format_onnx::testing::graph_attribute("then_branch", &inner),
    );
    let err = open_bytes(&model(&graph("g", &[iff], &[one_weight("w")])))
        .err()
        .unwrap();
    let Problem::DuplicateName { first, second, .. } = problem(&err) else {
        panic!("{err}")
    };
    assert!(
        first.contains("initializer of graph `g`") && second.contains("Constant node `c`"),
        "{err}"
    );
}

#[test]
fn recursion_bombs_stop_at_the_depth_limit() {
    let s = open_bytes(&nested(MAX_GRAPH_DEPTH)).unwrap();
    assert_eq!(crate::values(&*s, "w"), [1.0, 2.0]);
    for depth in [MAX_GRAPH_DEPTH + 1, 2_000] {
        let err = open_bytes(&nested(depth)).err().unwrap();
        assert!(
            matches!(&err, Error::InvalidHeader { problem: HeaderProblem::TooDeep { limit, .. }, .. } if *limit == MAX_GRAPH_DEPTH),
            "{err}"
        );
    }
}

#[test]
fn malformed_tensors_are_named() {
    let neg = Msg::new()
        .varint(1, u64::MAX)
        .varint(2, FLOAT)
        .str(8, "neg")
        .bytes(9, &[]);
    let err = open_bytes(&model(&graph("g", &[], &[neg]))).err().unwrap();
    assert!(matches!(problem(&err), Problem::NegativeDim(-1)), "{err}");
    let unknown = tensor("u", &[1], 99, &[0]);
    let err = open_bytes(&model(&graph("g", &[], &[unknown])))
        .err()
        .unwrap();
    assert!(
        matches!(
            &err,
            Error::InvalidTensor {
                problem: TensorProblem::UnknownDtype(_),
                ..
            }
        ),
        "{err}"
    );
    let deep = tensor("r", &[1; 17], FLOAT, &f32_bytes(&[1.0]));
    let err = open_bytes(&model(&graph("g", &[], &[deep]))).err().unwrap();
    assert!(
        matches!(
            &err,
            Error::InvalidTensor {
                problem: TensorProblem::RankTooLarge { .. },
                ..
            }
        ),
        "{err}"
    );
    let empty = Msg::new().varint(1, 4).varint(2, FLOAT).str(8, "e");
    let err = open_bytes(&model(&graph("g", &[], &[empty])))
        .err()
        .unwrap();
    assert!(
        matches!(problem(&err), Problem::NoData { numel: 4 }),
        "{err}"
    );
    let both = tensor("b", &[1], FLOAT, &f32_bytes(&[1.0])).bytes(4, &f32_bytes(&[1.0]));
    let err = open_bytes(&model(&graph("g", &[], &[both]))).err().unwrap();
    assert!(
        matches!(problem(&err), Problem::ConflictingData { .. }),
        "{err}"
    );
    let ragged = Msg::new()
        .varint(1, 1)
        .varint(2, FLOAT)
        .str(8, "p")
        .bytes(4, &[0; 5]);
    let err = open_bytes(&model(&graph("g", &[], &[ragged])))
        .err()
        .unwrap();
    assert!(
        matches!(
            problem(&err),
            Problem::PackedLength {
                len: 5,
                width: 4,
                ..
            }
        ),
        "{err}"
    );
    let short = Msg::new()
        .varint(1, 3)
        .varint(2, FLOAT)
        .str(8, "s")
        .bytes(4, &[0; 8]);
    let err = open_bytes(&model(&graph("g", &[], &[short])))
        .err()
        .unwrap();
    assert!(
        matches!(
            problem(&err),
            Problem::ElementCount {
                expected: 3,
                found: 2,
                ..
            }
        ),
        "{err}"
    );
    let err = open_bytes(&Msg::new().varint(1, 8).into_bytes())
        .err()
        .unwrap();
    assert!(matches!(problem(&err), Problem::NoGraph), "{err}");
    // A string field encoded as a varint.
    let err = open_bytes(&Msg::new().varint(1, 8).varint(2, 5).into_bytes())
        .err()
        .unwrap();
    assert!(
        matches!(
            problem(&err),
            Problem::WrongWireType {
                field: "producer_name",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn flipped_bytes_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["typed.onnx", "external/model.onnx"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for i in 0..bytes.len().min(4000) {
            let mut b = bytes.clone();
            b[i] ^= 0xa5;
            survive(dir.path(), &b);
        }
    }
}
