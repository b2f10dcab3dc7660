//! The verdict validation suite: synthetic cases with a known answer, each asserting the
//! verdict weightkin reaches. The false-positive rate over many independent pairs is measured
//! by `cargo run --release -p weightkin-runner --example fpr` and recorded in VALIDATION.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use weightkin_runner::demo::synth::{audit_pair, Arch, Model, Store};
use weightkin_runner::judge::{Role, Verdict};
use weightkin_runner::report::Comparison;
use weightkin_runner::{recipe, registry, run, RunOptions};

fn small() -> Arch {
    Arch {
        layers: 4,
        hidden: 64,
        intermediate: 172,
        vocab: 256,
        vision_layers: 0,
        vision_hidden: 48,
    }
}

/// Writes `a` and `b`, audits them with `extra` lines added to the `[[compare]]` table, and
/// returns the comparison.
fn audit(a: &Model, b: &Model, extra: &str) -> Comparison {
    audit_pair(a, b, extra).unwrap()
}

fn component(c: &Comparison, name: &str) -> Verdict {
    c.verdicts
        .components
        .iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("no component {name}: {:#?}", c.verdicts.components))
        .verdict
}

fn pearson(c: &Comparison, tensor: &str) -> f64 {
    let t = c.tensors.iter().find(|t| t.name == tensor).unwrap();
    t.evidence.as_ref().unwrap().pearson.unwrap()
}

#[test]
fn fine_tuned_copies_are_derived_at_every_noise_level() {
    let base = Model::init(&small(), 1);
    // Expected Pearson 1/√(1 + s²): 0.995, 0.894, 0.707, 0.447.
    for (seed, scale) in [(11, 0.1), (12, 0.5), (13, 1.0), (14, 2.0)] {
        let c = audit(&base, &base.fine_tune(seed, scale), "");
        assert_eq!(
            c.verdicts.overall,
            Verdict::Derived,
            "noise {scale}: {}",
            c.verdicts.sentence
        );
        for k in &c.verdicts.components {
            assert_eq!(k.verdict, Verdict::Derived, "noise {scale}: {}", k.sentence);
        }
        let expected = 1.0 / (1.0f64 + scale * scale).sqrt();
        let r = pearson(&c, "model.layers.2.mlp.up_proj.weight");
        assert!(
            (r - expected).abs() < 0.02,
            "noise {scale}: pearson {r} vs {expected}"
        );
    }
}

#[test]
fn independent_models_with_norm_weights_near_one_are_independent() {
    let c = audit(&Model::init(&small(), 1), &Model::init(&small(), 2), "");
    assert_eq!(
        c.verdicts.overall,
        Verdict::Independent,
        "{:#?}",
        c.verdicts
    );
    // The LayerNorm trap is visible and named: cosine ≈ 0.99, Pearson ≈ 0, flagged.
    let norm = c
        .tensors
        .iter()
        .find(|t| t.name == "model.layers.0.input_layernorm.weight")
        .unwrap();
    let e = norm.evidence.as_ref().unwrap();
    assert_eq!(e.role, Role::InitPrior);
    assert!(e.cosine.unwrap() > 0.98, "{e:?}");
    assert!(e.pearson.unwrap().abs() < 0.4, "{e:?}");
    assert!(c.verdicts.caveats.iter().any(|c| c.contains("raw cosine")));
}

