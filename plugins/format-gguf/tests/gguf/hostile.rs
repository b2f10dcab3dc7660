//! Malformed and hostile files, one problem each, each asserting its error variant. Every
//! size in a header is untrusted: none may cause a panic, an allocation beyond the file's
//! size, or a read outside the file.

use weightkin_core::{Error, Format, HeaderProblem, Limits, TensorProblem};
use weightkin_format_gguf::testing::{GgufBuilder, Meta};
use weightkin_format_gguf::{Problem, FORMAT, MAX_ARRAY_DEPTH};

use crate::{failure, open_bytes};

fn header_problem(bytes: &[u8]) -> HeaderProblem {
    match failure(open_bytes(bytes)) {
        Error::InvalidHeader { problem, .. } => problem,
        other => panic!("expected an invalid header, got: {other}"),
    }
}

fn tensor_problem(bytes: &[u8]) -> (String, TensorProblem) {
    match failure(open_bytes(bytes)) {
        Error::InvalidTensor {
            tensor, problem, ..
        } => (tensor, problem),
        other => panic!("expected an invalid tensor, got: {other}"),
    }
}

/// The GGUF-only problem of an invalid header.
fn own_header_problem(bytes: &[u8]) -> Problem {
    let err = failure(open_bytes(bytes));
    match (&err, err.format_problem::<Problem>()) {
        (Error::InvalidHeader { .. }, Some(p)) => p.clone(),
        _ => panic!("expected a GGUF problem of the header, got: {err}"),
    }
}

/// The GGUF-only problem of an invalid tensor.
fn own_tensor_problem(bytes: &[u8]) -> Problem {
    let err = failure(open_bytes(bytes));
    match (&err, err.format_problem::<Problem>()) {
        (Error::InvalidTensor { .. }, Some(p)) => p.clone(),
        _ => panic!("expected a GGUF problem of a tensor, got: {err}"),
    }
}

/// The fixed 24-byte start of a header: magic, version 3, the two counts.
fn start(tensors: u64, kvs: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(tensors.to_le_bytes());
    b.extend(kvs.to_le_bytes());
    b
}

fn push_str(b: &mut Vec<u8>, s: &str) {
    b.extend((s.len() as u64).to_le_bytes());
    b.extend(s.as_bytes());
}

fn valid() -> Vec<u8> {
    GgufBuilder::new("llama")
        .kv("llama.attention.head_count", Meta::U32(2))
        .kv(
            "tokenizer.ggml.tokens",
            Meta::Array(8, vec![Meta::str("a"), Meta::str("b")]),
        )
        .tensor_f32("blk.0.attn_q.weight", &[4, 8], &[0.5; 32])
        .tensor_q8_0("token_embd.weight", &[2, 32], &[0.25; 64])
        .to_bytes()
        .unwrap()
}

#[test]
fn empty_and_short_files_are_truncated() {
    assert!(matches!(
        header_problem(b""),
        HeaderProblem::Truncated {
            needed: 4,
            actual: 0
        }
    ));
    assert!(matches!(
        header_problem(b"GGUF\x03\0"),
        HeaderProblem::Truncated {
            needed: 8,
            actual: 6
        }
    ));
}

#[test]
fn wrong_magic() {
    let p = own_header_problem(b"GGML\x03\0\0\0");
    assert!(
        matches!(&p, Problem::BadMagic { found, .. } if found == b"GGML"),
        "{p}"
    );
}

#[test]
fn version_1_big_endian_and_future_versions_are_refused() {
    let mut v1 = start(0, 0);
    v1[4..8].copy_from_slice(&1u32.to_le_bytes());
    let p = header_problem(&v1);
    assert!(
        matches!(&p, HeaderProblem::Unsupported { what, .. } if what == "GGUF version 1"),
        "{p}"
    );

    let mut be = start(0, 0);
    be[4..8].copy_from_slice(&3u32.to_be_bytes());
    let p = header_problem(&be);
    assert!(
        matches!(&p, HeaderProblem::Unsupported { what, .. } if what.contains("big-endian")),
        "{p}"
    );

    let mut v4 = start(0, 0);
    v4[4..8].copy_from_slice(&4u32.to_le_bytes());
    let p = header_problem(&v4);
    assert!(
        matches!(&p, HeaderProblem::Unsupported { what, .. } if what == "GGUF version 4"),
        "{p}"
    );
}

