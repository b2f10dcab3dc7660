//! CKA throughput on weight-sized matrices: `cargo bench -p weightkin-metrics --bench cka`.
//!
//! Prints seconds per CKA (debiased, rows = examples) for 4096×4096 and 11008×4096 f32 pairs,
//! the sizes of a 7B Llama's attention and MLP projections. `scripts/bench_cka.py` runs the
//! same estimator with numpy/BLAS on the same data shapes; BENCHMARKS.md records both.
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::time::Instant;

use weightkin_metrics::cka::{cka, Estimator, Examples};

fn data(n: usize, seed: u64) -> Vec<f32> {
    weightkin_core::testing::uniform_f32(n, seed, -0.5, 0.5)
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for (rows, cols) in [(4096usize, 4096usize), (11008, 4096)] {
        let name = format!("cka_debiased_{rows}x{cols}");
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let a = data(rows * cols, 1);
        let b: Vec<f32> = a
            .iter()
            .zip(data(rows * cols, 2))
            .map(|(x, y)| x + y)
            .collect();
        let mut times = Vec::new();
        let mut value = None;
        for _ in 0..3 {
            let t = Instant::now();
            value = cka(&a, &b, rows, cols, Examples::Rows, Estimator::Debiased)
                .unwrap()
                .value();
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{name}: best {:.3} s, median {:.3} s over 3 runs (value {:?})",
            times[0], times[1], value
        );
    }
}
