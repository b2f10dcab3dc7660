//! Unit alignment (issue 15, `compare --align-units`) through the binary on real weights:
//! all-MiniLM-L6-v2 with the hidden units of every layer's MLP permuted (rows of
//! `intermediate.dense` and its bias, columns of `output.dense`) plus 2 % noise; a copy
//! width-pruned to 1024 of the 1536 units; and the same permutation applied to an unrelated
//! model of the same shape (MiniLM with every tensor's values shuffled).
//!
//! The comparisons are restricted to the MLP tensors, the only ones the transforms touch:
//! the rest of a permuted copy is unchanged and would make it `derived` on its own.

use std::path::{Path, PathBuf};

use serde_json::Value;
use weightkin_core::rng::Rng;
use weightkin_core::testing::SafetensorsBuilder;

use crate::util::{add_relative_noise, compare_json_with, fixture, minilm, overall, MINILM};

const LAYERS: usize = 6;
const UNITS: usize = 1536;
const HIDDEN: usize = 384;

/// How the copy's values are made before its units are reordered.
#[derive(Clone, Copy)]
enum Values {
    /// MiniLM's own.
    Same,
    /// Each tensor's values shuffled: same distribution, no shared ancestry.
    Shuffled,
}

/// Writes MiniLM with each layer's MLP units reordered by `order(layer)` (B's unit `k` is
/// A's unit `order[k]`; fewer than 1536 entries prune the layer), then 2 % noise on every
/// tensor.
fn variant(
    dir: &Path,
    name: &str,
    values: Values,
    order: &mut dyn FnMut(usize) -> Vec<usize>,
) -> PathBuf {
    let mut rng = Rng::new(1015);
    let mut t = minilm();
    if let Values::Shuffled = values {
        for (_, _, v) in &mut t {
            let p = rng.permutation(v.len());
            let old = v.clone();
            for (i, &j) in p.iter().enumerate() {
                v[i] = old[j];
            }
        }
    }
    for layer in 0..LAYERS {
        let order = order(layer);
        let n = order.len();
        let p = format!("encoder.layer.{layer}.");
        for (name, shape, v) in &mut t {
            let Some(role) = name.strip_prefix(&p) else {
                continue;
            };
            match role {
                "intermediate.dense.weight" => {
                    *v = order
                        .iter()
                        .flat_map(|&u| v[u * HIDDEN..(u + 1) * HIDDEN].to_vec())
                        .collect();
                    *shape = vec![n, HIDDEN];
                }
                "intermediate.dense.bias" => {
                    *v = order.iter().map(|&u| v[u]).collect();
                    *shape = vec![n];
                }
                "output.dense.weight" => {
                    *v = (0..HIDDEN)
                        .flat_map(|r| order.iter().map(move |&u| (r, u)))
                        .map(|(r, u)| v[r * UNITS + u])
                        .collect();
                    *shape = vec![HIDDEN, n];
                }
                _ => {}
            }
        }
    }
    let mut st = SafetensorsBuilder::new();
    for (name, shape, v) in &mut t {
        add_relative_noise(v, 0.02, &mut rng);
        st = st.tensor_f32(name, shape, v);
    }
    let path = dir.join(name);
    st.write(&path).unwrap();
    path
}

/// `compare A B` on the MLP tensors only, with `--align-units` if `align`.
fn compare_mlp(a: &Path, b: &Path, align: bool) -> Value {
    let mut extra = vec![
        "--include",
        "encoder.layer.*.intermediate.**",
        "--include",
        "encoder.layer.*.output.dense.weight",
    ];
    if align {
        extra.push("--align-units");
    }
    compare_json_with(a, b, &extra)["comparisons"][0].clone()
}

fn layers(c: &Value) -> &Vec<Value> {
    let stacks = c["units"]["stacks"].as_array().unwrap();
    assert_eq!(stacks.len(), 1, "{}", c["units"]);
    assert_eq!(stacks[0]["stack"], "encoder.layer");
    stacks[0]["layers"].as_array().unwrap()
}

/// Evidence of every compared MLP tensor: (name, Pearson, null kind, supports derivation).
fn evidence(c: &Value) -> Vec<(String, f64, String, bool)> {
    c["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let e = &t["evidence"];
            let supports = e["p_adjusted"].as_f64().unwrap() < 0.001
                && e["pearson"].as_f64().unwrap() - e["null_mean"].as_f64().unwrap() >= 0.1;
            (
                t["name"].as_str().unwrap().to_owned(),
                e["pearson"].as_f64().unwrap(),
                e["null"].as_str().unwrap().to_owned(),
                supports,
            )
        })
        .collect()
}

