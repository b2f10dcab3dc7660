//! The safetensors format: round trips, sharded directories, and adversarial files, each
//! asserting the exact error variant.

use std::path::{Path, PathBuf};

use weightkin_core::safetensors::{FORMAT, NAME};
use weightkin_core::testing::{pack_f4, pack_f6, safetensors_bytes, SafetensorsBuilder};
use weightkin_core::{
    Dtype, Error, Format, HeaderProblem, Limits, Result, TensorProblem, WeightSource,
};

fn open(path: &Path) -> Result<Box<dyn WeightSource>> {
    FORMAT.open(path, &Limits::default())
}

/// The error of an open that must fail.
fn failure(result: Result<Box<dyn WeightSource>>) -> Error {
    match result {
        Ok(_) => panic!("opened, but should have failed"),
        Err(err) => err,
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn read_all(source: &dyn WeightSource, index: usize) -> Vec<f32> {
    let mut out = vec![0.0; source.tensors()[index].numel];
    source.read_f32(index, 0, &mut out).unwrap();
    out
}

fn values(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i as f32 - 3.0) * 0.375).collect()
}

#[test]
fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let w = values(6);
    let builder = SafetensorsBuilder::new()
        .tensor_f32("layer.1.weight", &[2, 3], &w)
        .tensor_bf16("layer.0.weight", &[4], &[1.0, -2.0, 0.5, 3.0])
        .tensor_f16("a.f16", &[3], &[0.25, -1.0, 2048.0])
        .tensor_raw("e4m3", Dtype::F8_E4M3, &[2], [0x38, 0xb8]) // 1.0, -1.0
        .tensor_raw("fp4", Dtype::F4, &[2, 3], pack_f4(&[1, 2, 3, 9, 10, 7]))
        .tensor_raw(
            "fp6",
            Dtype::F6_E3M2,
            &[4],
            pack_f6(&[0x0c, 0x2c, 0x01, 0x1f]),
        )
        .tensor_raw("ids", Dtype::I32, &[2], [1, 0, 0, 0, 2, 0, 0, 0])
        .tensor_f32("scalar", &[], &[42.0])
        .tensor_f32("empty", &[0, 5], &[])
        .metadata("format", "pt")
        .metadata("author", "test");
    let bytes = builder.to_bytes().unwrap();
    assert_eq!(bytes, builder.to_bytes().unwrap(), "deterministic");
    // The reference implementation accepts what the builder writes.
    ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let path = write(dir.path(), "m.safetensors", &bytes);

    assert!(FORMAT.sniff(&path, &bytes[..64]));
    let source = open(&path).unwrap();
    assert_eq!(source.format(), NAME);
    assert_eq!(source.files().len(), 1);
    assert_eq!(source.files()[0].path, path);
    assert_eq!(source.files()[0].size, bytes.len() as u64);
    let meta: Vec<_> = source
        .metadata()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(meta, [("author", "test"), ("format", "pt")]);

    let names: Vec<_> = source.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "a.f16",
            "e4m3",
            "empty",
            "fp4",
            "fp6",
            "ids",
            "layer.0.weight",
            "layer.1.weight",
            "scalar"
        ]
    );
    let t = &source.tensors()[source.find("layer.1.weight").unwrap()];
    assert_eq!(
        (t.shape.as_slice(), t.dtype, t.numel, t.byte_len, t.file),
        (&[2, 3][..], Dtype::F32, 6, 24, 0)
    );
    let t = &source.tensors()[source.find("fp4").unwrap()];
    assert_eq!((t.dtype, t.numel, t.byte_len), (Dtype::F4, 6, 3));

    let get = |name: &str| read_all(source.as_ref(), source.find(name).unwrap());
    assert_eq!(get("layer.1.weight"), w);
    assert_eq!(get("layer.0.weight"), [1.0, -2.0, 0.5, 3.0]);
    assert_eq!(get("a.f16"), [0.25, -1.0, 2048.0]);
    assert_eq!(get("e4m3"), [1.0, -1.0]);
    assert_eq!(get("fp4"), [0.5, 1.0, 1.5, -0.5, -1.0, 6.0]);
    assert_eq!(get("fp6"), [1.0, -1.0, 0.0625, 28.0]);
    assert_eq!(get("scalar"), [42.0]);
    assert_eq!(get("empty"), Vec::<f32>::new());

    // Every chunk size at every offset gives the same elements.
    let index = source.find("layer.1.weight").unwrap();
    for chunk in 1..=6 {
        for start in 0..=6 - chunk {
            let mut out = vec![0.0; chunk];
            source.read_f32(index, start, &mut out).unwrap();
            assert_eq!(out, w[start..start + chunk]);
        }
    }

    let ids = source.find("ids").unwrap();
    assert!(matches!(
        source.read_f32(ids, 0, &mut [0.0; 2]),
        Err(Error::NotConvertible {
            dtype: Dtype::I32,
            ..
        })
    ));
    assert!(matches!(
        source.read_f32(99, 0, &mut [0.0]),
        Err(Error::NoSuchTensor {
            index: 99,
            count: 9
        })
    ));
    assert!(matches!(
        source.read_f32(index, 4, &mut [0.0; 3]),
        Err(Error::ReadOutOfRange {
            start: 4,
            len: 3,
            numel: 6,
            ..
        })
    ));
    assert!(matches!(
        source.read_f32(index, usize::MAX, &mut [0.0; 2]),
        Err(Error::ReadOutOfRange { .. })
    ));
    // The F4 tensor's bytes hold no seventh element, even though to_f32 could decode one.
    let fp4 = source.find("fp4").unwrap();
    assert!(matches!(
        source.read_f32(fp4, 6, &mut [0.0]),
        Err(Error::ReadOutOfRange { .. })
    ));
}

