//! Automatic pairing (issue 14) through the binary, on real files: the same model exported
//! twice (silero-vad's TorchScript and safetensors), two VAD models of one architecture from
//! different initialisations (silero-vad vs akiki), all-MiniLM-L6-v2 renamed to another
//! convention with q, k and v fused (a noisy copy and a reinitialised one), `match
//! --emit-recipe` re-run through `audit`, and bad input.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use weightkin_core::rng::Rng;
use weightkin_core::testing::SafetensorsBuilder;

use crate::util::{
    add_relative_noise, compare_json, fixture, minilm, stderr, stdout, weightkin, MINILM,
};

const JIT: &str = "silero-vad-6.2.3/silero_vad/data/silero_vad.jit";
const SILERO_ST: &str = "silero-vad-6.2.3/silero_vad/data/silero_vad_16k.safetensors";
const AKIKI: &str = "akiki-0.0.6/akiki/models/akiki-vad.pt";

fn run_json(dir: &Path, args: &[&str]) -> Value {
    let out = weightkin(dir, args);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn compare(a: &Path, b: &Path) -> Value {
    compare_json(a, b)["comparisons"][0].clone()
}

fn overall(c: &Value) -> &str {
    c["verdicts"]["overall"].as_str().unwrap()
}

/// (A name, B name) of every compared pair.
fn pairs(c: &Value) -> BTreeSet<(String, String)> {
    c["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let a = t["a_name"].as_str().or(t["name"].as_str()).unwrap();
            let b = t["b_name"].as_str().or(t["name"].as_str()).unwrap();
            (a.to_owned(), b.to_owned())
        })
        .collect()
}