#[test]
fn a_copy_with_permuted_mlp_units_reads_derived_once_aligned() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(15);
    let b = variant(
        dir.path(),
        "permuted.safetensors",
        Values::Same,
        &mut |_| rng.permutation(UNITS),
    );
    let a = fixture(MINILM);

    // Without alignment the caveat is real: every MLP tensor reads as unrelated.
    let plain = compare_mlp(&a, &b, false);
    assert_eq!(overall(&plain), "independent", "{}", plain["verdicts"]);
    assert!(plain.get("units").is_none());
    let caveats = plain["verdicts"]["caveats"].to_string();
    assert!(caveats.contains("--align-units"), "{caveats}");

    let c = compare_mlp(&a, &b, true);
    assert_eq!(overall(&c), "derived", "{}", c["verdicts"]);
    // Every layer's permutation recovered, and said so as a finding.
    let layers = layers(&c);
    assert_eq!(layers.len(), LAYERS);
    for l in layers {
        assert_eq!(l["units_a"], UNITS, "{l}");
        assert_eq!(l["matched"], UNITS, "{l}");
        assert!(l["moved"].as_u64().unwrap() > 1500, "{l}");
        assert_eq!(l["recovered"], true, "{l}");
        assert!(l["pearson_before"].as_f64().unwrap().abs() < 0.05, "{l}");
        assert!(l["pearson_after"].as_f64().unwrap() > 0.99, "{l}");
    }
    let finding = c["units"]["finding"].as_str().unwrap();
    assert!(
        finding.contains("permuted relative to A's in 6 of 6 layers"),
        "{finding}"
    );
    assert!(c["verdicts"]["sentence"]
        .as_str()
        .unwrap()
        .contains(finding));
    // Every MLP weight is evidence after alignment, against the null under the same search.
    let ev = evidence(&c);
    assert_eq!(ev.len(), 3 * LAYERS, "{ev:?}");
    for (name, r, null, supports) in &ev {
        assert_eq!(null, "aligned-cross-layer", "{name}");
        assert!(*r > 0.99, "{name}: {r}");
        if name.ends_with(".weight") {
            assert!(supports, "{name}");
        }
    }
}

#[test]
fn an_unrelated_model_permuted_the_same_way_stays_independent() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(15);
    let b = variant(
        dir.path(),
        "unrelated.safetensors",
        Values::Shuffled,
        &mut |_| rng.permutation(UNITS),
    );
    let c = compare_mlp(&fixture(MINILM), &b, true);
    assert_eq!(overall(&c), "independent", "{}", c["verdicts"]);
    for l in layers(&c) {
        assert_eq!(l["recovered"], false, "{l}");
    }
    assert!(c["units"].get("finding").is_none(), "{}", c["units"]);
    // The search alone lifts an unrelated pair's Pearson well above 0 — which is why the
    // null is aligned the same way: against it, nothing stands out.
    let ev = evidence(&c);
    assert_eq!(ev.len(), 3 * LAYERS);
    let weights: Vec<f64> = ev
        .iter()
        .filter(|e| e.0.ends_with(".weight"))
        .map(|e| e.1)
        .collect();
    assert!(weights.iter().all(|&r| r > 0.05), "{weights:?}");
    for (name, _, null, supports) in &ev {
        assert_eq!(null, "aligned-cross-layer", "{name}");
        assert!(!supports, "{name}");
    }
}

#[test]
fn a_width_pruned_copy_reads_derived_with_the_kept_units_matched() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(16);
    // Each layer keeps a random 1024 of its 1536 units, in a random order.
    let b = variant(dir.path(), "pruned.safetensors", Values::Same, &mut |_| {
        let mut keep = rng.permutation(UNITS);
        keep.truncate(1024);
        keep
    });
    let a = fixture(MINILM);
    // Without alignment the pruned tensors cannot be compared at all.
    let plain = compare_mlp(&a, &b, false);
    let listed: Vec<&str> = plain["not_compared"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["reason"] == "shape-mismatch")
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 3 * LAYERS, "{}", plain["not_compared"]);

    let c = compare_mlp(&a, &b, true);
    assert_eq!(overall(&c), "derived", "{}", c["verdicts"]);
    for l in layers(&c) {
        assert_eq!(l["units_a"], UNITS, "{l}");
        assert_eq!(l["units_b"], 1024, "{l}");
        assert_eq!(l["matched"], 1024, "{l}");
        assert_eq!(l["recovered"], true, "{l}");
        assert!(l["pearson_after"].as_f64().unwrap() > 0.99, "{l}");
    }
    let finding = c["units"]["finding"].as_str().unwrap();
    assert!(finding.contains("width-pruned"), "{finding}");
    assert!(finding.contains("1024 of A's 1536"), "{finding}");
    assert_eq!(evidence(&c).len(), 3 * LAYERS);
}