#[test]
fn sniff() {
    let dir = tempfile::tempdir().unwrap();
    let valid = SafetensorsBuilder::new()
        .tensor_f32("x", &[1], &[1.0])
        .to_bytes()
        .unwrap();
    let p = Path::new("x.bin");
    assert!(FORMAT.sniff(p, &valid));
    assert!(!FORMAT.sniff(p, &valid[..8]));
    assert!(!FORMAT.sniff(p, b"PK\x03\x04 a zip file"));
    assert!(!FORMAT.sniff(p, &safetensors_bytes("", b"")));
    assert!(
        !FORMAT.sniff(p, b"\x01\0\0\0\0\0\0\0{"),
        "a header of 1 byte cannot be JSON"
    );
    assert!(FORMAT.sniff(
        Path::new("model.safetensors.index.json"),
        b"{\"weight_map\""
    ));
    assert!(!FORMAT.sniff(dir.path(), b""), "empty directory");
    write(dir.path(), "notes.txt", b"");
    assert!(!FORMAT.sniff(dir.path(), b""));
    write(dir.path(), "model-00001-of-00002.safetensors", &valid);
    assert!(FORMAT.sniff(dir.path(), b""));
}

/// Writes a two-shard model: `a.weight` in shard 1, `b.weight` and `b.bias` in shard 2.
fn two_shards(dir: &Path) {
    SafetensorsBuilder::new()
        .tensor_f32("a.weight", &[2], &[1.0, 2.0])
        .metadata("format", "pt")
        .write(&dir.join("model-00001-of-00002.safetensors"))
        .unwrap();
    SafetensorsBuilder::new()
        .tensor_f32("b.weight", &[3], &[3.0, 4.0, 5.0])
        .tensor_bf16("b.bias", &[1], &[6.0])
        .metadata("format", "other")
        .metadata("shard", "2")
        .write(&dir.join("model-00002-of-00002.safetensors"))
        .unwrap();
}

fn index_json(entries: &[(&str, &str)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(t, s)| (t.to_string(), (*s).into()))
        .collect();
    serde_json::json!({"metadata": {"total_size": 24}, "weight_map": map}).to_string()
}

