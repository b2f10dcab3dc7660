//! `weightkin-hub` end to end: a fake Hugging Face cache resolved offline, and remote reads
//! against a hub-shaped server on the loopback interface (`testing::HubServer`): headers
//! first, only the tensors asked for, redirects without the token, a gated repository, a
//! dropped connection resumed, a server that ignores `Range`, whole-file verification, and
//! `--offline` from the store. No traffic leaves 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weightkin_core::testing::{error_chain, SafetensorsBuilder};
use weightkin_core::{Format, Limits, NoFetchProgress, WeightSource};
use weightkin_hub::testing::{sha256_hex, HubServer, Repo};
use weightkin_hub::{Error, HfRef, Hub, HubEnv, HubOptions, Origin, Retry, Token, Warning};

const COMMIT: &str = "1111111111111111111111111111111111111111";
const TAGGED: &str = "2222222222222222222222222222222222222222";
const SECRET: &str = "hf_TOPSECRETtoken123";

/// A model of three tensors: `a.weight` (64×64), `b.weight` (256×256: big enough to be
/// dropped mid-body), `c.bias` (8).
fn model() -> Vec<u8> {
    let vals = |n: usize, k: f32| {
        (0..n)
            .map(|i| (i as f32 * 0.37 + k).sin())
            .collect::<Vec<_>>()
    };
    SafetensorsBuilder::new()
        .tensor_f32("a.weight", &[64, 64], &vals(64 * 64, 1.0))
        .tensor_f32("b.weight", &[256, 256], &vals(256 * 256, 2.0))
        .tensor_f32("c.bias", &[8], &vals(8, 3.0))
        .to_bytes()
        .unwrap()
}

fn header_len(file: &[u8]) -> u64 {
    8 + u64::from_le_bytes(file[..8].try_into().unwrap())
}

struct Setup {
    _dir: tempfile::TempDir,
    store: PathBuf,
    hf: PathBuf,
    warnings: Arc<Mutex<Vec<Warning>>>,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let hf = dir.path().join("hf");
        std::fs::create_dir_all(&hf).unwrap();
        Setup {
            store,
            hf,
            _dir: dir,
            warnings: Arc::default(),
        }
    }

    fn env(&self, endpoint: &str, token: Option<&str>) -> HubEnv {
        HubEnv {
            endpoint: endpoint.to_owned(),
            hf_caches: vec![self.hf.clone()],
            token: token.and_then(Token::new),
            offline: false,
            store: Some(self.store.clone()),
        }
    }

    fn hub(&self, endpoint: &str, token: Option<&str>, offline: bool) -> Hub {
        let warnings = self.warnings.clone();
        let opts = HubOptions {
            offline,
            retry: Retry {
                attempts: 4,
                first_wait: Duration::from_millis(1),
                max_wait: Duration::from_millis(5),
            },
            warn: Arc::new(move |w| warnings.lock().unwrap().push(w.clone())),
            ..HubOptions::default()
        };
        Hub::new(self.env(endpoint, token), opts)
    }
}

fn open(hub: &Hub, reference: &str) -> (Box<dyn WeightSource>, weightkin_hub::Handle) {
    let located = hub.locate(&HfRef::parse(reference).unwrap()).unwrap();
    let inner = weightkin_core::safetensors::FORMAT
        .open(&located.path, &Limits::default())
        .unwrap();
    located.wrap(inner).unwrap()
}

fn read(source: &dyn WeightSource, name: &str) -> weightkin_core::Result<Vec<f32>> {
    let i = source.find(name).unwrap();
    let mut out = vec![0f32; source.tensors()[i].numel];
    source.read_f32(i, 0, &mut out)?;
    Ok(out)
}

fn local(bytes: &[u8], name: &str) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let s = weightkin_core::safetensors::FORMAT
        .open(&path, &Limits::default())
        .unwrap();
    read(s.as_ref(), name).unwrap()
}

fn server(repo: Repo) -> HubServer {
    HubServer::start(BTreeMap::from([("org/model".to_owned(), repo)])).unwrap()
}