#[test]
fn a_shared_deterministic_buffer_is_flagged_not_evidence() {
    // Rotary frequencies (a known buffer name) and a causal mask (unknown name, but identical
    // and taking two values) in two otherwise independent models.
    let inv_freq: Vec<f32> = (0..32).map(|i| 10000f32.powf(-(i as f32) / 32.0)).collect();
    let mask: Vec<f32> = (0..64 * 64)
        .map(|k| if k % 64 <= k / 64 { 1.0 } else { 0.0 })
        .collect();
    let add = |m: Model| {
        m.with_tensor("model.rotary_emb.inv_freq", vec![32], inv_freq.clone())
            .with_tensor("model.causal_mask", vec![64, 64], mask.clone())
    };
    let c = audit(
        &add(Model::init(&small(), 1)),
        &add(Model::init(&small(), 2)),
        "",
    );
    assert_eq!(
        c.verdicts.overall,
        Verdict::Independent,
        "{:#?}",
        c.verdicts
    );
    let roles: Vec<(&str, &Role)> = c
        .tensors
        .iter()
        .filter(|t| t.name.contains("inv_freq") || t.name.contains("causal_mask"))
        .map(|t| (t.name.as_str(), &t.evidence.as_ref().unwrap().role))
        .collect();
    assert_eq!(roles.len(), 2);
    for (name, role) in roles {
        assert!(matches!(role, Role::NotEvidence(_)), "{name}: {role:?}");
    }
    let listed: Vec<&str> = c
        .verdicts
        .components
        .iter()
        .flat_map(|k| k.not_evidence.iter().map(|e| e.tensor.as_str()))
        .collect();
    assert!(listed.contains(&"model.causal_mask") && listed.contains(&"model.rotary_emb.inv_freq"));
    assert!(listed.contains(&"model.position_ids"), "{listed:?}");
}

#[test]
fn a_copied_vision_tower_is_derived_and_an_independent_decoder_is_not() {
    let arch = Arch {
        vision_layers: 4,
        ..small()
    };
    let reference = Model::init(&arch, 1);
    let candidate = Model::init(&arch, 2)
        .with_component_from(&reference, "visual.")
        .fine_tune(5, 0.05);
    let c = audit(&reference, &candidate, "");
    assert_eq!(
        component(&c, "vision tower"),
        Verdict::Derived,
        "{:#?}",
        c.verdicts
    );
    assert_eq!(
        component(&c, "language model"),
        Verdict::Independent,
        "{:#?}",
        c.verdicts
    );
    assert_eq!(component(&c, "embeddings"), Verdict::Independent);
    assert_eq!(component(&c, "head"), Verdict::Independent);
    assert_eq!(c.verdicts.overall, Verdict::Derived);
    assert!(
        c.verdicts.sentence.contains("vision tower"),
        "{}",
        c.verdicts.sentence
    );
    assert!(
        c.verdicts.sentence.contains("Independent of"),
        "{}",
        c.verdicts.sentence
    );
}

#[test]
fn recipe_components_and_overrides_apply() {
    let base = Model::init(&small(), 1);
    let c = audit(
        &base,
        &base.fine_tune(3, 0.2),
        "components = [{ name = \"attention\", include = [\"**.self_attn.**\"] }]\n\
         not-evidence = [\"lm_head.weight\"]",
    );
    assert_eq!(component(&c, "attention"), Verdict::Derived);
    let head = c
        .verdicts
        .components
        .iter()
        .find(|k| k.name == "head")
        .unwrap();
    assert_eq!(head.verdict, Verdict::Inconclusive, "{head:#?}");
    assert_eq!(head.not_evidence.len(), 1);
}

#[test]
fn a_layer_subset_model_is_derived_with_its_alignment() {
    let arch = Arch {
        layers: 8,
        ..small()
    };
    let base = Model::init(&arch, 1);
    let subset = base.every_second_layer().fine_tune(6, 0.1);
    let c = audit(
        &base,
        &subset,
        "grid = { metric = \"pearson\" }\nalign = \"auto\"",
    );
    assert_eq!(c.verdicts.overall, Verdict::Derived);
    assert_eq!(component(&c, "language model"), Verdict::Derived);
    let al = &c.alignments[0];
    let mapping: Vec<(u32, u32)> = al.mapping.iter().map(|m| (m.b, m.a)).collect();
    assert_eq!(mapping, vec![(0, 0), (1, 2), (2, 4), (3, 6)]);
    assert!(al.applied);
}

