//! Tensor metrics (CKA) on pairs larger than their `max-elements`: the moments still come
//! from the streaming pass over the whole pair, the metric gets an evenly strided subset of
//! whole examples, the report says so, and the bytes do not depend on the thread count.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use weightkin_core::testing::SafetensorsBuilder;
use weightkin_core::{read_tensor, ExampleAxis, Limits, Registry, Side, WeightSource};
use weightkin_metrics::cka::{cka, Estimator, Examples};
use weightkin_runner::report::{round, Comparison, Subsampled, TensorRow};
use weightkin_runner::{recipe, registry, run, Report, ReportFormat, RunOptions};

const CAP: usize = 1024;

fn values(n: usize, seed: u64) -> Vec<f32> {
    let v = weightkin_core::conformance::synthetic(n, seed, 0.0);
    v.into_iter().map(|x| x * 0.1).collect()
}

/// Tensors of both models: name, shape. `[100, 48]` holds 4800 elements (above the cap of
/// 1024), `[16, 16]` 256 (below it), `[2, 2000]` has rows larger than the cap.
const TENSORS: &[(&str, &[usize])] = &[
    ("model.embed_tokens.weight", &[100, 48]),
    ("model.layers.0.mlp.up_proj.weight", &[100, 48]),
    ("model.layers.1.mlp.up_proj.weight", &[100, 48]),
    ("model.layers.2.mlp.up_proj.weight", &[100, 48]),
    ("model.layers.0.self_attn.q_proj.weight", &[16, 16]),
    ("model.layers.1.self_attn.q_proj.weight", &[16, 16]),
    ("model.layers.2.self_attn.q_proj.weight", &[16, 16]),
    ("wide.weight", &[2, 2000]),
];

/// Writes models `a` and `b` (b = a + noise: related, not identical), as BF16 so that the
/// pass's ULP histogram is exercised too.
fn models(dir: &Path) {
    let (mut a, mut b) = (SafetensorsBuilder::new(), SafetensorsBuilder::new());
    for (k, (name, shape)) in TENSORS.iter().enumerate() {
        let n: usize = shape.iter().product();
        let x = values(n, 2 * k as u64 + 1);
        let y: Vec<f32> = x
            .iter()
            .zip(values(n, 2 * k as u64 + 2))
            .map(|(x, e)| x + 0.7 * e)
            .collect();
        a = a.tensor_bf16(name, shape, &x);
        b = b.tensor_bf16(name, shape, &y);
    }
    a.write(&dir.join("a.safetensors")).unwrap();
    b.write(&dir.join("b.safetensors")).unwrap();
}

/// Three comparisons of the same pair: CKA on rows (with a CKA grid), CKA on columns, and
/// moment metrics only.
fn recipe_text(cap: usize) -> String {
    format!(
        "[audit]\nname = \"cap\"\n\
         [models.a]\npath = \"a.safetensors\"\n[models.b]\npath = \"b.safetensors\"\n\
         [[compare]]\nname = \"rows\"\na = \"a\"\nb = \"b\"\n\
         metrics = [\"cosine\", \"pearson\", \"cka\"]\n\
         grid = {{ metric = \"cka\", classes = [\"model.layers.*.mlp.up_proj.weight\"] }}\n\
         [compare.params.cka]\nmax-elements = {cap}\n\
         [[compare]]\nname = \"columns\"\na = \"a\"\nb = \"b\"\n\
         metrics = [\"cosine\", \"pearson\", \"cka\"]\n\
         [compare.params.cka]\nexamples = \"columns\"\nmax-elements = {cap}\n\
         [[compare]]\nname = \"moments\"\na = \"a\"\nb = \"b\"\n\
         metrics = [\"cosine\", \"pearson\"]\n"
    )
}

fn audit(dir: &Path, cap: usize, registry: &Registry) -> Report {
    let path = dir.join("r.toml");
    let r = recipe::parse(&path, &recipe_text(cap), registry).unwrap();
    run(&r, registry, &RunOptions::default()).unwrap()
}