#[test]
fn remote_reads_fetch_headers_then_only_the_tensors_read_and_rerun_fetches_nothing() {
    let file = model();
    let srv = server(Repo::new(
        COMMIT,
        &[
            ("model.safetensors", file.clone()),
            ("README.md", b"hi".to_vec()),
        ],
    ));
    let s = Setup::new();
    let hub = s.hub(&srv.url(), None, false);
    let (source, handle) = open(&hub, "hf://org/model");
    assert_eq!(handle.origin(), Origin::Hub);
    assert_eq!(handle.commit(), COMMIT);
    assert_eq!(srv.body_bytes(), header_len(&file), "headers only at open");

    let a = source.find("a.weight").unwrap();
    let bytes_a = source.tensors()[a].byte_len;
    source.prefetch(&[a], &NoFetchProgress).unwrap();
    assert_eq!(srv.body_bytes(), header_len(&file) + bytes_a);
    assert_eq!(
        read(source.as_ref(), "a.weight").unwrap(),
        local(&file, "a.weight")
    );
    assert_eq!(
        srv.body_bytes(),
        header_len(&file) + bytes_a,
        "read after prefetch: no fetch"
    );
    // A tensor never prefetched is fetched when first read.
    assert_eq!(
        read(source.as_ref(), "c.bias").unwrap(),
        local(&file, "c.bias")
    );

    let p = handle.provenance(source.files()).unwrap();
    assert_eq!(p.commit, COMMIT);
    assert_eq!(
        p.files[0].sha256.as_deref(),
        Some(sha256_hex(&file).as_str())
    );
    assert!(!p.files[0].complete && p.files[0].blake3.is_none());
    let range = source.stored_range(a).unwrap();
    let expected = blake3::hash(&file[range.start as usize..range.end as usize])
        .to_hex()
        .to_string();
    assert_eq!(p.tensors.keys().collect::<Vec<_>>(), ["a.weight", "c.bias"]);
    assert_eq!(p.tensors["a.weight"], expected);

    // A new process with the same store: one API request, no file bytes.
    drop(source);
    srv.reset_counts();
    let (again, _) = open(&s.hub(&srv.url(), None, false), "hf://org/model");
    again
        .prefetch(&[again.find("a.weight").unwrap()], &NoFetchProgress)
        .unwrap();
    assert_eq!(srv.body_bytes(), 0);
    assert!(
        srv.seen().iter().all(|r| r.target.starts_with("/api/")),
        "{:?}",
        srv.seen()
    );

    // Offline: what was fetched reads; what was not is an error naming it, never zeros.
    srv.reset_counts();
    let (offline, _) = open(&s.hub(&srv.url(), None, true), "hf://org/model");
    assert_eq!(
        read(offline.as_ref(), "a.weight").unwrap(),
        local(&file, "a.weight")
    );
    let err = read(offline.as_ref(), "b.weight").unwrap_err();
    let chain = error_chain(&err);
    assert!(
        chain.contains("b.weight") && chain.contains("network is off"),
        "{chain}"
    );
    assert!(srv.seen().is_empty(), "offline sent {:?}", srv.seen());
}

#[test]
fn redirects_to_another_host_do_not_carry_the_token() {
    let file = model();
    let mut repo = Repo::new(COMMIT, &[("model.safetensors", file.clone())]);
    repo.gated_token = Some(SECRET.to_owned());
    let srv = server(repo.clone());
    let cdn = server(repo);
    srv.redirect_to(&cdn);
    let s = Setup::new();
    let (source, _) = open(&s.hub(&srv.url(), Some(SECRET), false), "hf://org/model");
    assert_eq!(
        read(source.as_ref(), "b.weight").unwrap(),
        local(&file, "b.weight")
    );
    let bearer = format!("Bearer {SECRET}");
    assert!(!srv.seen().is_empty());
    assert!(srv
        .seen()
        .iter()
        .all(|r| r.authorization.as_deref() == Some(bearer.as_str())));
    assert!(!cdn.seen().is_empty());
    assert!(
        cdn.seen().iter().all(|r| r.authorization.is_none()),
        "the token followed a redirect to another port: {:?}",
        cdn.seen()
    );
    assert_eq!(srv.body_bytes(), 0, "file bytes come from the CDN");
}