#[test]
fn the_same_vad_exported_twice_pairs_by_itself_and_reads_derived() {
    let c = compare(&fixture(JIT), &fixture(SILERO_ST));
    assert_eq!(overall(&c), "derived");
    let p = pairs(&c);
    // Every tensor of the safetensors export found its TorchScript counterpart, in the 16 kHz
    // model (`_model.`), not the 8 kHz one (`_model_8k.`) beside it.
    assert_eq!(p.len(), 15, "{p:?}");
    for (a, b) in [
        ("_model.encoder.0.reparam_conv.weight", "conv1.weight"),
        ("_model.encoder.3.reparam_conv.bias", "conv4.bias"),
        ("_model.decoder.rnn.weight_ih", "lstm_cell.weight_ih"),
        ("_model.decoder.rnn.weight_hh", "lstm_cell.weight_hh"),
        ("_model.decoder.decoder.2.weight", "final_conv.weight"),
        ("_model.stft.forward_basis_buffer", "stft_conv.weight"),
    ] {
        assert!(
            p.contains(&(a.to_owned(), b.to_owned())),
            "{a} ≙ {b} missing: {p:?}"
        );
    }
    // Each pair says how it was found; content-chosen ones name their candidates.
    for t in c["tensors"].as_array().unwrap() {
        let by = &t["paired_by"];
        let method = by["method"].as_str().unwrap();
        assert!(
            ["structure", "content", "normalised"].contains(&method),
            "{t}"
        );
        let k = by["candidates"].as_u64().unwrap();
        assert_eq!(method == "content", k > 1, "{t}");
    }
    assert!(!c["correspondence"]["mappings"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn two_vad_models_from_different_initialisations_read_independent() {
    // akiki was trained from a fresh initialisation (its metadata says the teacher's weights
    // were not used to initialise it); the architectures share the conv encoder's shapes and
    // the STFT basis.
    let c = compare(&fixture(JIT), &fixture(AKIKI));
    assert_eq!(overall(&c), "independent", "{}", c["verdicts"]);
    let p = pairs(&c);
    for l in 0..4 {
        for leaf in ["weight", "bias"] {
            let pair = (
                format!("_model.encoder.{l}.reparam_conv.{leaf}"),
                format!("encoder.{l}.{leaf}"),
            );
            assert!(p.contains(&pair), "{pair:?} missing: {p:?}");
        }
    }
    // The GRU of akiki has no counterpart in silero's LSTM (different gate counts): listed.
    let listed: Vec<&str> = c["not_compared"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["reason"] == "only-in-b")
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&"rnn.weight_ih_l0"), "{listed:?}");
}

#[test]
fn an_emitted_recipe_gives_the_same_pairs_and_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("kept.toml");
    let (a, b) = (fixture(JIT), fixture(SILERO_ST));
    let m = run_json(
        dir.path(),
        &[
            "match",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--format",
            "json",
            "--emit-recipe",
            recipe.to_str().unwrap(),
        ],
    );
    assert_eq!(m["pairs"].as_array().unwrap().len(), 15);
    let text = std::fs::read_to_string(&recipe).unwrap();
    assert!(text.contains("pairing = \"names\""), "{text}");
    assert!(text.contains("paired-by = \"content\""), "{text}");
    let out = weightkin(
        dir.path(),
        &["audit", recipe.to_str().unwrap(), "--out", "kept"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let kept: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("kept/report.json")).unwrap())
            .unwrap();
    let kept = &kept["comparisons"][0];
    let auto = compare(&a, &b);
    assert_eq!(pairs(kept), pairs(&auto));
    assert_eq!(
        kept["verdicts"]["components"],
        auto["verdicts"]["components"]
    );
    assert_eq!(overall(kept), overall(&auto));
    // The kept pairs keep their search's candidates, so their p-values are the same.
    let p = |c: &Value| -> Vec<Value> {
        c["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["evidence"]["p"].clone())
            .collect()
    };
    assert_eq!(p(kept), p(&auto));
}

/// MiniLM under ViT/Qwen-VL-style names, query, key and value fused into one `qkv`, each
/// value transformed by `f` (tensor index, values).
fn renamed_fused(path: &Path, f: &mut dyn FnMut(&mut Vec<f32>)) {
    let t = minilm();
    let get = |n: &str| t.iter().find(|x| x.0 == n).unwrap();
    let mut st = SafetensorsBuilder::new();
    let mut done = BTreeSet::new();
    for (name, shape, values) in &t {
        let Some(rest) = name.strip_prefix("encoder.layer.") else {
            let mut v = values.clone();
            f(&mut v);
            st = st.tensor_f32(&format!("trunk.{name}"), shape, &v);
            continue;
        };
        let (layer, role) = rest.split_once('.').unwrap();
        let p = format!("visual.blocks.{layer}");
        if let Some(leaf) = role.strip_prefix("attention.self.") {
            let (_, leaf) = leaf.split_once('.').unwrap();
            if !done.insert(format!("{p}.{leaf}")) {
                continue;
            }
            let mut fused = Vec::new();
            for part in ["query", "key", "value"] {
                fused.extend_from_slice(
                    &get(&format!(
                        "encoder.layer.{layer}.attention.self.{part}.{leaf}"
                    ))
                    .2,
                );
            }
            f(&mut fused);
            let mut shape = shape.clone();
            shape[0] *= 3;
            st = st.tensor_f32(&format!("{p}.attn.qkv.{leaf}"), &shape, &fused);
            continue;
        }
        let role = role
            .replace("attention.output.dense", "attn.proj")
            .replace("attention.output.LayerNorm", "norm1")
            .replace("intermediate.dense", "mlp.fc1")
            .replace("output.dense", "mlp.fc2")
            .replace("output.LayerNorm", "norm2");
        let mut v = values.clone();
        f(&mut v);
        st = st.tensor_f32(&format!("{p}.{role}"), shape, &v);
    }
    st.write(path).unwrap();
}

fn minilm_variant(dir: &Path, name: &str, f: &mut dyn FnMut(&mut Vec<f32>)) -> PathBuf {
    let path = dir.join(name);
    renamed_fused(&path, f);
    path
}

#[test]
fn a_renamed_fused_copy_of_a_real_model_is_found_and_a_reinitialised_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(14);
    // 2 % noise relative to each tensor's spread.
    let noisy = minilm_variant(dir.path(), "noisy.safetensors", &mut |v| {
        add_relative_noise(v, 0.02, &mut rng)
    });
    let mut rng = Rng::new(15);
    // Each tensor's values shuffled: the same distribution, no shared ancestry.
    let shuffled = minilm_variant(dir.path(), "shuffled.safetensors", &mut |v| {
        let p = rng.permutation(v.len());
        let old = v.clone();
        for (i, &j) in p.iter().enumerate() {
            v[i] = old[j];
        }
    });
    let a = fixture(MINILM);
    let c = compare(&a, &noisy);
    assert_eq!(overall(&c), "derived", "{}", c["verdicts"]);
    let p = pairs(&c);
    for (x, y) in [
        (
            "encoder.layer.3.attention.self.key.weight",
            "visual.blocks.3.attn.qkv.weight#k",
        ),
        (
            "encoder.layer.5.attention.self.value.bias",
            "visual.blocks.5.attn.qkv.bias#v",
        ),
        (
            "encoder.layer.0.intermediate.dense.weight",
            "visual.blocks.0.mlp.fc1.weight",
        ),
        (
            "embeddings.word_embeddings.weight",
            "trunk.embeddings.word_embeddings.weight",
        ),
    ] {
        assert!(
            p.contains(&(x.to_owned(), y.to_owned())),
            "{x} ≙ {y} missing: {p:?}"
        );
    }
    // Every float tensor of A found its counterpart (103, q/k/v as parts).
    assert_eq!(p.len(), 103, "{p:?}");
    let c = compare(&a, &shuffled);
    assert_eq!(overall(&c), "independent", "{}", c["verdicts"]);
    assert_eq!(pairs(&c).len(), 103);
}

