//! Measures the verdict's error rates on synthetic pairs with a known answer:
//!
//! ```sh
//! cargo run --release -p weightkin-runner --example fpr -- [PAIRS]
//! ```
//!
//! False positives: PAIRS independently initialised pairs (4 layers, hidden 64, vision tower
//! of 2 blocks), each judged at the default thresholds; reports how many were called
//! `derived` overall, per component, and how many evidence tensors were significant.
//! Power: fine-tuned copies at increasing noise. Results go into VALIDATION.md.
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::collections::BTreeMap;

use weightkin_runner::demo::synth::{audit_pair, Arch, Model};

fn judge(a: &Model, b: &Model) -> weightkin_runner::report::Comparison {
    audit_pair(a, b, "").unwrap()
}

fn main() {
    let pairs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let arch = Arch {
        layers: 4,
        hidden: 64,
        intermediate: 172,
        vocab: 256,
        vision_layers: 2,
        vision_hidden: 48,
    };
    let mut overall: BTreeMap<&str, u64> = BTreeMap::new();
    let mut components: BTreeMap<(String, &str), u64> = BTreeMap::new();
    let (mut tensors, mut significant) = (0u64, 0u64);
    for i in 0..pairs {
        let c = judge(
            &Model::init(&arch, 1000 + 2 * i),
            &Model::init(&arch, 1001 + 2 * i),
        );
        *overall.entry(c.verdicts.overall.name()).or_default() += 1;
        for k in &c.verdicts.components {
            *components
                .entry((k.name.clone(), k.verdict.name()))
                .or_default() += 1;
            tensors += k.evidence as u64;
            significant += k.significant as u64;
        }
    }
    println!("independent pairs: {pairs}");
    for (v, n) in &overall {
        println!(
            "  overall {v}: {n} ({:.2} %)",
            100.0 * *n as f64 / pairs as f64
        );
    }
    for ((c, v), n) in &components {
        println!("  {c} {v}: {n}");
    }
    println!(
        "  evidence tensors significant after Holm: {significant} of {tensors} ({:.4} %)",
        100.0 * significant as f64 / tensors.max(1) as f64
    );
    println!("fine-tuned copies (20 per noise level), noise s.d. relative to each tensor:");
    for scale in [0.5, 1.0, 2.0, 4.0, 8.0, 16.0] {
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for i in 0..20u64 {
            let base = Model::init(&arch, 5000 + i);
            let c = judge(&base, &base.fine_tune(6000 + i, scale));
            *counts.entry(c.verdicts.overall.name()).or_default() += 1;
        }
        let counts: Vec<String> = counts.iter().map(|(v, n)| format!("{v} {n}/20")).collect();
        println!(
            "  noise {scale}: expected Pearson {:.3}: {}",
            1.0 / (1.0 + scale * scale).sqrt(),
            counts.join(", ")
        );
    }
}