#[test]
fn every_truncation_of_a_valid_file_is_an_error() {
    let bytes = valid();
    assert!(open_bytes(&bytes).is_ok());
    let mut kinds = std::collections::BTreeSet::new();
    for len in 0..bytes.len() {
        // The last tensor's padding may be cut without losing data.
        match open_bytes(&bytes[..len]) {
            Ok(_) => assert!(len >= bytes.len() - 32, "opened when cut to {len} bytes"),
            Err(Error::InvalidHeader {
                problem: HeaderProblem::Truncated { needed, actual },
                ..
            }) => {
                assert_eq!(actual, len as u64);
                assert!(needed > actual);
                kinds.insert("header");
            }
            Err(Error::InvalidTensor {
                problem: TensorProblem::PastEnd { .. },
                ..
            }) => {
                kinds.insert("data");
            }
            Err(e) => panic!("cut to {len} bytes: {e}"),
        }
    }
    assert_eq!(kinds.len(), 2);
}

#[test]
fn absurd_tensor_counts() {
    let p = header_problem(&start(u64::MAX, 0));
    assert!(
        matches!(
            p,
            HeaderProblem::TooManyTensors {
                count: u64::MAX,
                ..
            }
        ),
        "{p}"
    );
    // Within the limit, but far more than the bytes present can describe: refused before
    // anything is allocated for them.
    let p = header_problem(&start(1 << 20, 0));
    assert!(
        matches!(p, HeaderProblem::Truncated { actual: 24, .. }),
        "{p}"
    );
    // A tighter limit is honoured.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, valid()).unwrap();
    let limits = Limits {
        max_tensors: 1,
        ..Limits::default()
    };
    let err = FORMAT.open(&path, &limits).err().unwrap();
    assert!(
        matches!(
            err,
            Error::InvalidHeader {
                problem: HeaderProblem::TooManyTensors { count: 2, limit: 1 },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn absurd_key_counts() {
    let p = header_problem(&start(0, u64::MAX));
    assert!(matches!(p, HeaderProblem::Truncated { .. }), "{p}");
}

#[test]
fn header_larger_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, valid()).unwrap();
    let limits = Limits {
        max_header_bytes: 64,
        ..Limits::default()
    };
    let err = FORMAT.open(&path, &limits).err().unwrap();
    assert!(
        matches!(
            err,
            Error::InvalidHeader {
                problem: HeaderProblem::TooLarge { limit: 64, .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn string_lengths_past_the_end_of_the_file() {
    // A key (with enough bytes after it for one minimal key/value, so that the length is
    // what fails).
    let mut b = start(0, 1);
    b.extend(u64::MAX.to_le_bytes());
    b.extend([0u8; 16]);
    let p = header_problem(&b);
    assert!(
        matches!(
            p,
            HeaderProblem::Truncated {
                needed: u64::MAX,
                ..
            }
        ),
        "{p}"
    );
    // A string value.
    let mut b = start(0, 1);
    push_str(&mut b, "k");
    b.extend(8u32.to_le_bytes());
    b.extend(1_000_000u64.to_le_bytes());
    b.extend(b"short");
    let p = header_problem(&b);
    assert!(
        matches!(
            p,
            HeaderProblem::Truncated {
                needed: 1_000_045,
                actual: 50
            }
        ),
        "{p}"
    );
    // A tensor name.
    let mut b = start(1, 0);
    b.extend((1u64 << 40).to_le_bytes());
    b.extend([0u8; 32]);
    let p = header_problem(&b);
    assert!(
        matches!(p, HeaderProblem::Truncated { needed, .. } if needed == 32 + (1 << 40)),
        "{p}"
    );
}

#[test]
fn array_counts_past_the_end_of_the_file() {
    let mut b = start(0, 1);
    push_str(&mut b, "k");
    b.extend(9u32.to_le_bytes());
    b.extend(10u32.to_le_bytes()); // u64 elements
    b.extend(u64::MAX.to_le_bytes());
    let p = header_problem(&b);
    assert!(
        matches!(
            p,
            HeaderProblem::Truncated {
                needed: u64::MAX,
                ..
            }
        ),
        "{p}"
    );
}

/// A key whose value is `depth` arrays nested in one another around one u8.
fn nested(depth: usize) -> Vec<u8> {
    let mut b = start(0, 1);
    push_str(&mut b, "nested");
    b.extend(9u32.to_le_bytes());
    for level in 1..depth {
        let _ = level;
        b.extend(9u32.to_le_bytes());
        b.extend(1u64.to_le_bytes());
    }
    b.extend(0u32.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.push(42);
    b
}

#[test]
fn deeply_nested_arrays() {
    let source = open_bytes(&nested(MAX_ARRAY_DEPTH)).unwrap();
    let shown = &source.metadata()["nested"];
    assert_eq!(
        shown,
        &format!(
            "{}42{}",
            "[".repeat(MAX_ARRAY_DEPTH),
            "]".repeat(MAX_ARRAY_DEPTH)
        )
    );
    let p = header_problem(&nested(MAX_ARRAY_DEPTH + 1));
    assert!(
        matches!(
            p,
            HeaderProblem::TooDeep {
                limit: MAX_ARRAY_DEPTH,
                ..
            }
        ),
        "{p}"
    );
    // Far deeper than any stack would survive if recursion were unbounded.
    let p = header_problem(&nested(1_000_000));
    assert!(matches!(p, HeaderProblem::TooDeep { .. }), "{p}");
}

#[test]
fn unknown_value_type() {
    let mut b = start(0, 1);
    push_str(&mut b, "k");
    b.extend(13u32.to_le_bytes());
    b.push(0);
    let p = own_header_problem(&b);
    assert!(
        matches!(&p, Problem::UnknownValueType { key, type_id: 13 } if key == "k"),
        "{p}"
    );
}

#[test]
fn duplicate_keys() {
    let b = GgufBuilder::new("x")
        .kv("a", Meta::U8(1))
        .kv("a", Meta::U8(2))
        .to_bytes()
        .unwrap();
    let p = own_header_problem(&b);
    assert!(matches!(&p, Problem::DuplicateKey(k) if k == "a"), "{p}");
}

#[test]
fn bad_alignments() {
    for value in [
        Meta::U32(0),
        Meta::U32(48),
        Meta::U64(32),
        Meta::Str("32".into()),
    ] {
        let b = GgufBuilder::new("x")
            .kv("general.alignment", value.clone())
            .to_bytes()
            .unwrap();
        let p = own_header_problem(&b);
        assert!(
            matches!(&p, Problem::BadValue { key, .. } if key == "general.alignment"),
            "{value:?}: {p}"
        );
    }
}

#[test]
fn unknown_and_removed_type_ids() {
    for id in [4u32, 31, 43, 99, u32::MAX] {
        let b = GgufBuilder::new("x")
            .tensor_info("t", vec![32], id, None, vec![0; 64])
            .to_bytes()
            .unwrap();
        let (name, p) = tensor_problem(&b);
        assert_eq!(name, "t");
        assert!(
            matches!(&p, TensorProblem::UnknownDtype(s) if s == &format!("GGML type id {id}")),
            "{p}"
        );
    }
}

#[test]
fn too_many_dimensions() {
    let b = GgufBuilder::new("x")
        .tensor_info("t", vec![1; 5], 0, None, vec![0; 4])
        .to_bytes()
        .unwrap();
    let (_, p) = tensor_problem(&b);
    assert!(
        matches!(p, TensorProblem::RankTooLarge { rank: 5, limit: 4 }),
        "{p}"
    );
    // An n_dims of u32::MAX is refused before its dimensions are read.
    let mut b = start(1, 0);
    push_str(&mut b, "t");
    b.extend(u32::MAX.to_le_bytes());
    b.extend([0u8; 64]);
    let (_, p) = tensor_problem(&b);
    assert!(matches!(p, TensorProblem::RankTooLarge { .. }), "{p}");
}

#[test]
fn overflowing_dimensions() {
    for ne in [
        vec![u64::MAX],
        vec![1 << 32, 1 << 32],
        vec![1 << 62, 4],
        vec![i64::MAX as u64],
    ] {
        let b = GgufBuilder::new("x")
            .tensor_info("t", ne.clone(), 0, None, vec![])
            .to_bytes()
            .unwrap();
        let (_, p) = tensor_problem(&b);
        assert!(matches!(p, TensorProblem::ShapeOverflow(_)), "{ne:?}: {p}");
    }
}

#[test]
fn rows_of_partial_blocks() {
    // Q4_0 blocks hold 32 elements; 64 elements as rows of 16 are 4 half blocks.
    let b = GgufBuilder::new("x")
        .tensor_info("t", vec![16, 4], 2, None, vec![0; 36])
        .to_bytes()
        .unwrap();
    let p = own_tensor_problem(&b);
    assert!(
        matches!(
            p,
            Problem::PartialBlock {
                row: 16,
                block: 32,
                ..
            }
        ),
        "{p}"
    );
}

#[test]
fn misaligned_offsets() {
    let b = GgufBuilder::new("x")
        .tensor_info("t", vec![1], 0, Some(4), vec![0; 4])
        .to_bytes()
        .unwrap();
    let p = own_tensor_problem(&b);
    assert!(
        matches!(
            p,
            Problem::Misaligned {
                offset: 4,
                alignment: 32
            }
        ),
        "{p}"
    );
}

#[test]
fn data_out_of_bounds() {
    // Declared at an offset past the end of the file.
    let b = GgufBuilder::new("x")
        .tensor_info("t", vec![8], 0, Some(1 << 20), vec![])
        .to_bytes()
        .unwrap();
    let (_, p) = tensor_problem(&b);
    assert!(
        matches!(p, TensorProblem::PastEnd { end, .. } if end == (1 << 20) + 32),
        "{p}"
    );
    // An offset so large that offset + size overflows.
    let b = GgufBuilder::new("x")
        .tensor_info("t", vec![8], 0, Some(u64::MAX - 31), vec![])
        .to_bytes()
        .unwrap();
    let (_, p) = tensor_problem(&b);
    assert!(
        matches!(p, TensorProblem::PastEnd { end: u64::MAX, .. }),
        "{p}"
    );
    // A shape larger than the data present.
    let b = GgufBuilder::new("x")
        .tensor_info("t", vec![1000], 0, None, vec![0; 8])
        .to_bytes()
        .unwrap();
    let (_, p) = tensor_problem(&b);
    assert!(matches!(p, TensorProblem::PastEnd { end: 4000, .. }), "{p}");
}

#[test]
fn overlapping_tensors() {
    let b = GgufBuilder::new("x")
        .tensor_info("a", vec![16], 0, Some(0), vec![1; 64])
        .tensor_info("b", vec![16], 0, Some(32), vec![2; 64])
        .to_bytes()
        .unwrap();
    let (name, p) = tensor_problem(&b);
    assert_eq!(name, "b");
    assert!(
        matches!(&p, TensorProblem::Overlap { start: 32, end: 96, other } if other == "a"),
        "{p}"
    );
    // Two tensors on the same bytes.
    let b = GgufBuilder::new("x")
        .tensor_info("a", vec![8], 0, Some(0), vec![1; 32])
        .tensor_info("b", vec![8], 0, Some(0), vec![1; 32])
        .to_bytes()
        .unwrap();
    let (_, p) = tensor_problem(&b);
    assert!(matches!(p, TensorProblem::Overlap { .. }), "{p}");
}

#[test]
fn gaps_between_tensors() {
    let b = GgufBuilder::new("x")
        .tensor_info("a", vec![8], 0, Some(0), vec![1; 32])
        .tensor_info("b", vec![8], 0, Some(128), vec![2; 32])
        .to_bytes()
        .unwrap();
    let p = header_problem(&b);
    assert!(
        matches!(
            p,
            HeaderProblem::Gap {
                start: 32,
                end: 128
            }
        ),
        "{p}"
    );
    // Out of order but packed is fine: no byte is hidden.
    let b = GgufBuilder::new("x")
        .tensor_info("a", vec![8], 0, Some(32), vec![1; 32])
        .tensor_info("b", vec![8], 0, Some(0), vec![2; 32])
        .to_bytes()
        .unwrap();
    assert!(open_bytes(&b).is_ok());
}

#[test]
fn one_shard_of_a_split_model_is_refused_not_read_partially() {
    let b = GgufBuilder::new("llama")
        .kv("split.no", Meta::U16(0))
        .kv("split.count", Meta::U16(3))
        .kv("split.tensors.count", Meta::I32(10))
        .to_bytes()
        .unwrap();
    let p = header_problem(&b);
    assert!(
        matches!(&p, HeaderProblem::Unsupported { what, .. } if what.contains("3 shards")),
        "{p}"
    );
    // A "split" of one file is just a file.
    let b = GgufBuilder::new("llama")
        .kv("split.count", Meta::U16(1))
        .to_bytes()
        .unwrap();
    assert!(open_bytes(&b).is_ok());
}

#[test]
fn duplicate_tensor_names() {
    let b = GgufBuilder::new("x")
        .tensor_f32("t", &[1], &[1.0])
        .tensor_f32("t", &[1], &[2.0])
        .to_bytes()
        .unwrap();
    let err = failure(open_bytes(&b));
    assert!(
        matches!(&err, Error::DuplicateTensor { tensor, .. } if tensor == "t"),
        "{err}"
    );
}

/// A cheap stand-in for the fuzz target that runs in CI: thousands of single- and multi-byte
/// corruptions of a valid file must each open or fail cleanly, and whatever opens must read.
#[test]
fn corrupted_files_never_panic() {
    let bytes = valid();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    for _ in 0..3000 {
        let mut b = bytes.clone();
        for _ in 0..=(next() % 4) {
            let at = (next() % b.len() as u64) as usize;
            b[at] = next() as u8;
        }
        std::fs::write(&path, &b).unwrap();
        if let Ok(source) = FORMAT.open(&path, &Limits::default()) {
            for (i, t) in source.tensors().iter().enumerate() {
                let mut out = vec![0f32; t.numel.min(1 << 16)];
                let _ = source.read_f32(i, 0, &mut out);
            }
        }
    }
}