#[test]
fn degenerate_units_are_aligned_without_error_or_a_finding() {
    // B's MLP: every unit a copy of unit 0 (rows, bias) and an all-zero output projection:
    // one distinct unit per layer, nothing to recover.
    let dir = tempfile::tempdir().unwrap();
    let mut st = SafetensorsBuilder::new();
    for (name, shape, v) in &minilm() {
        let v: Vec<f32> = if name.ends_with("intermediate.dense.weight") {
            v[..HIDDEN].repeat(UNITS)
        } else if name.ends_with("intermediate.dense.bias") {
            vec![v[0]; UNITS]
        } else if name.starts_with("encoder.layer.") && name.ends_with(".output.dense.weight") {
            vec![0.0; v.len()]
        } else {
            v.clone()
        };
        st = st.tensor_f32(name, shape, &v);
    }
    let b = dir.path().join("degenerate.safetensors");
    st.write(&b).unwrap();
    let c = compare_mlp(&fixture(MINILM), &b, true);
    assert_ne!(overall(&c), "derived", "{}", c["verdicts"]);
    for l in layers(&c) {
        assert_eq!(l["matched"], UNITS, "{l}");
        assert_eq!(l["recovered"], false, "{l}");
    }
    assert!(c["units"].get("finding").is_none(), "{}", c["units"]);
}

/// Writes a 3-layer MLP stack with `units` hidden units of width 32: A's values `base`
/// (Gaussian), B's units permuted per layer with `noise` × s.d. added.
fn wide_pair(dir: &Path, units: usize, related: bool) -> (PathBuf, PathBuf) {
    let mut rng = Rng::new(4200);
    let hidden = 32;
    let gauss =
        |rng: &mut Rng, n: usize| -> Vec<f32> { (0..n).map(|_| rng.normal() as f32).collect() };
    let (mut a, mut b) = (SafetensorsBuilder::new(), SafetensorsBuilder::new());
    for layer in 0..3 {
        let up = gauss(&mut rng, units * hidden);
        let down = gauss(&mut rng, hidden * units);
        let (up_b, down_b) = if related {
            (up.clone(), down.clone())
        } else {
            (
                gauss(&mut rng, units * hidden),
                gauss(&mut rng, hidden * units),
            )
        };
        let p = rng.permutation(units);
        let mut up_p: Vec<f32> = p
            .iter()
            .flat_map(|&u| up_b[u * hidden..(u + 1) * hidden].iter().copied())
            .collect();
        let mut down_p: Vec<f32> = (0..hidden)
            .flat_map(|r| p.iter().map(move |&u| (r, u)))
            .map(|(r, u)| down_b[r * units + u])
            .collect();
        add_relative_noise(&mut up_p, 0.3, &mut rng);
        add_relative_noise(&mut down_p, 0.3, &mut rng);
        let n = |w: &str| format!("model.layers.{layer}.mlp.{w}.weight");
        a = a
            .tensor_f32(&n("up_proj"), &[units, hidden], &up)
            .tensor_f32(&n("down_proj"), &[hidden, units], &down);
        b = b
            .tensor_f32(&n("up_proj"), &[units, hidden], &up_p)
            .tensor_f32(&n("down_proj"), &[hidden, units], &down_p);
    }
    let (pa, pb) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
    a.write(&pa).unwrap();
    b.write(&pb).unwrap();
    (pa, pb)
}

#[test]
fn a_layer_too_wide_for_the_assignment_is_matched_greedily_with_the_same_null() {
    // 4200² similarities are more than the matrix holds (2²⁴): the greedy path.
    let units = 4200;
    assert!(units * units > weightkin_runner::align::units::SCORE_CELLS_MAX);
    for related in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = wide_pair(dir.path(), units, related);
        let c = compare_json_with(&a, &b, &["--align-units"])["comparisons"][0].clone();
        let stacks = c["units"]["stacks"].as_array().unwrap();
        assert_eq!(stacks.len(), 1, "{}", c["units"]);
        let layers = stacks[0]["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 3, "{}", c["units"]);
        for l in layers {
            assert!(l["matching"].as_str().unwrap().starts_with("greedy"), "{l}");
        }
        if related {
            assert_eq!(overall(&c), "derived", "{}", c["verdicts"]["sentence"]);
            for l in layers {
                assert_eq!(l["recovered"], true, "{l}");
                assert!(l["pearson_after"].as_f64().unwrap() > 0.9, "{l}");
            }
        } else {
            assert_eq!(overall(&c), "independent", "{}", c["verdicts"]["sentence"]);
            for l in layers {
                assert_eq!(l["recovered"], false, "{l}");
            }
        }
    }
}
