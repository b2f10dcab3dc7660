//! Shared-library metric plugins end to end.
//!
//! The plugins are real `cdylib`s: `plugins/example-dylib` (Spearman) and the deliberately
//! broken ones in `tests/dylibs/`. They are built here, once per test binary, with
//! `cargo build --release -p …` into their own target directory (`target/plugin-tests`), so
//! the build does not contend with, or depend on the profile and features of, the `cargo test`
//! that runs this; cargo's JSON messages say where each library landed, whatever the platform
//! calls it. Then they are loaded through the library API and through the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use weightkin_core::testing::error_chain;
use weightkin_core::{conformance, Error as CoreError, MetricFailure, Origin};
use weightkin_plugin_host::{self as plugin_host, LoadProblem};
use weightkin_runner::{audit_file, registry, Error, ReportFormat, RunOptions};

use crate::util::{stderr, stdout};

/// The built test plugins, by package.
struct Built {
    example: PathBuf,
    broken: PathBuf,
    future_abi: PathBuf,
    no_entry: PathBuf,
}

const PACKAGES: [&str; 4] = [
    "weightkin-example-dylib",
    "weightkin-test-plugin-broken",
    "weightkin-test-plugin-future-abi",
    "weightkin-test-plugin-no-entry",
];

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        // target/<profile>/weightkin → target/plugin-tests
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_weightkin"));
        let target = bin.parent().and_then(Path::parent).unwrap();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "build",
                "--release",
                "--message-format=json-render-diagnostics",
            ])
            .arg("--target-dir")
            .arg(target.join("plugin-tests"));
        for p in PACKAGES {
            cmd.args(["-p", p]);
        }
        let out = cmd.output().expect("run cargo build for the test plugins");
        assert!(out.status.success(), "{}", stderr(&out));
        let mut libs = std::collections::BTreeMap::new();
        for line in stdout(&out).lines() {
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let is_cdylib = msg["target"]["crate_types"]
                .as_array()
                .is_some_and(|t| t.iter().any(|k| k == "cdylib"));
            if msg["reason"] != "compiler-artifact" || !is_cdylib {
                continue;
            }
            let file = msg["filenames"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| PathBuf::from(f.as_str().unwrap()))
                .find(|f| f.to_string_lossy().ends_with(std::env::consts::DLL_SUFFIX))
                .unwrap();
            let name = msg["target"]["name"].as_str().unwrap().replace('_', "-");
            libs.insert(name, file.canonicalize().unwrap());
        }
        let mut take = |p: &str| libs.remove(p).unwrap_or_else(|| panic!("{p} not built"));
        Built {
            example: take(PACKAGES[0]),
            broken: take(PACKAGES[1]),
            future_abi: take(PACKAGES[2]),
            no_entry: take(PACKAGES[3]),
        }
    })
}

/// Runs the binary with `args` and the given `WEIGHTKIN_PLUGIN_PATH` (none if `None`).
fn weightkin(dir: &Path, env_path: Option<&std::ffi::OsStr>, args: &[&Path]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weightkin"));
    cmd.args(args).current_dir(dir);
    match env_path {
        Some(v) => cmd.env(plugin_host::PLUGIN_PATH_ENV, v),
        None => cmd.env_remove(plugin_host::PLUGIN_PATH_ENV),
    };
    cmd.output().unwrap()
}

fn p(s: &str) -> &Path {
    Path::new(s)
}

