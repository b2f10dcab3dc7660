//! Measures unit alignment's error rates on synthetic pairs with a known answer (issue 15):
//!
//! ```sh
//! cargo run --release -p weightkin-runner --example fpr_units -- [PAIRS]
//! ```
//!
//! False positives: PAIRS independently initialised pairs (4 layers, hidden 64, 172 MLP
//! units), B's MLP units permuted per layer, compared on the MLP tensors with
//! `permutation = "auto"`: how many were called `derived`, how many evidence tensors were
//! significant, how many layers' alignments counted as recovered, and the mean Pearson the
//! search alone gives an unrelated pair. Power: fine-tuned, then permuted copies at
//! increasing noise, with and without alignment. Results go into VALIDATION.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    missing_docs
)]

use std::collections::BTreeMap;

use weightkin_runner::demo::synth::{audit_pair, Arch, Model};
use weightkin_runner::report::Comparison;

fn judge(a: &Model, b: &Model, align: bool) -> Comparison {
    let extra = format!(
        "include = [\"**.mlp.**\"]\npermutation = \"{}\"",
        if align { "auto" } else { "off" }
    );
    audit_pair(a, b, &extra).unwrap()
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
        vision_layers: 0,
        vision_hidden: 48,
    };
    let mut overall: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut tensors, mut significant, mut layers, mut recovered) = (0u64, 0u64, 0u64, 0u64);
    let mut pearsons = Vec::new();
    for i in 0..pairs {
        let b = Model::init(&arch, 1001 + 2 * i).permute_mlp_units(7000 + i);
        let c = judge(&Model::init(&arch, 1000 + 2 * i), &b, true);
        *overall.entry(c.verdicts.overall.name()).or_default() += 1;
        for k in &c.verdicts.components {
            tensors += k.evidence as u64;
            significant += k.significant as u64;
        }
        for s in c.units.iter().flat_map(|u| &u.stacks) {
            for l in &s.layers {
                layers += 1;
                recovered += u64::from(l.recovered);
                pearsons.extend(l.pearson_after);
            }
        }
    }
    println!("independent pairs, B's MLP units permuted, permutation = \"auto\": {pairs}");
    for (v, n) in &overall {
        println!(
            "  overall {v}: {n} ({:.2} %)",
            100.0 * *n as f64 / pairs as f64
        );
    }
    println!(
        "  evidence tensors significant after Holm: {significant} of {tensors} ({:.4} %)",
        100.0 * significant as f64 / tensors.max(1) as f64
    );
    println!("  layer alignments counted as recovered: {recovered} of {layers}");
    println!(
        "  mean Pearson after alignment (the search alone): {:.4}",
        pearsons.iter().sum::<f64>() / pearsons.len().max(1) as f64
    );
    println!("fine-tuned, then permuted copies (20 per noise level):");
    for scale in [0.5, 1.0, 2.0, 4.0, 8.0] {
        let mut counts: BTreeMap<(bool, &str), u64> = BTreeMap::new();
        for i in 0..20u64 {
            let base = Model::init(&arch, 5000 + i);
            let b = base.fine_tune(6000 + i, scale).permute_mlp_units(8000 + i);
            for align in [false, true] {
                let c = judge(&base, &b, align);
                *counts
                    .entry((align, c.verdicts.overall.name()))
                    .or_default() += 1;
            }
        }
        let show = |align: bool| {
            counts
                .iter()
                .filter(|((a, _), _)| *a == align)
                .map(|((_, v), n)| format!("{v} {n}/20"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "  noise {scale}: expected Pearson {:.3}: aligned: {}; not aligned: {}",
            1.0 / (1.0 + scale * scale).sqrt(),
            show(true),
            show(false)
        );
    }
}
