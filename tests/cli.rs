//! The `weightkin` binary end to end.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::util::{command, stderr, stdout, weightkin};

#[test]
fn demo_runs_offline_and_shows_the_norm_trap() {
    let dir = tempfile::tempdir().unwrap();
    let out = weightkin(dir.path(), &["demo", "--keep", "family"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("base vs fine-tuned copy"), "{text}");
    assert!(
        text.contains("not compared: 1 tensor(s), non-float dtype"),
        "{text}"
    );
    // The layer-subset model's alignment is recovered: B's layer j is A's layer 2j.
    assert!(
        text.contains("layer alignment of model.layers (B→A, from cka grids): 0→0 1→2 2→4 3→6"),
        "{text}"
    );
    for f in [
        "base.safetensors",
        "finetuned.safetensors",
        "independent.safetensors",
        "subset.safetensors",
    ] {
        assert!(dir.path().join("family").join(f).exists(), "{f}");
    }
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("family/report.json")).unwrap(),
    )
    .unwrap();
    let median = |cmp: usize, class: &str, metric: &str| -> f64 {
        let classes = json["comparisons"][cmp]["classes"].as_array().unwrap();
        let c = classes.iter().find(|c| c["class"] == class).unwrap();
        let s = c["stats"].as_array().unwrap();
        s.iter().find(|s| s["metric"] == metric).unwrap()["median"]
            .as_f64()
            .unwrap()
    };
    let norm = "model.layers.*.input_layernorm.weight";
    let q = "model.layers.*.self_attn.q_proj.weight";
    // Fine-tuned copy: high on everything.
    assert!(median(0, q, "pearson") > 0.99);
    assert!(median(0, norm, "pearson") > 0.99);
    // Independent model: matrices unrelated, norm weights fool cosine but not Pearson.
    assert!(median(1, q, "cosine").abs() < 0.05);
    assert!(median(1, norm, "cosine") > 0.98);
    assert!(median(1, norm, "pearson").abs() < 0.3);
}

#[test]
fn reports_are_identical_for_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let gen = weightkin(dir.path(), &["demo", "--keep", "m", "-j", "1"]);
    assert!(gen.status.success(), "{}", stderr(&gen));
    let mut outputs = Vec::new();
    for threads in ["1", "2", "7"] {
        let out_dir = format!("out-{threads}");
        let out = weightkin(
            dir.path(),
            &[
                "audit",
                "m/demo.toml",
                "--out",
                &out_dir,
                "--threads",
                threads,
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let json = std::fs::read(dir.path().join(&out_dir).join("report.json")).unwrap();
        let md = std::fs::read(dir.path().join(&out_dir).join("report.md")).unwrap();
        outputs.push((json, md));
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]));
    // And the demo's own report (written with -j 1) matches too.
    let demo_json = std::fs::read(dir.path().join("m/report.json")).unwrap();
    assert_eq!(demo_json, outputs[0].0);
}