#[test]
fn gated_repository_without_a_token_is_a_clear_error_that_never_shows_the_token() {
    let mut repo = Repo::new(COMMIT, &[("model.safetensors", model())]);
    repo.gated_token = Some(SECRET.to_owned());
    let srv = server(repo);
    let s = Setup::new();
    let r = HfRef::parse("hf://org/model").unwrap();
    let err = s.hub(&srv.url(), None, false).locate(&r).err().unwrap();
    assert!(
        matches!(
            err,
            Error::Unauthorized {
                status: 401,
                with_token: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("HF_TOKEN"), "{err}");

    let wrong = "hf_wrongTOKENvalue";
    let err = s
        .hub(&srv.url(), Some(wrong), false)
        .locate(&r)
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            Error::Unauthorized {
                with_token: true,
                ..
            }
        ),
        "{err:?}"
    );
    let shown = format!("{err} {err:?} {}", error_chain(&err));
    assert!(!shown.contains(wrong), "{shown}");
}

#[test]
fn a_dropped_connection_is_resumed_where_it_stopped() {
    let file = model();
    let srv = server(Repo::new(COMMIT, &[("model.safetensors", file.clone())]));
    let s = Setup::new();
    let (source, _) = open(&s.hub(&srv.url(), None, false), "hf://org/model");
    let b = source.find("b.weight").unwrap();
    let range = source.stored_range(b).unwrap();
    srv.reset_counts();
    srv.faults()
        .drop_after
        .store(100_000, std::sync::atomic::Ordering::Relaxed);
    srv.faults()
        .drops
        .store(2, std::sync::atomic::Ordering::Relaxed);
    source.prefetch(&[b], &NoFetchProgress).unwrap();
    assert_eq!(
        read(source.as_ref(), "b.weight").unwrap(),
        local(&file, "b.weight")
    );
    let ranges: Vec<String> = srv.seen().iter().filter_map(|r| r.range.clone()).collect();
    let end = range.end - 1;
    assert_eq!(
        ranges,
        [
            format!("bytes={}-{end}", range.start),
            format!("bytes={}-{end}", range.start + 100_000),
            format!("bytes={}-{end}", range.start + 200_000),
        ]
    );
    assert_eq!(
        srv.body_bytes(),
        range.end - range.start,
        "no byte fetched twice"
    );
}

#[test]
fn drops_without_progress_give_up_after_the_retry_budget() {
    let srv = server(Repo::new(COMMIT, &[("model.safetensors", model())]));
    let s = Setup::new();
    let (source, _) = open(&s.hub(&srv.url(), None, false), "hf://org/model");
    srv.faults()
        .drop_after
        .store(0, std::sync::atomic::Ordering::Relaxed);
    srv.faults()
        .drops
        .store(100, std::sync::atomic::Ordering::Relaxed);
    let err = source
        .prefetch(&[source.find("b.weight").unwrap()], &NoFetchProgress)
        .unwrap_err();
    let chain = error_chain(&err);
    assert!(chain.contains("after 4 attempt(s)"), "{chain}");
}

#[test]
fn a_server_that_ignores_range_is_read_from_the_start_with_a_warning() {
    let file = model();
    let srv = server(Repo::new(COMMIT, &[("model.safetensors", file.clone())]));
    srv.faults()
        .ignore_range
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let s = Setup::new();
    let (source, _) = open(&s.hub(&srv.url(), None, false), "hf://org/model");
    assert_eq!(
        read(source.as_ref(), "c.bias").unwrap(),
        local(&file, "c.bias")
    );
    assert_eq!(
        read(source.as_ref(), "a.weight").unwrap(),
        local(&file, "a.weight")
    );
    let warnings = s.warnings.lock().unwrap().clone();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        matches!(&warnings[0], Warning::RangeIgnored { url } if url.contains("model.safetensors"))
    );
}

