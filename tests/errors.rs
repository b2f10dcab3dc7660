//! What users see when a recipe or a model file is broken. Every case is snapshotted, and
//! none may panic or print a backtrace.

use weightkin_runner::{recipe, registry};

use crate::util::{stderr, weightkin};

/// Each file in `tests/broken-recipes/` fails validation; the full diagnostic list is the
/// snapshot.
#[test]
fn broken_recipes() {
    insta::glob!("broken-recipes", "*.toml", |path| {
        let source = std::fs::read_to_string(path).unwrap();
        let name = std::path::Path::new("broken-recipes").join(path.file_name().unwrap());
        let reg = registry::builtin().unwrap();
        let err = recipe::parse(&name, &source, &reg).expect_err("recipe should be rejected");
        insta::assert_snapshot!(err.to_string());
    });
}

/// Writes `recipe` and the given model files into a temp dir, runs `weightkin audit`, and
/// returns its stderr with the temp dir redacted. Asserts exit code 1 and no panic.
fn audit_failure(models: &[(&str, &[u8])], recipe: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in models {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    std::fs::write(dir.path().join("r.toml"), recipe).unwrap();
    let out = weightkin(dir.path(), &["audit", "r.toml", "--out", "out"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("stack backtrace"),
        "{err}"
    );
    assert!(
        !dir.path().join("out").exists(),
        "no report may be written on failure"
    );
    err.replace(&dir.path().display().to_string(), "[TMP]")
}

const TWO_MODELS: &str = r#"
[audit]
name = "broken"
[models.a]
path = "a.safetensors"
[models.b]
path = "b.safetensors"
[[compare]]
a = "a"
b = "b"
"#;

fn tiny_model() -> Vec<u8> {
    weightkin_core::testing::SafetensorsBuilder::new()
        .tensor_f32("w", &[2, 2], &[1.0, 2.0, 3.0, 4.0])
        .to_bytes()
        .unwrap()
}

#[test]
fn missing_model_file() {
    let good = tiny_model();
    insta::assert_snapshot!(audit_failure(&[("a.safetensors", &good)], TWO_MODELS));
}

#[test]
fn truncated_model_file() {
    let good = tiny_model();
    let cut = &good[..good.len() - 5];
    insta::assert_snapshot!(audit_failure(
        &[("a.safetensors", &good), ("b.safetensors", cut)],
        TWO_MODELS
    ));
}

#[test]
fn header_length_past_end_of_file() {
    let good = tiny_model();
    let mut bad = good.clone();
    bad[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    insta::assert_snapshot!(audit_failure(
        &[("a.safetensors", &good), ("b.safetensors", &bad)],
        TWO_MODELS
    ));
}

#[test]
fn not_a_model_file() {
    let good = tiny_model();
    insta::assert_snapshot!(audit_failure(
        &[
            ("a.safetensors", &good),
            ("b.safetensors", b"GGUF\x03\0\0\0 nonsense")
        ],
        TWO_MODELS
    ));
}

#[test]
fn rename_collision() {
    let good = weightkin_core::testing::SafetensorsBuilder::new()
        .tensor_f32("x.w", &[1], &[1.0])
        .tensor_f32("y.w", &[1], &[1.0])
        .to_bytes()
        .unwrap();
    let recipe = TWO_MODELS.replace(
        "[models.b]",
        "rename = [{ from = '^[xy]\\.', to = '' }]\n[models.b]",
    );
    insta::assert_snapshot!(audit_failure(
        &[("a.safetensors", &good), ("b.safetensors", &good)],
        &recipe
    ));
}
