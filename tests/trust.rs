//! Reports as evidence (issue 18): modes under the umask, two audits writing one directory at
//! once, `weightkin verify` on intact, changed and edited reports.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::{command, stderr, stdout, weightkin};

/// `weightkin demo --keep m` in `dir` (no hash cache): the demo family, its recipe and its
/// reports in `dir/m`.
fn demo(dir: &Path) {
    let out = weightkin(dir, &["demo", "--keep", "m", "--no-hash-cache"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn verify(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    weightkin(dir, &all)
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[cfg(unix)]
#[test]
fn report_modes_follow_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    weightkin_runner::demo::generate(&dir.path().join("m")).unwrap();
    for (umask, mode) in [("027", 0o640), ("002", 0o664), ("077", 0o600)] {
        let out = format!("out-{umask}");
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "umask {umask} && exec \"$0\" audit m/demo.toml --out {out} --no-hash-cache"
            ))
            .arg(env!("CARGO_BIN_EXE_weightkin"))
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        for f in ["report.json", "report.md", "report.html"] {
            let meta = std::fs::metadata(dir.path().join(&out).join(f)).unwrap();
            assert_eq!(
                meta.permissions().mode() & 0o777,
                mode,
                "umask {umask}: {f}"
            );
        }
    }
}

/// Two audits writing one `--out` at once: the first is held (by the test hook) after
/// renaming its first file into place, holding the lock; the second starts and would finish
/// in the meantime without the lock. Once both are done, the directory holds the second's
/// whole set.
#[test]
fn concurrent_audits_into_one_directory_leave_one_whole_set() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    weightkin_runner::demo::generate(&d.join("m")).unwrap();
    let recipe = std::fs::read_to_string(d.join("m/demo.toml")).unwrap();
    let renamed = recipe.replacen("name = \"demo:", "name = \"second run:", 1);
    assert_ne!(renamed, recipe);
    std::fs::write(d.join("m/second.toml"), renamed).unwrap();
    let pause = d.join("pause");
    std::fs::create_dir(&pause).unwrap();

    let audit = |recipe: &str| {
        let mut c = command(
            d,
            &[
                "audit",
                recipe,
                "--out",
                "out",
                "--no-hash-cache",
                "-j",
                "1",
            ],
        );
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    };
    let mut first = audit("m/demo.toml")
        .env(weightkin_runner::report::publish::PAUSE_ENV, &pause)
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !pause.join("paused").exists() {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first audit ended before publishing"
        );
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "first audit never paused"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The first run's report.json is in place, its report.md not yet.
    let mut second = audit("m/second.toml").spawn().unwrap();
    // Give the second run time to finish if nothing held it back (it waits on the lock, so
    // with the lock it is still running when the first resumes).
    let start = Instant::now();
    while second.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(pause.join("resume"), b"").unwrap();
    let first = first.wait_with_output().unwrap();
    let second = second.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(second.status.success(), "{}", stderr(&second));

    let json = std::fs::read_to_string(d.join("out/report.json")).unwrap();
    let md = std::fs::read_to_string(d.join("out/report.md")).unwrap();
    let html = std::fs::read_to_string(d.join("out/report.html")).unwrap();
    for (name, text) in [("json", &json), ("md", &md), ("html", &html)] {
        assert!(
            text.contains("second run:"),
            "report.{name} is not the second run's"
        );
        assert!(
            !text.contains("demo: which"),
            "report.{name} mixes in the first run"
        );
    }
    let leftovers: Vec<String> = std::fs::read_dir(d.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".report-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn verify_reproduces_the_demo_report_for_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path());
    for threads in ["1", "3"] {
        let out = verify(dir.path(), &["m/report.json", "-j", threads]);
        assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
        assert!(stdout(&out).contains("reproduced, byte for byte"));
    }
    // From inside the directory too (the report's directory is then the current one).
    let out = verify(&dir.path().join("m"), &["report.json"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
}

/// The byte offset of element `index` of tensor `name` in a safetensors file.
fn element_offset(file: &[u8], name: &str, index: usize, width: usize) -> usize {
    let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&file[8..8 + n]).unwrap();
    let start = header[name]["data_offsets"][0].as_u64().unwrap() as usize;
    8 + n + start + index * width
}

#[test]
fn verify_names_a_model_file_changed_by_one_byte_and_its_tensor() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path());
    let path = dir.path().join("m/finetuned.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let tensor = "model.layers.3.self_attn.v_proj.weight";
    // The sign bit of a BF16 element (little-endian: its high byte is the second).
    let at = element_offset(&bytes, tensor, 1000, 2) + 1;
    bytes[at] ^= 0x80;
    std::fs::write(&path, bytes).unwrap();

    let out = verify(dir.path(), &["m/report.json"]);
    let text = stdout(&out);
    assert_eq!(code(&out), 5, "{text}{}", stderr(&out));
    assert!(
        text.contains("CHANGED  finetuned: finetuned.safetensors"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "tensors whose measured values differ in `base vs fine-tuned copy` (1): {tensor}\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("result: NOT reproduced: finetuned.safetensors (model `finetuned`)"),
        "{text}"
    );
}

#[test]
fn verify_names_each_hand_edited_field() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path());
    let original = std::fs::read_to_string(dir.path().join("m/report.json")).unwrap();
    let edited = |from: &str, to: &str| -> Output {
        assert!(original.contains(from), "{from}");
        std::fs::write(
            dir.path().join("m/edited.json"),
            original.replacen(from, to, 1),
        )
        .unwrap();
        verify(dir.path(), &["m/edited.json"])
    };

    let out = edited(
        "\"name\": \"demo: which models derive from base?\"",
        "\"name\": \"demo: which models derive from base?!\"",
    );
    assert_eq!(code(&out), 6, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("the report was edited: audit.name\n"),
        "{}",
        stdout(&out)
    );

    // A verdict turned around.
    let verdict = "\"overall\": \"independent\"";
    let out = edited(verdict, "\"overall\": \"derived\"");
    assert_eq!(code(&out), 6, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("comparisons[base vs independent model].verdicts.overall: \"derived\" → \"independent\""),
        "{}",
        stdout(&out)
    );

    // A metric value of one tensor.
    let json: serde_json::Value = serde_json::from_str(&original).unwrap();
    let row = &json["comparisons"][0]["tensors"][5];
    let (name, cosine) = (
        row["name"].as_str().unwrap(),
        row["values"]["cosine"].as_f64().unwrap(),
    );
    let from = format!("\"name\": \"{name}\",");
    let at = original.find(&from).unwrap();
    let value = format!("\"cosine\": {cosine}");
    let rel = original[at..].find(&value).unwrap();
    let mut text = original.clone();
    text.replace_range(at + rel..at + rel + value.len(), "\"cosine\": 0.5");
    std::fs::write(dir.path().join("m/edited.json"), text).unwrap();
    let out = verify(dir.path(), &["m/edited.json"]);
    assert_eq!(code(&out), 6, "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&format!(
            "comparisons[base vs fine-tuned copy].tensors[{name}].values.cosine: 0.5 → {cosine}"
        )),
        "{}",
        stdout(&out)
    );

    // The embedded recipe, edited without its hash.
    let out = edited("name = \\\"demo:", "name = \\\"Demo:");
    assert_eq!(code(&out), 6, "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("embedded recipe: EDITED"), "{text}");
    assert!(
        text.contains("edited: audit.name, audit.recipe_blake3\n"),
        "{text}"
    );

    // Another tool version wrote it.
    let out = edited("\"version\": \"0.1.0\"", "\"version\": \"0.0.9\"");
    assert_eq!(code(&out), 7, "{}", stdout(&out));
    assert!(stdout(&out).contains("written by weightkin 0.0.9"));

    // Same values, other formatting.
    std::fs::write(
        dir.path().join("m/edited.json"),
        original.replace("\n", "\r\n"),
    )
    .unwrap();
    let out = verify(dir.path(), &["m/edited.json"]);
    assert_eq!(code(&out), 6, "{}", stdout(&out));
    assert!(stdout(&out).contains("(formatting)"), "{}", stdout(&out));
}