/// A copy whose MLP hidden units were permuted (the same function, other element order).
/// What each statistic concludes, stated honestly:
/// - Pearson on the permuted MLP matrices is ≈ 0: element-wise statistics miss the copy;
/// - the unpermuted attention and norm tensors still give the copy away, so the language
///   model is `derived` here; a copy that permuted every hidden dimension would not be caught;
/// - CKA with the permuted axis as features (`examples = "columns"` for gate/up) is 1: it is
///   invariant to the permutation, while the default orientation (rows) is not.
#[test]
fn a_copy_with_permuted_hidden_units() {
    let base = Model::init(&small(), 1);
    let permuted = base.permute_mlp_units(9);
    let c = audit(&base, &permuted, "metrics = [\"pearson\", \"cka\"]");
    let up = "model.layers.1.mlp.up_proj.weight";
    assert!(pearson(&c, up).abs() < 0.05, "{}", pearson(&c, up));
    assert_eq!(component(&c, "language model"), Verdict::Derived);
    let row = c.tensors.iter().find(|t| t.name == up).unwrap();
    assert!(
        row.values["cka"].unwrap() < 0.1,
        "rows as examples: {:?}",
        row.values
    );

    let c = audit(
        &base,
        &permuted,
        "metrics = [\"cka\"]\ninclude = [\"**.mlp.up_proj.weight\"]\n\
         [compare.params.cka]\nexamples = \"columns\"",
    );
    for t in &c.tensors {
        assert!(
            (t.values["cka"].unwrap() - 1.0).abs() < 1e-4,
            "{}: {:?}",
            t.name,
            t.values
        );
    }
}

/// Unit alignment (`permutation = "auto"`, issue 15) on the MLP tensors alone: a fine-tuned
/// copy whose units were then permuted is `derived` with every layer's permutation
/// recovered; unrelated pairs with B permuted the same way stay `independent` (the null is
/// aligned the same way, so the search gains them nothing).
#[test]
fn unit_alignment_finds_a_permuted_copy_and_not_an_unrelated_one() {
    let mlp = "include = [\"**.mlp.**\"]\npermutation = \"auto\"";
    let base = Model::init(&small(), 1);
    let copy = base.fine_tune(2, 0.5).permute_mlp_units(9);
    let c = audit(&base, &copy, mlp);
    assert_eq!(
        c.verdicts.overall,
        Verdict::Derived,
        "{}",
        c.verdicts.sentence
    );
    let units = c.units.as_ref().unwrap();
    assert_eq!(units.stacks.len(), 1);
    for l in &units.stacks[0].layers {
        assert!(l.recovered && l.moved > 150, "{l:?}");
        assert!(l.pearson_after.unwrap() > 0.85, "{l:?}");
    }
    assert!(c
        .verdicts
        .sentence
        .contains("permuted relative to A's in 4 of 4 layers"));
    assert!(pearson(&c, "model.layers.1.mlp.up_proj.weight") > 0.85);
    let unaligned = audit(&base, &copy, "include = [\"**.mlp.**\"]");
    assert_eq!(unaligned.verdicts.overall, Verdict::Independent);

    let mut derived = 0;
    for seed in 0..12u64 {
        let b = Model::init(&small(), 201 + 2 * seed).permute_mlp_units(300 + seed);
        let c = audit(&Model::init(&small(), 200 + 2 * seed), &b, mlp);
        derived += usize::from(c.verdicts.overall == Verdict::Derived);
        let units = c.units.as_ref().unwrap();
        assert!(units.finding.is_none(), "{:?}", units.finding);
    }
    assert_eq!(derived, 0);
}

#[test]
fn no_false_positives_on_independent_pairs() {
    let mut derived = 0;
    for seed in 0..12u64 {
        let c = audit(
            &Model::init(&small(), 100 + 2 * seed),
            &Model::init(&small(), 101 + 2 * seed),
            "",
        );
        if c.verdicts.overall == Verdict::Derived {
            derived += 1;
        }
    }
    assert_eq!(derived, 0);
}