#[test]
fn a_wholly_fetched_file_is_verified_against_the_hub_sha256() {
    let file = model();
    let srv = server(Repo::new(COMMIT, &[("model.safetensors", file.clone())]));
    let s = Setup::new();
    let (source, handle) = open(&s.hub(&srv.url(), None, false), "hf://org/model");
    let all: Vec<usize> = (0..source.tensors().len()).collect();
    source.prefetch(&all, &NoFetchProgress).unwrap();
    let p = handle.provenance(source.files()).unwrap();
    assert!(p.files[0].complete);
    assert_eq!(
        p.files[0].blake3,
        Some(blake3::hash(&file).to_hex().to_string())
    );
    assert!(p.tensors.is_empty(), "the file hash identifies it");

    // Bytes that do not hash to the SHA-256 the hub lists: refused, and forgotten.
    let srv = server(Repo::new(COMMIT, &[("model.safetensors", file.clone())]));
    srv.faults()
        .wrong_sha
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let s = Setup::new();
    let (source, _) = open(&s.hub(&srv.url(), None, false), "hf://org/model");
    let err = source.prefetch(&all, &NoFetchProgress).unwrap_err();
    assert!(
        error_chain(&err).contains("SHA-256"),
        "{}",
        error_chain(&err)
    );
    let offline = s.hub(&srv.url(), None, true);
    let located = offline.locate(&HfRef::parse("hf://org/model").unwrap());
    assert!(
        located.is_err(),
        "forgotten bytes (even the header) are not served offline"
    );
}

/// Builds a fake Hugging Face cache: `main` → COMMIT with `model.safetensors` at the root
/// (a link into `blobs/`, as `huggingface_hub` makes it), tag `v1.0` → TAGGED with a sharded
/// model under `sub/`, and a snapshot whose index names a shard the cache lacks.
fn fake_cache(root: &Path, file: &[u8]) {
    let repo = root.join("models--org--model");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    std::fs::write(repo.join("refs/v1.0"), format!("{TAGGED}\n")).unwrap();
    std::fs::write(
        repo.join("refs/broken"),
        "3333333333333333333333333333333333333333",
    )
    .unwrap();
    let sha = sha256_hex(file);
    std::fs::write(repo.join("blobs").join(&sha), file).unwrap();
    let main = repo.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(&main).unwrap();
    std::os::unix::fs::symlink(format!("../../blobs/{sha}"), main.join("model.safetensors"))
        .unwrap();

    let sub = repo.join("snapshots").join(TAGGED).join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    let shard = |name: &str, v: f32| {
        SafetensorsBuilder::new()
            .tensor_f32(name, &[2], &[v, v + 1.0])
            .write(&sub.join(format!("{name}.safetensors")))
            .unwrap();
    };
    shard("x", 1.0);
    shard("y", 2.0);
    std::fs::write(
        sub.join("model.safetensors.index.json"),
        r#"{"weight_map": {"x": "x.safetensors", "y": "y.safetensors"}}"#,
    )
    .unwrap();
    let broken = repo.join("snapshots/3333333333333333333333333333333333333333");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("model.safetensors.index.json"),
        r#"{"weight_map": {"x": "gone.safetensors"}}"#,
    )
    .unwrap();
}