/// Settings that replace the machine-specific paths of the built plugins.
fn redacted() -> insta::Settings {
    let b = built();
    let mut s = insta::Settings::clone_current();
    for (path, name) in [
        (&b.example, "[example]"),
        (&b.broken, "[broken]"),
        (&b.future_abi, "[future-abi]"),
        (&b.no_entry, "[no-entry]"),
    ] {
        s.add_filter(&regex_escape(&path.to_string_lossy()), name);
    }
    s
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$#&-~".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// A recipe over the demo family using the plugin's metric, with a parameter.
const SPEARMAN_RECIPE: &str = r#"
[audit]
name = "spearman from a shared-library plugin"

[models.base]
path = "base.safetensors"

[models.finetuned]
path = "finetuned.safetensors"

[models.independent]
path = "independent.safetensors"

[[compare]]
name = "base vs fine-tuned copy"
a = "base"
b = "finetuned"
include = ["model.layers.0.self_attn.**", "model.layers.0.input_layernorm.weight"]
metrics = ["pearson", "spearman"]

[compare.params.spearman]
max-elements = 4096

[[compare]]
name = "base vs independent model"
a = "base"
b = "independent"
include = ["model.layers.0.self_attn.**", "model.layers.0.input_layernorm.weight"]
metrics = ["pearson", "spearman"]

[report]
formats = ["json", "md"]
"#;

#[test]
fn a_recipe_uses_the_plugin_metric_and_its_report_is_snapshotted() {
    let dir = tempfile::tempdir().unwrap();
    weightkin_runner::demo::generate(dir.path()).unwrap();
    let recipe = dir.path().join("spearman.toml");
    std::fs::write(&recipe, SPEARMAN_RECIPE).unwrap();
    let mut reg = registry::builtin().unwrap();
    let loaded = plugin_host::load(&mut reg, &built().example).unwrap();
    assert_eq!(loaded.name, "weightkin-example-dylib");
    let (_, report) = audit_file(&recipe, &reg, &RunOptions::default()).unwrap();
    let json = ReportFormat::Json.render(&report);

    // What Spearman should say: a fine-tuned copy keeps the ranks of its weights, an
    // independently initialised model does not.
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let spearman = |cmp: usize, tensor: &str| {
        let rows = v["comparisons"][cmp]["tensors"].as_array().unwrap();
        let row = rows.iter().find(|r| r["name"] == tensor).unwrap();
        row["values"]["spearman"].as_f64().unwrap()
    };
    let q = "model.layers.0.self_attn.q_proj.weight";
    assert!(spearman(0, q) > 0.99, "{}", spearman(0, q));
    assert!(spearman(1, q).abs() < 0.05, "{}", spearman(1, q));
    // Norm weights near 1.0 fool cosine, not ranks.
    let norm = "model.layers.0.input_layernorm.weight";
    assert!(spearman(1, norm).abs() < 0.3, "{}", spearman(1, norm));

    insta::assert_snapshot!("spearman_recipe_json", json);
    insta::assert_snapshot!("spearman_recipe_md", ReportFormat::Markdown.render(&report));
}

#[test]
fn a_plugin_parameter_is_checked_with_the_recipe() {
    let dir = tempfile::tempdir().unwrap();
    weightkin_runner::demo::generate(dir.path()).unwrap();
    let recipe = dir.path().join("bad.toml");
    std::fs::write(
        &recipe,
        SPEARMAN_RECIPE.replace("max-elements = 4096", "max-elements = 1"),
    )
    .unwrap();
    let mut reg = registry::builtin().unwrap();
    plugin_host::load(&mut reg, &built().example).unwrap();
    let err = audit_file(&recipe, &reg, &RunOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Recipe(_)), "{err:?}");
    assert!(
        err.to_string().contains(
            "metric `spearman`: parameters rejected by its plugin: `max-elements` must be \
             between 2 and 4294967295, got 1"
        ),
        "{err}"
    );
}

#[test]
fn the_binary_lists_plugins_with_their_origin_from_flags_and_the_environment() {
    let b = built();
    let dir = tempfile::tempdir().unwrap();
    let listing = |out: &Output| {
        assert!(out.status.success(), "{}", stderr(out));
        stdout(out)
    };
    // --plugin after the subcommand (it is global).
    let text = listing(&weightkin(
        dir.path(),
        None,
        &[p("plugins"), p("--plugin"), &b.example],
    ));
    let spearman = text
        .lines()
        .find(|l| l.trim_start().starts_with("spearman "))
        .unwrap();
    assert!(
        spearman.contains(" weightkin-example-dylib  Spearman rank correlation"),
        "{text}"
    );
    assert!(
        spearman.ends_with("[range -1..1, symmetric, m(a,a) = 1]"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("cosine ") && l.contains(" built-in ")),
        "{text}"
    );
    let library_line = format!(
        "  weightkin-example-dylib 0.1.0: {} (spearman)",
        b.example.display()
    );
    assert!(text.lines().any(|l| l == library_line), "{text}");

    // From the environment, with an empty entry, and the same file again by flag: loaded
    // once.
    let env = std::env::join_paths([b.example.as_path(), p(""), b.broken.as_path()]).unwrap();
    let text = listing(&weightkin(
        dir.path(),
        Some(&env),
        &[p("--plugin"), &b.example, p("plugins")],
    ));
    assert_eq!(text.matches("\n  spearman ").count(), 1, "{text}");
    assert!(text.contains("\n  broken-nan "), "{text}");
    // Without either, only built-ins.
    let text = listing(&weightkin(dir.path(), None, &[p("plugins")]));
    assert!(
        !text.contains("spearman") && !text.contains("plugins ("),
        "{text}"
    );
}