/// Reading cold files with `O_DIRECT` (`WEIGHTKIN_DIRECT_READS=always`: every full pass, the
/// null's subsamples and the file hashes' left-over units, where the file system allows it)
/// writes the same report bytes as reading them through the page cache (`never`); a value
/// that is neither of the three is said on stderr and taken as `auto`.
#[test]
fn direct_reads_write_the_same_reports() {
    let dir = tempfile::tempdir().unwrap();
    let gen = weightkin(dir.path(), &["demo", "--keep", "m"]);
    assert!(gen.status.success(), "{}", stderr(&gen));
    let mut outputs = Vec::new();
    for mode in ["never", "always", "sometimes"] {
        let out_dir = format!("out-{mode}");
        let args = ["audit", "m/demo.toml", "--out", &out_dir, "--no-hash-cache"];
        let out = command(dir.path(), &args)
            .env("WEIGHTKIN_DIRECT_READS", mode)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let warned = stderr(&out).contains("WEIGHTKIN_DIRECT_READS=\"sometimes\"");
        assert_eq!(warned, mode == "sometimes", "{}", stderr(&out));
        let json = std::fs::read(dir.path().join(&out_dir).join("report.json")).unwrap();
        let md = std::fs::read(dir.path().join(&out_dir).join("report.md")).unwrap();
        outputs.push((json, md));
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn compare_prints_markdown_or_json() {
    let dir = tempfile::tempdir().unwrap();
    let gen = weightkin(dir.path(), &["demo", "--keep", "m"]);
    assert!(gen.status.success());
    let md = weightkin(
        dir.path(),
        &["compare", "m/base.safetensors", "m/finetuned.safetensors"],
    );
    assert!(md.status.success(), "{}", stderr(&md));
    assert!(stdout(&md).starts_with("# weightkin audit: compare m/base.safetensors"));

    let json = weightkin(
        dir.path(),
        &[
            "compare",
            "m/base.safetensors",
            "m/independent.safetensors",
            "--format",
            "json",
            "--metric",
            "pearson",
            "--include",
            "model.layers.*.mlp.**",
        ],
    );
    assert!(json.status.success(), "{}", stderr(&json));
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    let cmp = &v["comparisons"][0];
    assert_eq!(cmp["metrics"], serde_json::json!(["pearson"]));
    // 8 layers × 3 MLP matrices.
    assert_eq!(cmp["summary"]["compared"], 24);
    assert!(cmp["not_compared"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["reason"] == "excluded"));
}

#[test]
fn inspect_and_plugins() {
    let dir = tempfile::tempdir().unwrap();
    assert!(weightkin(dir.path(), &["demo", "--keep", "m"])
        .status
        .success());
    let out = weightkin(dir.path(), &["inspect", "m/finetuned.safetensors"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("format: safetensors"));
    assert!(text.contains("model.layers.0.mlp.up_proj.weight"));
    assert!(text.contains("BF16"));
    assert!(text.contains("I64"));

    let out = weightkin(dir.path(), &["inspect", "--json", "m/base.safetensors"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["format"], "safetensors");
    assert_eq!(v["tensors"].as_array().unwrap().len(), 76);

    let out = weightkin(dir.path(), &["plugins"]);
    let text = stdout(&out);
    for name in ["safetensors", "cosine", "pearson"] {
        assert!(text.contains(name), "{text}");
    }
}

#[test]
fn fail_on_gates_on_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    assert!(weightkin(dir.path(), &["demo", "--keep", "m"])
        .status
        .success());
    let cmp = |b: &str, fail_on: &str| {
        weightkin(
            dir.path(),
            &["compare", "m/base.safetensors", b, "--fail-on", fail_on],
        )
    };
    let out = cmp("m/finetuned.safetensors", "derived");
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--fail-on: a ↔ b: derived"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        cmp("m/finetuned.safetensors", "independent").status.code(),
        Some(0)
    );
    assert_eq!(
        cmp("m/independent.safetensors", "derived").status.code(),
        Some(0)
    );
    assert_eq!(
        cmp("m/independent.safetensors", "independent")
            .status
            .code(),
        Some(4)
    );
    // audit writes its reports first, then gates.
    let out = weightkin(
        dir.path(),
        &["audit", "m/demo.toml", "--out", "r", "--fail-on", "derived"],
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(dir.path().join("r/report.json").exists());
    assert!(stdout(&out).contains("base vs independent model: independent."));
}

#[test]
fn exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    // Usage error.
    let out = weightkin(dir.path(), &["audit"]);
    assert_eq!(out.status.code(), Some(2));
    let out = weightkin(dir.path(), &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    // Missing recipe: a readable error chain, exit 1.
    let out = weightkin(dir.path(), &["audit", "nope.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: cannot read recipe nope.toml\n  caused by: "),
        "{err}"
    );
    // Unknown format for a file that is no model.
    std::fs::write(dir.path().join("x.bin"), b"hello").unwrap();
    let out = weightkin(dir.path(), &["inspect", "x.bin"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no registered format recognises this file"));
    // --help is success.
    assert_eq!(weightkin(dir.path(), &["--help"]).status.code(), Some(0));
}

/// Runs the binary with its hash cache in `cache`.
fn cached(dir: &Path, cache: &Path, args: &[&str]) -> Output {
    let out = command(dir, args)
        .env("WEIGHTKIN_CACHE_DIR", cache)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

/// The hash cache's entries (none if it was never created).
fn entries(cache: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(cache.join("blake3")) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// The BLAKE3 hash a JSON report gives to model `model`'s only file.
fn file_hash(report: &Output, model: &str) -> String {
    let v: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let m = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == model)
        .unwrap();
    m["files"][0]["blake3"].as_str().unwrap().to_owned()
}

/// Generates the demo family in `dir/m` and waits until its files are old enough for the
/// hash cache to store them: their ctime, which nothing can set back, must be 3 s older than
/// the start of hashing.
fn aged_demo_family(dir: &Path) {
    let out = weightkin(dir, &["demo", "--keep", "m", "--no-hash-cache"]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(3500));
}

#[test]
fn hash_cache_skips_unchanged_files_and_never_serves_a_stale_hash() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    aged_demo_family(dir.path());
    let args = [
        "compare",
        "m/base.safetensors",
        "m/finetuned.safetensors",
        "--format",
        "json",
    ];
    let uncached = [&args[..], &["--no-hash-cache"]].concat();
    let run = |args: &[&str]| cached(dir.path(), &cache, args);

    // First run hashes and stores both files; the second is served from the cache; the
    // reports are byte-identical, and identical to one without the cache.
    let first = run(&args);
    assert_eq!(entries(&cache).len(), 2, "{:?}", entries(&cache));
    let second = run(&args);
    assert_eq!(first.stdout, second.stdout);
    assert_eq!(first.stdout, run(&uncached).stdout);

    // The cache really is read: an entry with the right key and another hash is believed
    // (which is why only a directory private to the user is used), and `--no-hash-cache`
    // ignores it.
    let real = file_hash(&first, "b");
    let entry = entries(&cache)
        .into_iter()
        .find(|e| std::fs::read_to_string(e).unwrap().contains(&real))
        .unwrap();
    let good = std::fs::read_to_string(&entry).unwrap();
    let forged = "f".repeat(64);
    std::fs::write(&entry, good.replace(&real, &forged)).unwrap();
    assert_eq!(file_hash(&run(&args), "b"), forged);
    assert_eq!(file_hash(&run(&uncached), "b"), real);
    // A corrupt entry is a miss, and the miss stores the entry again.
    std::fs::write(&entry, &good[..good.len() - 10]).unwrap();
    assert_eq!(run(&args).stdout, first.stdout);
    assert_eq!(std::fs::read_to_string(&entry).unwrap(), good);

    // Rewrite B in place: same size, same mtime (put back), one bit changed. Only the ctime
    // tells the file changed, and the cached hash is not used.
    let path = dir.path().join("m/finetuned.safetensors");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    // The low mantissa bit of the last element (every tensor's bytes are little-endian).
    bytes[n - 2] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!((meta.len(), meta.modified().unwrap()), (n as u64, mtime));
    let after = run(&args);
    let changed = file_hash(&after, "b");
    assert_ne!(changed, real);
    assert_eq!(after.stdout, run(&uncached).stdout);
    assert_eq!(file_hash(&after, "a"), file_hash(&first, "a"));
}

/// What the pass measured of each tensor pair in a JSON report's only comparison: the metric
/// values and the evidence's equal fraction and relative L2 (not the nulls, which read B
/// apart from the pass).
fn measured(report: &Output) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    v["comparisons"][0]["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let e = &t["evidence"];
            serde_json::json!([
                t["name"],
                t["values"],
                e["equal_fraction"],
                e["relative_l2"]
            ])
        })
        .collect()
}

/// A byte-for-byte copy audited again, both files' hashes in the cache, is read once (B's
/// tensors are measured against A's bytes): the report is byte-identical to the one that
/// reads both files. That the cache is what decides it shows with a forged entry: a file one
/// bit apart whose entry claims A's hash is measured as A (its nulls, read apart from the
/// pass, still see its own bytes).
#[test]
fn cached_identical_files_are_read_once_to_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let m = dir.path().join("m");
    let out = weightkin(dir.path(), &["demo", "--keep", "m", "--no-hash-cache"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(m.join("base.safetensors")).unwrap();
    std::fs::write(m.join("copy.safetensors"), &bytes).unwrap();
    let mut changed = bytes.clone();
    let n = changed.len();
    changed[n - 2] ^= 1; // the low mantissa bit of the last tensor's last element
    std::fs::write(m.join("changed.safetensors"), &changed).unwrap();
    std::thread::sleep(Duration::from_millis(3500));
    let run = |args: &[&str]| cached(dir.path(), &cache, args);
    let args = |b: &'static str| {
        ["compare", "m/base.safetensors", b, "--format", "json"].map(str::to_owned)
    };
    let copy = args("m/copy.safetensors");
    let copy: Vec<&str> = copy.iter().map(String::as_str).collect();
    let first = run(&copy); // both hashes computed and stored
    assert_eq!(entries(&cache).len(), 2);
    let second = run(&copy); // both served: the copy is read as A
    assert_eq!(first.stdout, second.stdout);
    let uncached = [&copy[..], &["--no-hash-cache"]].concat();
    assert_eq!(second.stdout, run(&uncached).stdout);
    assert_eq!(file_hash(&second, "a"), file_hash(&second, "b"));

    let other = args("m/changed.safetensors");
    let other: Vec<&str> = other.iter().map(String::as_str).collect();
    let honest = run(&other);
    let (real, base) = (file_hash(&honest, "b"), file_hash(&honest, "a"));
    assert_ne!(real, base);
    assert_ne!(measured(&honest), measured(&second));
    let entry = entries(&cache)
        .into_iter()
        .find(|e| std::fs::read_to_string(e).unwrap().contains(&real))
        .unwrap();
    let good = std::fs::read_to_string(&entry).unwrap();
    std::fs::write(&entry, good.replace(&real, &base)).unwrap();
    let fooled = run(&other);
    assert_eq!(file_hash(&fooled, "b"), base);
    assert_eq!(measured(&fooled), measured(&second));
}

#[test]
fn no_hash_cache_leaves_the_cache_alone_and_concurrent_runs_share_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    aged_demo_family(dir.path());

    cached(
        dir.path(),
        &cache,
        &["audit", "m/demo.toml", "--no-hash-cache"],
    );
    cached(
        dir.path(),
        &cache,
        &[
            "compare",
            "m/base.safetensors",
            "m/subset.safetensors",
            "--no-hash-cache",
        ],
    );
    cached(dir.path(), &cache, &["demo", "--no-hash-cache"]);
    assert!(entries(&cache).is_empty(), "{:?}", entries(&cache));
    // The same files are cached without the flag (so the check above can fail): one entry
    // per model of the demo recipe.
    let audit = |out: &str| {
        cached(dir.path(), &cache, &["audit", "m/demo.toml", "--out", out]);
        std::fs::read(dir.path().join(out).join("report.json")).unwrap()
    };
    let stored = audit("r1");
    assert_eq!(entries(&cache).len(), 6, "{:?}", entries(&cache));
    assert_eq!(audit("r2"), stored);

    // Many processes at once on one fresh cache: all succeed with the same report, and the
    // cache ends with whole entries and no temporary files.
    let cache = dir.path().join("cache2");
    let children: Vec<_> = (0..8)
        .map(|_| {
            command(
                dir.path(),
                &[
                    "compare",
                    "m/base.safetensors",
                    "m/independent.safetensors",
                    "--format",
                    "json",
                ],
            )
            .env("WEIGHTKIN_CACHE_DIR", &cache)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for o in &outputs {
        assert!(o.status.success(), "{}", stderr(o));
        assert_eq!(o.stdout, outputs[0].stdout);
    }
    let names: Vec<_> = entries(&cache)
        .iter()
        .map(|e| e.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| n.len() == 64), "{names:?}");
    let again = cached(
        dir.path(),
        &cache,
        &[
            "compare",
            "m/base.safetensors",
            "m/independent.safetensors",
            "--format",
            "json",
        ],
    );
    assert_eq!(again.stdout, outputs[0].stdout);
    assert_eq!(stdout(&again).matches("\"blake3\"").count(), 2);
}
