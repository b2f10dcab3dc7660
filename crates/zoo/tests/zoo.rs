//! Builds the small subset of the zoo (or reuses the cached build) and asserts weightkin's
//! verdicts on its trained models, through the `weightkin-zoo` binary:
//! unrelated models are never `derived`; fine-tunes, casts, layer subsets, continued
//! training and merges are `derived` from their base.
//!
//! With B's names hidden (`validate --names opaque`: `t0000.weight`, … in a shuffled order)
//! and `pairing = "auto"`, the same holds, and the search finds the true correspondence.
//!
//! The zoo is cached in `$WEIGHTKIN_ZOO/<generator version>` (default
//! `~/.cache/weightkin/zoo/<version>`, shared with `scripts/zoo.sh`); the first run trains
//! the small subset (about a minute on two idle cores).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

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

/// The small zoo, built (or verified) once for all tests of this file.
fn small_zoo() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
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
        dir
    })
    .clone()
}

/// `validate --subset small` with `extra` arguments: the table and the per-pair results.
fn validate(tag: &str, extra: &[&str]) -> (String, Vec<Value>) {
    let dir = small_zoo();
    let tmp = tempfile_path(tag);
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "validate".as_ref(),
        dir.as_os_str(),
        "--subset".as_ref(),
        "small".as_ref(),
        "--json".as_ref(),
        tmp.as_os_str(),
    ];
    args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
    let table = zoo(&args);
    let results: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&tmp).unwrap()).unwrap();
    std::fs::remove_file(&tmp).ok();
    (table, results)
}

fn field(r: &Value, k: &str) -> String {
    r[k].as_str().unwrap().to_owned()
}

/// No unrelated pair is `derived`, overall or in any component.
fn assert_no_false_derived(unrelated: &[&Value], table: &str) {
    for r in unrelated {
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
                "{} vs {}: {component}\n{table}",
                field(r, "a"),
                field(r, "b")
            );
        }
    }
}

#[test]
fn verdicts_on_the_small_zoo() {
    let (table, results) = validate("names", &[]);

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
    assert_no_false_derived(&unrelated, &table);
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

fn tempfile_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "weightkin-zoo-results-{tag}-{}.json",
        std::process::id()
    ))
}

/// B's names hidden — opaque (`t0000.weight`, … shuffled: no layers, no roles, every pair
/// found by shape or content) and another convention (`blocks.N.attn.qkv` with q, k, v
/// fused) — and `pairing = "auto"`: unrelated pairs are still never `derived` (the search
/// maximises similarity; its null is the Bonferroni bound over the candidates), derived
/// pairs stay `derived`, and the search finds the true correspondence of near-copies.
#[test]
fn automatic_pairing_with_hidden_names() {
    for names in ["opaque", "convention"] {
        let (table, results) = validate(names, &["--names", names]);
        let unrelated: Vec<&Value> = results
            .iter()
            .filter(|r| r["truth"] == "unrelated")
            .collect();
        let related: Vec<&Value> = results.iter().filter(|r| r["truth"] == "related").collect();
        assert!(
            unrelated.len() >= 25 && related.len() >= 15,
            "{names}\n{table}"
        );
        assert_no_false_derived(&unrelated, &table);
        for r in &related {
            assert_eq!(
                field(r, "verdict"),
                "derived",
                "{names}: {} vs {} ({}) not derived\n{table}",
                field(r, "a"),
                field(r, "b"),
                field(r, "category")
            );
        }
        // Pairing checked against the truth; with opaque names every pair was searched.
        let mut content = 0;
        for r in &results {
            let c = &r["pairing"];
            assert!(c["expected"].as_u64().unwrap() > 0, "{names}: {r}");
            content += c["methods"]["content"].as_u64().unwrap_or(0);
            if names == "opaque" {
                assert_eq!(c["methods"].get("name"), None, "{names}: {r}");
            }
        }
        // Opaque names leave nothing but shapes and content (a later name table may
        // normalise the convention's names instead).
        if names == "opaque" {
            assert!(content > 0, "{names}: no pair chosen by content\n{table}");
        }
        // Casts and light fine-tunes are near-copies: every tensor pairs with its own
        // counterpart (or one bit-identical to it), under either naming.
        let near: Vec<&&Value> = related
            .iter()
            .filter(|r| {
                let c = field(r, "category");
                c.starts_with("cast") || c.starts_with("fine-tune light")
            })
            .collect();
        assert!(near.len() >= 3, "{names}\n{table}");
        for r in near {
            let c = &r["pairing"];
            let ok = c["correct"].as_u64().unwrap() + c["equivalent"].as_u64().unwrap();
            assert_eq!(
                ok,
                c["expected"].as_u64().unwrap(),
                "{names}: {} vs {}: {}\n{table}",
                field(r, "a"),
                field(r, "b"),
                c["wrong_pairs"]
            );
        }
    }
}