#[test]
fn compare_uses_a_plugin_metric() {
    let dir = tempfile::tempdir().unwrap();
    weightkin_runner::demo::generate(dir.path()).unwrap();
    let out = weightkin(
        dir.path(),
        None,
        &[
            p("--plugin"),
            &built().example,
            p("compare"),
            p("base.safetensors"),
            p("finetuned.safetensors"),
            p("--metric"),
            p("spearman"),
            p("--include"),
            p("model.layers.*.mlp.**"),
            p("--format"),
            p("json"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let rows = v["comparisons"][0]["tensors"].as_array().unwrap();
    assert!(!rows.is_empty());
    for r in rows {
        let s = r["values"]["spearman"].as_f64().unwrap();
        assert!(s > 0.99, "{r}");
    }
}

#[test]
fn plugins_check_passes_the_example_and_prints_its_table() {
    let out = weightkin(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        None,
        &[p("plugins"), p("check"), &built().example],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    redacted().bind(|| insta::assert_snapshot!("check_example", stdout(&out)));
}

#[test]
fn plugins_check_catches_every_broken_metric() {
    let out = weightkin(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        None,
        &[p("plugins"), p("check"), &built().broken],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    redacted().bind(|| insta::assert_snapshot!("check_broken", stdout(&out)));

    // The same through the library: each metric fails exactly the checks for what it breaks.
    let mut reg = registry::builtin().unwrap();
    let loaded = plugin_host::load(&mut reg, &built().broken).unwrap();
    let failed = |name: &str| -> Vec<&'static str> {
        let spec = loaded.metrics.iter().find(|m| m.name == name).unwrap();
        conformance::check(spec)
            .results
            .into_iter()
            .filter(|(_, o)| matches!(o, conformance::Outcome::Fail(_)))
            .map(|(c, _)| c.name())
            .collect()
    };
    let values = ["range", "symmetry", "degenerate"];
    assert_eq!(
        failed("broken-panics"),
        ["identity", "range", "symmetry", "degenerate"]
    );
    assert_eq!(failed("broken-out-of-range"), values);
    assert_eq!(failed("broken-nan"), values);
    assert_eq!(failed("broken-asymmetric"), ["symmetry"]);
    assert_eq!(failed("broken-restless"), ["determinism"]);
}

#[test]
fn a_failing_plugin_metric_never_reports_a_value() {
    let dir = tempfile::tempdir().unwrap();
    weightkin_runner::demo::generate(dir.path()).unwrap();
    let recipe = dir.path().join("broken.toml");
    std::fs::write(
        &recipe,
        SPEARMAN_RECIPE
            .replace("\"spearman\"]", "\"broken-out-of-range\"]")
            .replace("[compare.params.spearman]\nmax-elements = 4096\n", ""),
    )
    .unwrap();
    let mut reg = registry::builtin().unwrap();
    plugin_host::load(&mut reg, &built().broken).unwrap();
    match audit_file(&recipe, &reg, &RunOptions::default()) {
        // An executor that calls `try_evaluate` stops with the plugin's failure…
        Err(Error::Measure { source, .. }) => assert!(
            matches!(
                *source,
                CoreError::MetricFailed {
                    metric: "broken-out-of-range",
                    problem: MetricFailure::OutOfRange { value: 1.5, .. }
                }
            ),
            "{source:?}"
        ),
        // …one that calls `evaluate` reports each pair as undefined, with the reason.
        Ok((_, report)) => {
            let v: serde_json::Value =
                serde_json::from_str(&ReportFormat::Json.render(&report)).unwrap();
            let rows = v["comparisons"][0]["tensors"].as_array().unwrap();
            assert!(!rows.is_empty());
            for r in rows {
                assert!(r["values"]["broken-out-of-range"].is_null(), "{r}");
                assert_eq!(
                    r["undefined"]["broken-out-of-range"], "plugin-failed",
                    "{r}"
                );
            }
        }
        Err(other) => panic!("{other:?}"),
    }
}

/// The error a load gives, through the library.
fn load_problem(path: &Path) -> LoadProblem {
    let mut reg = registry::builtin().unwrap();
    match plugin_host::load(&mut reg, path) {
        Err(plugin_host::Error::Load { problem, .. }) => *problem,
        Err(other) => panic!("{other:?}"),
        Ok(l) => panic!("loaded {}", l.name),
    }
}

/// The first two lines of what the binary prints for `plugins check PATH` (the loader's own
/// text, which may follow, differs between platforms).
fn check_error(path: &Path) -> String {
    let out = weightkin(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        None,
        &[p("plugins"), p("check"), path],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    stderr(&out).lines().take(2).collect::<Vec<_>>().join("\n")
}

#[test]
fn libraries_that_cannot_be_plugins_are_refused_at_load_with_the_reason() {
    let b = built();
    assert!(matches!(
        load_problem(&b.future_abi),
        LoadProblem::AbiTooNew { found: 99, .. }
    ));
    assert!(matches!(
        load_problem(&b.no_entry),
        LoadProblem::MissingEntry { .. }
    ));
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("libtext.so");
    std::fs::write(&text, "#!/bin/sh\n").unwrap();
    assert!(matches!(
        load_problem(&text),
        LoadProblem::NotSharedLibrary(_)
    ));

    redacted().bind(|| {
        insta::assert_snapshot!("load_future_abi", check_error(&b.future_abi));
        insta::assert_snapshot!("load_no_entry", check_error(&b.no_entry));
    });
}

/// The example library with its ELF `e_machine` changed to another architecture's.
#[cfg(target_os = "linux")]
#[test]
fn a_library_for_another_architecture_is_refused_before_it_is_opened() {
    let mut bytes = std::fs::read(&built().example).unwrap();
    let host = u16::from_le_bytes([bytes[18], bytes[19]]);
    let other: u16 = if host == 183 { 62 } else { 183 };
    bytes[18..20].copy_from_slice(&other.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("libforeign.so");
    std::fs::write(&path, bytes).unwrap();
    let LoadProblem::WrongArchitecture { found, .. } = load_problem(&path) else {
        panic!()
    };
    let name = if other == 183 { "aarch64" } else { "x86-64" };
    assert_eq!(found, format!("an ELF shared library for {name} (64-bit)"));
}

#[test]
fn the_runner_error_for_a_plugin_reads_exactly_as_the_host_error() {
    let mut reg = registry::builtin().unwrap();
    let err = plugin_host::load(&mut reg, &built().no_entry).unwrap_err();
    let host = error_chain(&err);
    assert!(host.starts_with("cannot load plugin "), "{host}");
    let err = Error::from(err);
    assert!(matches!(err, Error::Plugin(_)), "{err:?}");
    assert_eq!(error_chain(&err), host);
}

#[test]
fn a_second_plugin_with_a_taken_name_is_refused_naming_the_owner() {
    let b = built();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(b.example.file_name().unwrap());
    std::fs::copy(&b.example, &copy).unwrap();
    let mut reg = registry::builtin().unwrap();
    plugin_host::load(&mut reg, &b.example).unwrap();
    // The same file again is the same plugin, not a clash.
    plugin_host::load(&mut reg, &b.example).unwrap();
    let err = plugin_host::load(&mut reg, &copy).unwrap_err();
    let plugin_host::Error::Load { problem, .. } = &err else {
        panic!("{err:?}")
    };
    let LoadProblem::Register(CoreError::NameTaken { name, owner, .. }) = &**problem else {
        panic!("{problem:?}")
    };
    assert_eq!(name, "spearman");
    assert!(
        matches!(&**owner, Origin::Library { path, plugin, .. }
            if *path == b.example && plugin == "weightkin-example-dylib"),
        "{owner:?}"
    );
    assert_eq!(
        reg.metrics()
            .iter()
            .filter(|m| m.name == "spearman")
            .count(),
        1
    );
}
