//! The `weightkin` binary end to end.

use crate::util::{stderr, stdout, weightkin};

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