#[test]
fn sharded_with_index() {
    let dir = tempfile::tempdir().unwrap();
    two_shards(dir.path());
    // The index omits `b.bias`: it is still included. A stray file the index does not name
    // is not part of the model.
    let index = index_json(&[
        ("a.weight", "model-00001-of-00002.safetensors"),
        ("b.weight", "model-00002-of-00002.safetensors"),
    ]);
    write(dir.path(), "model.safetensors.index.json", index.as_bytes());
    write(dir.path(), "zz-stray.safetensors", b"not even a header");

    assert!(FORMAT.sniff(dir.path(), b""));
    let source = open(dir.path()).unwrap();
    let files: Vec<_> = source.files().iter().map(|f| f.path.clone()).collect();
    assert_eq!(
        files,
        [
            dir.path().join("model-00001-of-00002.safetensors"),
            dir.path().join("model-00002-of-00002.safetensors")
        ]
    );
    let names: Vec<_> = source
        .tensors()
        .iter()
        .map(|t| (t.name.as_str(), t.file))
        .collect();
    assert_eq!(names, [("a.weight", 0), ("b.bias", 1), ("b.weight", 1)]);
    assert_eq!(read_all(source.as_ref(), 2), [3.0, 4.0, 5.0]);
    assert_eq!(read_all(source.as_ref(), 1), [6.0]);
    // Metadata is the union; the first file wins a conflicting key.
    assert_eq!(source.metadata().get("format").unwrap(), "pt");
    assert_eq!(source.metadata().get("shard").unwrap(), "2");

    // The index file can be opened directly, with the same result.
    let direct = open(&dir.path().join("model.safetensors.index.json")).unwrap();
    assert_eq!(direct.tensors(), source.tensors());
}

#[test]
fn sharded_without_index() {
    let dir = tempfile::tempdir().unwrap();
    two_shards(dir.path());
    write(dir.path(), "README.md", b"# not a shard");
    let source = open(dir.path()).unwrap();
    assert_eq!(source.files().len(), 2);
    let names: Vec<_> = source
        .tensors()
        .iter()
        .map(|t| (t.name.as_str(), t.file))
        .collect();
    assert_eq!(names, [("a.weight", 0), ("b.bias", 1), ("b.weight", 1)]);
}

#[test]
fn duplicate_tensor_across_shards() {
    let dir = tempfile::tempdir().unwrap();
    two_shards(dir.path());
    SafetensorsBuilder::new()
        .tensor_f32("b.weight", &[1], &[0.0])
        .write(&dir.path().join("extra.safetensors"))
        .unwrap();
    let err = failure(open(dir.path()));
    let Error::DuplicateTensor {
        tensor,
        first,
        second,
    } = err
    else {
        panic!("{err:?}");
    };
    assert_eq!(tensor, "b.weight");
    assert_eq!(first, dir.path().join("extra.safetensors"));
    assert_eq!(second, dir.path().join("model-00002-of-00002.safetensors"));
}

fn open_with_index(entries: &[(&str, &str)]) -> Error {
    let dir = tempfile::tempdir().unwrap();
    two_shards(dir.path());
    write(
        dir.path(),
        "model.safetensors.index.json",
        index_json(entries).as_bytes(),
    );
    failure(open(dir.path()))
}