#[test]
fn reference_models_calibrate_the_null() {
    let dir = tempfile::tempdir().unwrap();
    let base = Model::init(&small(), 1);
    base.write(&dir.path().join("a.safetensors"), Store::F32)
        .unwrap();
    base.fine_tune(2, 0.3)
        .write(&dir.path().join("b.safetensors"), Store::F32)
        .unwrap();
    Model::init(&small(), 3)
        .write(&dir.path().join("r.safetensors"), Store::F32)
        .unwrap();
    let text = "[audit]\nname = \"refs\"\n[models.a]\npath = \"a.safetensors\"\n\
                [models.b]\npath = \"b.safetensors\"\n[models.r]\npath = \"r.safetensors\"\n\
                [[compare]]\na = \"a\"\nb = \"b\"\nreferences = [\"r\"]\n";
    let reg = registry::builtin().unwrap();
    let r = recipe::parse(&dir.path().join("x.toml"), text, &reg).unwrap();
    let report = run(&r, &reg, &RunOptions::default()).unwrap();
    let c = &report.comparisons[0];
    assert_eq!(c.verdicts.overall, Verdict::Derived);
    // Every evidence tensor (layered or not) is judged against the reference null.
    for t in &c.tensors {
        let e = t.evidence.as_ref().unwrap();
        if !matches!(e.role, Role::NotEvidence(_)) {
            assert_eq!(
                e.null,
                Some(weightkin_runner::judge::NullKind::Reference),
                "{}",
                t.name
            );
        }
    }
    // A reference that is a side of the comparison is refused.
    let bad = text.replace("references = [\"r\"]", "references = [\"a\"]");
    let err = recipe::parse(&dir.path().join("x.toml"), &bad, &reg).unwrap_err();
    assert!(
        err.to_string()
            .contains("a reference must be a third model"),
        "{err}"
    );
}

#[test]
fn cka_values_carry_a_permutation_null() {
    let base = Model::init(&small(), 1);
    let c = audit(&base, &base.fine_tune(4, 0.3), "metrics = [\"cka\"]");
    let t = c
        .tensors
        .iter()
        .find(|t| t.name == "model.layers.0.self_attn.q_proj.weight")
        .unwrap();
    let null = &t.metric_nulls["cka"];
    assert_eq!(null.samples, 4);
    assert!(null.mean.abs() < 0.1 && null.z > 10.0, "{null:?}");
    // Norm vectors are not matrices: no CKA, so no null either.
    let n = c
        .tensors
        .iter()
        .find(|t| t.name == "model.layers.0.input_layernorm.weight")
        .unwrap();
    assert!(n.metric_nulls.is_empty());
}

/// A light BF16 fine-tune moves most stored weights by at most 1 ULP; an independent model's
/// weights are far apart.
#[test]
fn bf16_ulp_distance_separates_a_light_fine_tune_from_an_independent_model() {
    let dir = tempfile::tempdir().unwrap();
    let base = Model::init(&small(), 1);
    base.write(&dir.path().join("a.safetensors"), Store::Bf16)
        .unwrap();
    base.fine_tune(2, 0.002)
        .write(&dir.path().join("b.safetensors"), Store::Bf16)
        .unwrap();
    Model::init(&small(), 3)
        .write(&dir.path().join("c.safetensors"), Store::Bf16)
        .unwrap();
    let text = "[audit]\nname = \"ulp\"\n[models.a]\npath = \"a.safetensors\"\n\
                [models.b]\npath = \"b.safetensors\"\n[models.c]\npath = \"c.safetensors\"\n\
                [[compare]]\na = \"a\"\nb = \"b\"\n[[compare]]\na = \"a\"\nb = \"c\"\n";
    let reg = registry::builtin().unwrap();
    let r = recipe::parse(&dir.path().join("x.toml"), text, &reg).unwrap();
    let report = run(&r, &reg, &RunOptions::default()).unwrap();
    let ulp = |c: usize, t: &str| {
        report.comparisons[c]
            .tensors
            .iter()
            .find(|r| r.name == t)
            .unwrap()
            .evidence
            .as_ref()
            .unwrap()
            .bf16_ulp
            .unwrap()
    };
    let t = "model.layers.1.mlp.up_proj.weight";
    let (tuned, indep) = (ulp(0, t), ulp(1, t));
    assert!(
        tuned.within_one > 0.7 && tuned.median.unwrap() <= 1,
        "{tuned:?}"
    );
    assert!(
        indep.within_one < 0.05 && indep.median.is_none(),
        "{indep:?}"
    );
    let lm = &report.comparisons[0].verdicts.components;
    let lm = lm.iter().find(|k| k.name == "language model").unwrap();
    assert!(lm.bf16_within_one_ulp.unwrap() > 0.7);
    assert!(lm.sentence.contains("within 1 ULP"), "{}", lm.sentence);
}