fn row<'a>(c: &'a Comparison, name: &str) -> &'a TensorRow {
    c.tensors.iter().find(|t| t.name == name).unwrap()
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap()
}

/// CKA on the rows (or columns) `⌊i·n/k⌋` of both tensors, computed directly.
fn cka_on_subset(a: &[f32], b: &[f32], rows: usize, cols: usize, axis: Examples, k: usize) -> f64 {
    let (sa, sb, r, c) = match axis {
        Examples::Rows => {
            let pick = |x: &[f32]| -> Vec<f32> {
                (0..k)
                    .flat_map(|i| {
                        let r = i * rows / k;
                        x[r * cols..(r + 1) * cols].to_vec()
                    })
                    .collect()
            };
            (pick(a), pick(b), k, cols)
        }
        Examples::Columns => {
            let pick = |x: &[f32]| -> Vec<f32> {
                (0..rows)
                    .flat_map(|r| (0..k).map(move |i| x[r * cols + i * cols / k]))
                    .collect()
            };
            (pick(a), pick(b), rows, k)
        }
    };
    cka(&sa, &sb, r, c, axis, Estimator::Debiased)
        .unwrap()
        .value()
        .unwrap()
}

#[test]
fn large_pairs_use_the_pass_for_moments_and_a_strided_subset_for_cka() {
    let dir = tempfile::tempdir().unwrap();
    models(dir.path());
    let reg = registry::builtin().unwrap();
    let report = audit(dir.path(), CAP, &reg);
    let [rows, columns, moments] = &report.comparisons[..] else {
        panic!("three comparisons expected");
    };

    // (a) Moments, cosine, Pearson, the evidence (null from the pass's calibration samples,
    // BF16 ULP histogram) and the verdicts are exactly those of the moment-only comparison.
    for c in [rows, columns] {
        for t in &moments.tensors {
            let u = row(c, &t.name);
            for m in ["cosine", "pearson"] {
                assert_eq!(u.values[m], t.values[m], "{} {m}", t.name);
            }
            assert_eq!(json(&u.evidence), json(&t.evidence), "{}", t.name);
        }
        assert_eq!(json(&c.verdicts), json(&moments.verdicts));
    }

    // (b) CKA equals CKA computed directly on the same rows, or columns, of both tensors.
    let open = |m: &str| {
        reg.open(&dir.path().join(m), None, &Limits::default())
            .unwrap()
    };
    let (sa, sb) = (open("a.safetensors"), open("b.safetensors"));
    let read = |s: &dyn WeightSource, name: &str| {
        let i = s.find(name).unwrap();
        read_tensor(Side::new(s, i), s.tensors()[i].numel).unwrap()
    };
    let name = "model.embed_tokens.weight";
    let (a, b) = (read(sa.as_ref(), name), read(sb.as_ref(), name));
    let whole = cka(&a, &b, 100, 48, Examples::Rows, Estimator::Debiased)
        .unwrap()
        .value()
        .unwrap();
    // Rows: ⌊1024 / 48⌋ = 21 of 100 rows; columns: ⌊1024 / 100⌋ = 10 of 48 columns. Neither
    // stride is a whole number (rows 0, 4, 9, 14, …), so an index rule that rounds the
    // stride first would pick other examples.
    for (c, axis, k, of) in [
        (rows, Examples::Rows, 21, 100),
        (columns, Examples::Columns, 10, 48),
    ] {
        let t = row(c, name);
        let want = cka_on_subset(&a, &b, 100, 48, axis, k);
        assert_eq!(t.values["cka"], Some(round(want)), "{axis:?}");
        if axis == Examples::Rows {
            assert_ne!(
                round(want),
                round(whole),
                "the subset must differ from the whole"
            );
        }
        // (c) The report says which subset.
        let axis = match axis {
            Examples::Rows => ExampleAxis::Rows,
            Examples::Columns => ExampleAxis::Columns,
        };
        assert_eq!(
            t.subsampled.get("cka"),
            Some(&Subsampled {
                axis,
                examples: k,
                of
            })
        );
        assert_eq!(
            t.metric_nulls["cka"].samples, 4,
            "permutation null on the subset"
        );
    }

    // Below the cap: whole tensors, no field. Moment metrics are never marked.
    for c in [rows, columns, moments] {
        let t = row(c, "model.layers.0.self_attn.q_proj.weight");
        assert!(t.subsampled.is_empty(), "{}", c.name);
    }
    assert!(moments.tensors.iter().all(|t| t.subsampled.is_empty()));
    // A row larger than the cap: no whole example fits, so no value, with the reason.
    let wide = row(rows, "wide.weight");
    assert_eq!(wide.values["cka"], None);
    assert_eq!(json(&wide.undefined["cka"]), "\"example-too-large\"");
    assert!(row(columns, "wide.weight").values["cka"].is_some());

    // The grid's cells are subsampled alike, and the grid says so.
    let grid = &rows.grids[0];
    assert_eq!(
        grid.subsampled,
        Some(Subsampled {
            axis: ExampleAxis::Rows,
            examples: 21,
            of: 100
        })
    );
    let json_text = report.to_json();
    assert!(json_text.contains(
        "\"subsampled\": {\n            \"cka\": {\n              \"axis\": \"rows\",\n              \
         \"examples\": 21,\n              \"of\": 100\n            }\n          }"
    ));
    let md = ReportFormat::Markdown.render(&report);
    assert!(md.contains("(on 21 of 100 rows)"), "{md}");
    assert!(md.contains("(on 10 of 48 columns)"));
    assert!(md.contains("Every cell on an evenly strided subset of 21 of 100 rows"));
    let html = ReportFormat::Html.render(&report);
    assert!(html.contains("on 21 of 100 rows"));
}

