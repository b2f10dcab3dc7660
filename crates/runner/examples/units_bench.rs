//! Writes the models of the unit-alignment benchmark (BENCHMARKS.md, "Unit alignment"):
//!
//! ```sh
//! cargo run --release -p weightkin-runner --example units_bench -- DIR [WIDTH] [HIDDEN]
//! /usr/bin/time -v target/release/weightkin compare DIR/a.safetensors DIR/b.safetensors \
//!     --include '**.mlp.**' [--align-units]
//! ```
//!
//! A synthetic Llama-style model of 3 layers (the fewest the aligned null needs), hidden
//! HIDDEN (default 1024) and WIDTH MLP units (default 4096), and a fine-tuned copy (noise 0.5,
//! expected Pearson 0.89) whose MLP units are permuted in every layer. Timing `compare` with
//! and without `--align-units` on the MLP tensors gives the alignment's cost: per layer one
//! assignment for the evidence and two for the null.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    missing_docs
)]

use std::path::PathBuf;

use weightkin_runner::demo::synth::{Arch, Model, Store};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .expect("usage: units_bench DIR [WIDTH] [HIDDEN]"),
    );
    let width: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(4096);
    let hidden: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let arch = Arch {
        layers: 3,
        hidden,
        intermediate: width,
        vocab: 256,
        vision_layers: 0,
        vision_hidden: 48,
    };
    let a = Model::init(&arch, 1);
    let b = a.fine_tune(2, 0.5).permute_mlp_units(3);
    std::fs::create_dir_all(&dir).unwrap();
    a.write(&dir.join("a.safetensors"), Store::F32).unwrap();
    b.write(&dir.join("b.safetensors"), Store::F32).unwrap();
    println!(
        "wrote {}: 3 layers, hidden {hidden}, {width} MLP units",
        dir.display()
    );
}