#[test]
fn bad_shards_in_index() {
    for shard in [
        "../evil.safetensors",
        "/etc/passwd",
        "sub/x.safetensors",
        "sub\\x.safetensors",
        "..",
        ".",
        "",
    ] {
        let err = open_with_index(&[
            ("a.weight", "model-00001-of-00002.safetensors"),
            ("x", shard),
        ]);
        assert!(
            matches!(&err, Error::InvalidHeader { problem: HeaderProblem::BadShard { shard: s, tensor, .. }, .. } if s == shard && tensor == "x"),
            "{shard:?}: {err:?}"
        );
    }
    let err = open_with_index(&[("x", "missing.safetensors")]);
    assert!(
        matches!(
            err,
            Error::InvalidHeader {
                problem: HeaderProblem::BadShard { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn index_lists_tensor_not_in_its_shard() {
    let err = open_with_index(&[
        ("a.weight", "model-00001-of-00002.safetensors"),
        ("b.weight", "model-00001-of-00002.safetensors"),
    ]);
    assert!(
        matches!(&err, Error::InvalidHeader { problem: HeaderProblem::MissingFromShard { tensor, .. }, .. } if tensor == "b.weight"),
        "{err:?}"
    );
    let err = open_with_index(&[("ghost", "model-00001-of-00002.safetensors")]);
    assert!(
        matches!(
            err,
            Error::InvalidHeader {
                problem: HeaderProblem::MissingFromShard { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn directory_problems() {
    let dir = tempfile::tempdir().unwrap();
    let err = failure(open(dir.path()));
    assert!(
        matches!(
            err,
            Error::InvalidHeader {
                problem: HeaderProblem::EmptyDirectory(NAME),
                ..
            }
        ),
        "{err:?}"
    );

    let err = open_with_index(&[]);
    assert!(
        matches!(
            err,
            Error::InvalidHeader {
                problem: HeaderProblem::EmptyDirectory(_),
                ..
            }
        ),
        "{err:?}"
    );

    let err = open_with_index_text("{\"weight_map\": [1, 2]}");
    assert!(
        matches!(
            err,
            Error::InvalidHeader {
                problem: HeaderProblem::Json {
                    document: "index",
                    ..
                },
                ..
            }
        ),
        "{err:?}"
    );

    // Two indexes and no default one.
    two_shards(dir.path());
    let index = index_json(&[("a.weight", "model-00001-of-00002.safetensors")]);
    write(dir.path(), "a.safetensors.index.json", index.as_bytes());
    write(dir.path(), "b.safetensors.index.json", index.as_bytes());
    let err = failure(open(dir.path()));
    assert!(
        matches!(&err, Error::InvalidHeader { problem: HeaderProblem::AmbiguousIndex(list), .. } if list.len() == 2),
        "{err:?}"
    );
    let one = open(&dir.path().join("a.safetensors.index.json")).unwrap();
    assert_eq!(one.tensors().len(), 1);
}

fn open_with_index_text(text: &str) -> Error {
    let dir = tempfile::tempdir().unwrap();
    two_shards(dir.path());
    write(dir.path(), "model.safetensors.index.json", text.as_bytes());
    failure(open(dir.path()))
}

#[test]
fn limits_on_files_tensors_and_index() {
    let dir = tempfile::tempdir().unwrap();
    two_shards(dir.path());
    let tight = |f: fn(&mut Limits)| {
        let mut l = Limits::default();
        f(&mut l);
        l
    };
    let err = failure(FORMAT.open(dir.path(), &tight(|l| l.max_files = 1)));
    assert!(
        matches!(
            err,
            Error::InvalidHeader {
                problem: HeaderProblem::TooManyFiles { count: 2, limit: 1 },
                ..
            }
        ),
        "{err:?}"
    );
    // Each shard alone is within 2 tensors; together they are 3.
    let err = failure(FORMAT.open(dir.path(), &tight(|l| l.max_tensors = 2)));
    assert!(
        matches!(
            err,
            Error::InvalidHeader {
                problem: HeaderProblem::TooManyTensors { count: 3, limit: 2 },
                ..
            }
        ),
        "{err:?}"
    );
    let err = failure(FORMAT.open(dir.path(), &tight(|l| l.max_tensors = 1)));
    assert!(
        matches!(
            err,
            Error::InvalidHeader {
                problem: HeaderProblem::TooManyTensors { count: 2, limit: 1 },
                ..
            }
        ),
        "{err:?}"
    );

    let index = index_json(&[("a.weight", "model-00001-of-00002.safetensors")]);
    write(dir.path(), "model.safetensors.index.json", index.as_bytes());
    let err = failure(FORMAT.open(dir.path(), &tight(|l| l.max_index_bytes = 10)));
    assert!(
        matches!(
            err,
            Error::InvalidHeader {
                problem: HeaderProblem::TooLarge { limit: 10, .. },
                ..
            }
        ),
        "{err:?}"
    );
}

/// Opens `bytes` as a file with `limits`.
fn open_bytes_with(bytes: &[u8], limits: &Limits) -> Result<Box<dyn WeightSource>> {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "x.safetensors", bytes);
    FORMAT.open(&path, limits)
}

fn open_err(bytes: &[u8]) -> Error {
    failure(open_bytes_with(bytes, &Limits::default()))
}

/// A file with one header and `data_len` zero bytes of data.
fn file(header: &str, data_len: usize) -> Vec<u8> {
    safetensors_bytes(header, &vec![0; data_len])
}

fn header_problem(err: &Error) -> &HeaderProblem {
    match err {
        Error::InvalidHeader {
            problem,
            format: NAME,
            ..
        } => problem,
        other => panic!("expected InvalidHeader, got {other:?}"),
    }
}

fn tensor_problem(err: &Error) -> (&str, &TensorProblem) {
    match err {
        Error::InvalidTensor {
            tensor, problem, ..
        } => (tensor, problem),
        other => panic!("expected InvalidTensor, got {other:?}"),
    }
}

#[test]
fn truncated_files() {
    for len in [0, 1, 7] {
        let err = open_err(&vec![0; len]);
        assert!(
            matches!(header_problem(&err), HeaderProblem::Truncated { needed: 8, actual } if *actual == len as u64),
            "{err:?}"
        );
    }
    let mut bytes = 1000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[b'{'; 92]);
    let err = open_err(&bytes);
    assert!(
        matches!(
            header_problem(&err),
            HeaderProblem::Truncated {
                needed: 1008,
                actual: 100
            }
        ),
        "{err:?}"
    );
}

#[test]
fn header_length_is_checked_against_the_limit_before_the_file() {
    // u64::MAX would be an allocation of 16 EiB, were it trusted.
    let mut bytes = u64::MAX.to_le_bytes().to_vec();
    bytes.push(b'{');
    let err = open_err(&bytes);
    assert!(
        matches!(
            header_problem(&err),
            HeaderProblem::TooLarge {
                declared: u64::MAX,
                limit: 100_000_000
            }
        ),
        "{err:?}"
    );

    let valid = SafetensorsBuilder::new()
        .tensor_f32("x", &[4], &[0.0; 4])
        .to_bytes()
        .unwrap();
    let limits = Limits {
        max_header_bytes: 16,
        ..Limits::default()
    };
    let err = failure(open_bytes_with(&valid, &limits));
    assert!(
        matches!(
            header_problem(&err),
            HeaderProblem::TooLarge { limit: 16, .. }
        ),
        "{err:?}"
    );
}

#[test]
fn tensor_entry_problems() {
    let t = |dtype: &str, shape: &str, offsets: &str| {
        format!(r#"{{"t":{{"dtype":"{dtype}","shape":{shape},"data_offsets":{offsets}}}}}"#)
    };
    type Case = (String, usize, fn(&TensorProblem) -> bool);
    let cases: Vec<Case> = vec![
        (t("F32", "[4]", "[0,16]"), 8, |p| {
            matches!(
                p,
                TensorProblem::PastEnd {
                    end: 16,
                    available: 8
                }
            )
        }),
        (t("F32", "[4]", "[0,12]"), 12, |p| {
            matches!(
                p,
                TensorProblem::SizeMismatch {
                    dtype: Dtype::F32,
                    expected: 16,
                    actual: 12,
                    ..
                }
            )
        }),
        (t("F32", "[4294967296,4294967296,2]", "[0,0]"), 0, |p| {
            matches!(p, TensorProblem::ShapeOverflow(_))
        }),
        // The element count fits, the byte count does not.
        (t("F64", "[4611686018427387904]", "[0,0]"), 0, |p| {
            matches!(p, TensorProblem::ShapeOverflow(_))
        }),
        (t("F32", "[1,1,1,1,1]", "[0,4]"), 4, |p| {
            matches!(p, TensorProblem::RankTooLarge { rank: 5, limit: 4 })
        }),
        (
            t("F7", "[1]", "[0,1]"),
            1,
            |p| matches!(p, TensorProblem::UnknownDtype(d) if d == "F7"),
        ),
        (t("F32", "[1]", "[4,0]"), 4, |p| {
            matches!(p, TensorProblem::ReversedOffsets { start: 4, end: 0 })
        }),
    ];
    let limits = Limits {
        max_rank: 4,
        ..Limits::default()
    };
    for (header, data_len, check) in cases {
        let err = failure(open_bytes_with(&file(&header, data_len), &limits));
        let (name, problem) = tensor_problem(&err);
        assert_eq!(name, "t");
        assert!(check(problem), "{header}: {err:?}");
    }
}

#[test]
fn overlapping_tensors() {
    let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                     "b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    let err = open_err(&file(header, 12));
    let (name, problem) = tensor_problem(&err);
    assert_eq!(name, "b");
    assert!(
        matches!(problem, TensorProblem::Overlap { start: 4, end: 12, other } if other == "a"),
        "{err:?}"
    );
    // An exact alias of another tensor's bytes is an overlap too.
    let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                     "b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}"#;
    let err = open_err(&file(header, 8));
    assert!(
        matches!(tensor_problem(&err).1, TensorProblem::Overlap { .. }),
        "{err:?}"
    );
}

#[test]
fn holes_and_trailing_bytes() {
    let header = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},
                     "b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#;
    let err = open_err(&file(header, 12));
    assert!(
        matches!(
            header_problem(&err),
            HeaderProblem::Gap { start: 4, end: 8 }
        ),
        "{err:?}"
    );
    let header = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let err = open_err(&file(header, 5));
    assert!(
        matches!(
            header_problem(&err),
            HeaderProblem::Gap { start: 4, end: 5 }
        ),
        "{err:?}"
    );
}

#[test]
fn malformed_json() {
    let cases: &[&[u8]] = &[
        b"{not json",
        b"[]",
        b"{\"a\":{\"dtype\":\"F32\"}}",
        b"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}",
        b"{\"__metadata__\":{\"k\":1}}",
        b"{\"__metadata__\":{},\"__metadata__\":{}}",
        b"{} trailing",
        b"\xff\xfe{}",
    ];
    for &header in cases {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        let err = open_err(&bytes);
        let problem = header_problem(&err);
        assert!(
            if std::str::from_utf8(header).is_ok() {
                matches!(
                    problem,
                    HeaderProblem::Json {
                        document: "header",
                        ..
                    }
                )
            } else {
                matches!(problem, HeaderProblem::NotUtf8(_))
            },
            "{:?}: {err:?}",
            String::from_utf8_lossy(header)
        );
    }
}

#[test]
fn duplicate_name_in_one_header() {
    let header = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},
                     "a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    let err = open_err(&file(header, 8));
    assert!(
        matches!(&err, Error::DuplicateTensor { tensor, first, second } if tensor == "a" && first == second),
        "{err:?}"
    );
}

#[test]
fn too_many_tensors_in_one_header() {
    let bytes = SafetensorsBuilder::new()
        .tensor_f32("a", &[1], &[0.0])
        .tensor_f32("b", &[1], &[0.0])
        .tensor_f32("c", &[1], &[0.0])
        .to_bytes()
        .unwrap();
    let limits = Limits {
        max_tensors: 2,
        ..Limits::default()
    };
    let err = failure(open_bytes_with(&bytes, &limits));
    assert!(
        matches!(
            header_problem(&err),
            HeaderProblem::TooManyTensors { count: 3, limit: 2 }
        ),
        "{err:?}"
    );
}

#[test]
fn packed_tensor_of_partial_bytes_is_refused_like_the_safetensors_crate() {
    // 3 F4 elements are 12 bits; the crate refuses a tensor that does not end on a byte.
    let header = r#"{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}"#;
    let err = open_err(&file(header, 2));
    assert!(
        matches!(header_problem(&err), HeaderProblem::Rejected(_)),
        "{err:?}"
    );
}

#[test]
fn no_truncation_or_byte_flip_panics() {
    let valid = SafetensorsBuilder::new()
        .tensor_f32("a", &[2, 2], &[1.0, 2.0, 3.0, 4.0])
        .tensor_raw("b", Dtype::F6_E2M3, &[4], pack_f6(&[1, 2, 3, 4]))
        .metadata("k", "v")
        .to_bytes()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let try_open = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        if let Ok(source) = open(&path) {
            for i in 0..source.tensors().len() {
                let mut out = vec![0.0; source.tensors()[i].numel];
                let _ = source.read_f32(i, 0, &mut out);
            }
        }
    };
    for len in 0..valid.len() {
        try_open(&valid[..len]);
    }
    for i in 0..valid.len() {
        for v in [0x00, 0x22, 0x39, 0x5b, 0x7d, 0xff] {
            let mut bytes = valid.clone();
            bytes[i] = v;
            try_open(&bytes);
        }
    }
}
