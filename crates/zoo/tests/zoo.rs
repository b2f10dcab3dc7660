//! Builds the small subset of the zoo (or reuses the cached build) and asserts weightkin's
//! verdicts on its trained models, through the `weightkin-zoo` binary:
//! unrelated models are never `derived`; fine-tunes, casts, layer subsets, continued
//! training and merges are `derived` from their base.
//!
//! The zoo is cached in `$WEIGHTKIN_ZOO/<generator version>` (default
//! `~/.cache/weightkin/zoo/<version>`, shared with `scripts/zoo.sh`); the first run trains
//! the small subset (about a minute on two idle cores).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn zoo_dir() -> PathBuf {
    let root = std::env::var_os("WEIGHTKIN_ZOO")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/weightkin/zoo")))
        .unwrap_or_else(|| std::env::temp_dir().join("weightkin-zoo"));
    root.join(weightkin_zoo::GENERATOR_VERSION)
}

fn zoo(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weightkin-zoo"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "weightkin-zoo {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn verdicts_on_the_small_zoo() {
    let dir = zoo_dir();
    zoo(&[
        "build".as_ref(),
        dir.as_os_str(),
        "--subset".as_ref(),
        "small".as_ref(),
    ]);
    zoo(&[
        "verify".as_ref(),
        dir.as_os_str(),
        "--subset".as_ref(),
        "small".as_ref(),
    ]);
    let tmp = tempfile_path();
    let table = zoo(&[
        "validate".as_ref(),
        dir.as_os_str(),
        "--subset".as_ref(),
        "small".as_ref(),
        "--json".as_ref(),
        tmp.as_os_str(),
    ]);
    let results: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&tmp).unwrap()).unwrap();
    std::fs::remove_file(&tmp).ok();
    let field = |r: &Value, k: &str| r[k].as_str().unwrap().to_owned();

    let unrelated: Vec<&Value> = results
        .iter()
        .filter(|r| r["truth"] == "unrelated")
        .collect();
    let related: Vec<&Value> = results.iter().filter(|r| r["truth"] == "related").collect();
    assert!(
        unrelated.len() >= 25,
        "{} unrelated pairs\n{table}",
        unrelated.len()
    );
    assert!(
        related.len() >= 15,
        "{} derived pairs\n{table}",
        related.len()
    );
    for arch in ["llama", "resnet", "mlp"] {
        assert!(
            unrelated
                .iter()
                .any(|r| r["architecture"] == arch && r["category"] == "independent bases"),
            "no independent bases of {arch}\n{table}"
        );
    }
    for r in &unrelated {
        assert_ne!(
            field(r, "verdict"),
            "derived",
            "{} vs {} (unrelated) called derived\n{table}",
            field(r, "a"),
            field(r, "b")
        );
        for (component, verdict) in r["components"].as_object().unwrap() {
            assert_ne!(
                verdict,
                "derived",
                "{} vs {}: {component}",
                field(r, "a"),
                field(r, "b")
            );
        }
    }
    for r in &related {
        assert_eq!(
            field(r, "verdict"),
            "derived",
            "{} vs {} ({}) not derived\n{table}",
            field(r, "a"),
            field(r, "b"),
            field(r, "category")
        );
    }
}

fn tempfile_path() -> PathBuf {
    std::env::temp_dir().join(format!("weightkin-zoo-results-{}.json", std::process::id()))
}