#[test]
fn at_or_below_the_cap_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    models(dir.path());
    let reg = registry::builtin().unwrap();
    // The largest tensor holds 4800 elements: a cap of exactly that reads every tensor whole,
    // as the default does.
    let at = audit(dir.path(), 4800, &reg);
    let default = {
        let text = recipe_text(4800).replace("max-elements = 4800\n", "");
        let path = dir.path().join("r.toml");
        let r = recipe::parse(&path, &text, &reg).unwrap();
        run(&r, &reg, &RunOptions::default()).unwrap()
    };
    // The recipes differ by one line: so do their texts and hashes, nothing else.
    let without_recipe = |r: &weightkin_runner::Report| {
        let mut r = r.clone();
        r.audit.recipe_blake3.clear();
        r.audit.recipe.clear();
        r.to_json()
    };
    assert_eq!(without_recipe(&at), without_recipe(&default));
    for c in &at.comparisons {
        assert!(c.tensors.iter().all(|t| t.subsampled.is_empty()));
        assert!(c.grids.iter().all(|g| g.subsampled.is_none()));
    }
}

#[test]
fn subsampled_reports_are_identical_for_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    models(dir.path());
    let reg = registry::builtin().unwrap();
    let render = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let report = pool.install(|| audit(dir.path(), CAP, &reg));
        ReportFormat::ALL
            .iter()
            .map(|f| f.render(&report))
            .collect::<Vec<String>>()
    };
    let one = render(1);
    assert!(one[0].contains("\"subsampled\""));
    for threads in [2, 5] {
        assert!(one == render(threads), "{threads} threads");
    }
}

#[test]
fn max_elements_is_validated() {
    let reg = registry::builtin().unwrap();
    for bad in ["10", "\"big\"", "-1"] {
        let text = recipe_text(CAP).replace(
            &format!("max-elements = {CAP}\n[[compare]]\nname = \"columns\""),
            &format!("max-elements = {bad}\n[[compare]]\nname = \"columns\""),
        );
        assert!(text.contains(bad));
        let err = recipe::parse(Path::new("r.toml"), &text, &reg).unwrap_err();
        assert!(
            err.to_string()
                .contains("parameter `max-elements`: expected an integer of at least 1024"),
            "{err}"
        );
    }
    let text = recipe_text(CAP).replace("max-elements", "max-element");
    let err = recipe::parse(Path::new("r.toml"), &text, &reg).unwrap_err();
    assert!(err.to_string().contains("unknown parameter"), "{err}");
}