#[test]
fn verify_finds_compare_models_and_says_when_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path());
    let m = dir.path().join("m");
    let out = weightkin(
        &m,
        &[
            "compare",
            "base.safetensors",
            "subset.safetensors",
            "--format",
            "json",
            "--no-hash-cache",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::create_dir(dir.path().join("kept")).unwrap();
    std::fs::write(dir.path().join("kept/compare.json"), &out.stdout).unwrap();
    // Run where compare ran: the models are relative to the current directory.
    let ok = verify(&m, &["../kept/compare.json"]);
    assert_eq!(code(&ok), 0, "{}{}", stdout(&ok), stderr(&ok));
    // Elsewhere, --base says where.
    let ok = verify(dir.path(), &["kept/compare.json", "--base", "m"]);
    assert_eq!(code(&ok), 0, "{}{}", stdout(&ok), stderr(&ok));
    // Without it, nothing is found: exit 1, naming the model and what to pass.
    let lost = verify(dir.path(), &["kept/compare.json"]);
    assert_eq!(code(&lost), 1, "{}", stdout(&lost));
    let err = stderr(&lost);
    assert!(
        err.contains("model `a` (base.safetensors) is not found") && err.contains("--base DIR"),
        "{err}"
    );
    // A report without an embedded recipe (older, or not a report).
    std::fs::write(dir.path().join("old.json"), "{\"schema_version\": 1}").unwrap();
    let old = verify(dir.path(), &["old.json"]);
    assert_eq!(code(&old), 1);
    assert!(stderr(&old).contains("`audit.recipe`"), "{}", stderr(&old));
}