#[test]
fn bad_pairing_input_is_an_error_or_a_listed_non_match() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Fused sizes that do not divide: listed, with the reason.
    SafetensorsBuilder::new()
        .tensor_f32("visual.blocks.0.attn.qkv.weight", &[7, 4], &[0.5; 28])
        .tensor_f32("visual.blocks.0.mlp.fc1.weight", &[8, 4], &[0.25; 32])
        .write(&d.join("b.safetensors"))
        .unwrap();
    SafetensorsBuilder::new()
        .tensor_f32("layers.0.attention.wq.weight", &[4, 4], &[0.5; 16])
        .write(&d.join("a.safetensors"))
        .unwrap();
    let r = run_json(
        d,
        &[
            "compare",
            "a.safetensors",
            "b.safetensors",
            "--format",
            "json",
        ],
    );
    let listed = r["comparisons"][0]["not_compared"]
        .as_array()
        .unwrap()
        .clone();
    let fused = listed
        .iter()
        .find(|u| u["name"] == "visual.blocks.0.attn.qkv.weight")
        .unwrap();
    assert_eq!(fused["reason"], "fused-not-split", "{fused}");
    assert!(
        fused["detail"].as_str().unwrap().contains("[7, 4]"),
        "{fused}"
    );

    // Automatic pairing together with rename rules: a recipe error at the `pairing` line.
    let recipe = d.join("mixed.toml");
    std::fs::write(
        &recipe,
        "[audit]\nname = \"x\"\n[models.a]\npath = \"a.safetensors\"\n[models.b]\npath = \
         \"b.safetensors\"\nrename = [{ from = 'blocks', to = 'layers' }]\n[[compare]]\na = \
         \"a\"\nb = \"b\"\npairing = \"auto\"\n",
    )
    .unwrap();
    let out = weightkin(d, &["audit", recipe.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("mixed.toml:11:"), "{err}");
    assert!(err.contains("cannot be combined with the rename"), "{err}");

    // Two of B's tensors claiming one of A's (by rename rules): an error naming both.
    std::fs::write(
        &recipe,
        "[audit]\nname = \"x\"\n[models.a]\npath = \"a.safetensors\"\n[models.b]\npath = \
         \"b.safetensors\"\nrename = [{ from = '^.*$', to = 'layers.0.attention.wq.weight' \
         }]\n[[compare]]\na = \"a\"\nb = \"b\"\n",
    )
    .unwrap();
    let out = weightkin(d, &["audit", recipe.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("visual.blocks.0.attn.qkv.weight")
            && err.contains("visual.blocks.0.mlp.fc1.weight"),
        "{err}"
    );
}