#[test]
fn the_hugging_face_cache_resolves_offline_with_revisions_and_subpaths() {
    let s = Setup::new();
    let file = model();
    // The cache is the second directory searched: the first does not have the repository.
    let first = s.hf.join("empty");
    std::fs::create_dir_all(&first).unwrap();
    let cache = s.hf.join("cache");
    fake_cache(&cache, &file);
    let mut env = s.env("http://127.0.0.1:9", None);
    env.hf_caches = vec![first, cache.clone()];
    env.offline = true;
    let hub = Hub::new(env, HubOptions::default());
    let snapshots = cache.join("models--org--model/snapshots");

    let at = |reference: &str| hub.locate(&HfRef::parse(reference).unwrap());
    let l = at("hf://org/model").unwrap();
    assert_eq!(l.path, snapshots.join(COMMIT));
    assert_eq!(
        (l.handle().origin(), l.handle().commit()),
        (Origin::HfCache, COMMIT)
    );
    let l = at("hf://org/model/model.safetensors").unwrap();
    assert_eq!(l.path, snapshots.join(COMMIT).join("model.safetensors"));
    let l = at(&format!("hf://org/model@{COMMIT}")).unwrap();
    assert_eq!(l.handle().commit(), COMMIT);
    let l = at("hf://org/model@v1.0/sub").unwrap();
    assert_eq!(l.path, snapshots.join(TAGGED).join("sub"));
    assert_eq!(l.handle().commit(), TAGGED);
    let l = at(&format!(
        "hf://org/model@{}/sub/x.safetensors",
        TAGGED.to_uppercase()
    ))
    .unwrap();
    assert_eq!(l.path, snapshots.join(TAGGED).join("sub/x.safetensors"));

    // The located path opens, and the blob name gives the hub's SHA-256.
    let l = at("hf://org/model").unwrap();
    let inner = weightkin_core::safetensors::FORMAT
        .open(&l.path, &Limits::default())
        .unwrap();
    let (source, handle) = l.wrap(inner).unwrap();
    assert_eq!(
        read(source.as_ref(), "c.bias").unwrap(),
        local(&file, "c.bias")
    );
    let p = handle.provenance(source.files()).unwrap();
    assert_eq!(p.files[0].path, "model.safetensors");
    assert_eq!(p.files[0].sha256, Some(sha256_hex(&file)));
    assert!(p.tensors.is_empty());

    // Offline misses say what is missing and where it looked.
    for (reference, missing) in [
        ("hf://org/model@v2", "no ref `v2`"),
        ("hf://org/other", "models--org--other"),
        ("hf://org/model@v1.0/nope", "lacks `nope`"),
        ("hf://org/model@broken", "`gone.safetensors`"),
    ] {
        let err = at(reference).err().unwrap();
        let text = err.to_string();
        assert!(matches!(err, Error::Offline { .. }), "{reference}: {err:?}");
        assert!(
            text.contains(missing) && text.contains("offline"),
            "{reference}: {text}"
        );
        assert!(text.contains(cache.to_str().unwrap()), "{text}");
    }
}

#[test]
fn a_sharded_model_in_a_subdirectory_fetches_the_index_and_each_shard_header() {
    let shard = |name: &str, v: f32| {
        SafetensorsBuilder::new()
            .tensor_f32(name, &[4, 4], &[v; 16])
            .to_bytes()
            .unwrap()
    };
    let (x, y) = (shard("x.weight", 1.5), shard("y.weight", -2.0));
    let index = br#"{"metadata": {}, "weight_map": {"x.weight": "a.safetensors", "y.weight": "b.safetensors"}}"#.to_vec();
    let mut repo = Repo::new(COMMIT, &[("model.safetensors", model())]);
    repo.add_commit(
        TAGGED,
        &[
            ("sub/model.safetensors.index.json", index.clone()),
            ("sub/a.safetensors", x.clone()),
            ("sub/b.safetensors", y.clone()),
            ("sub/unrelated.safetensors", shard("z", 0.0)),
        ],
    );
    repo.refs.insert("v2".to_owned(), TAGGED.to_owned());
    let srv = server(repo);
    let s = Setup::new();
    let (source, handle) = open(&s.hub(&srv.url(), None, false), "hf://org/model@v2/sub");
    assert_eq!(handle.commit(), TAGGED);
    assert_eq!(
        srv.body_bytes(),
        index.len() as u64 + header_len(&x) + header_len(&y),
        "the index whole, then each listed shard's header; never the unlisted file"
    );
    assert_eq!(read(source.as_ref(), "y.weight").unwrap(), vec![-2.0; 16]);
    let p = handle.provenance(source.files()).unwrap();
    let paths: Vec<&str> = p.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["sub/a.safetensors", "sub/b.safetensors"]);
    // Reading its one tensor completed `b.safetensors`: verified, and named by its hash.
    assert!(!p.files[0].complete && p.files[1].complete);
    assert_eq!(
        p.files[1].blake3,
        Some(blake3::hash(&y).to_hex().to_string())
    );
    assert!(p.tensors.is_empty());

    let err = s
        .hub(&srv.url(), None, false)
        .locate(&HfRef::parse("hf://org/model@v2/nowhere").unwrap())
        .err()
        .unwrap();
    assert!(matches!(err, Error::NoWeights { .. }), "{err:?}");
}
