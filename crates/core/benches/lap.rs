//! Linear assignment (`weightkin_core::lap`) on square matrices of issue 15's sizes.
//!
//! `cargo bench -p weightkin-core --bench lap`
//!
//! Cases, each n × n for n = 1024, 2048, 4096:
//! - `uniform`: costs uniform in (0, 1] — the textbook hard case, many near-optimal
//!   assignments;
//! - `permuted`: the realistic case, one clear optimum. Units of `D` normal weights, a
//!   permuted copy with noise of s.d. 1 (correlation ≈ 0.71 between a unit and its copy,
//!   ≈ 0 ± 0.125 otherwise); the cost is 1 − Pearson correlation, solved with `assign`.
//!
//! in f64 and f32. With `-- structured`, instead three structured matrices on which the
//! algorithm (scipy's too) is cubic, f64, one run each: `i*j` (cost i·j), `same-row` (every
//! row the same uniform vector: every assignment is optimal) and `rank-1` (aᵢ·bⱼ, uniform a
//! and b).
//!
//! Every run is a fresh process (this binary re-executed with `--one`), so
//! its peak RSS (`VmHWM`) is that case's alone: the matrix (n² × 8 or 4 bytes) plus the
//! solver's O(n) working memory. Building the matrix is not timed. Min of 3 runs per case;
//! the machine has 2 cores and may be shared, so the minimum is the least disturbed run.

use std::process::Command;
use std::time::Instant;

use rayon::prelude::*;
use weightkin_core::lap::{assign, Cost};
use weightkin_core::rng::Rng;

/// Features per unit in the `permuted` case.
const D: usize = 64;
const RUNS: usize = 3;

/// The case's `n × n` matrix, each value built in f64 and stored as `T` (so an f32 case never
/// holds an f64 copy and its peak RSS is its own).
fn matrix<T: Send>(case: &str, n: usize, store: fn(f64) -> T) -> Result<Vec<T>, String> {
    let mut rng = Rng::new(1);
    let cell = |f: &dyn Fn(usize, usize) -> f64| -> Vec<T> {
        (0..n * n).map(|k| store(f(k / n, k % n))).collect()
    };
    Ok(match case {
        "uniform" => (0..n * n).map(|_| store(rng.uniform())).collect(),
        "permuted" => permuted(n, store),
        "i*j" => cell(&|i, j| (i * j) as f64),
        "same-row" => {
            let w: Vec<f64> = (0..n).map(|_| rng.uniform()).collect();
            cell(&|_, j| w[j])
        }
        "rank-1" => {
            let a: Vec<f64> = (0..n).map(|_| rng.uniform()).collect();
            let b: Vec<f64> = (0..n).map(|_| rng.uniform()).collect();
            cell(&|i, j| a[i] * b[j])
        }
        _ => return Err(format!("unknown case {case}")),
    })
}

/// 1 − correlation between `n` units and a permuted noisy copy of them.
fn permuted<T: Send>(n: usize, store: fn(f64) -> T) -> Vec<T> {
    let mut rng = Rng::new(2);
    let a: Vec<f64> = (0..n * D).map(|_| rng.normal()).collect();
    let perm = rng.permutation(n);
    let b: Vec<f64> = perm
        .iter()
        .flat_map(|&i| a[i * D..(i + 1) * D].to_vec())
        .map(|x| x + rng.normal())
        .collect();
    let standardise = |m: &[f64]| -> Vec<f64> {
        m.chunks(D)
            .flat_map(|row| {
                let mean = row.iter().sum::<f64>() / D as f64;
                let norm = row.iter().map(|x| (x - mean).powi(2)).sum::<f64>().sqrt();
                row.iter()
                    .map(move |x| (x - mean) / norm)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let (a, b) = (standardise(&a), standardise(&b));
    let mut cost = Vec::with_capacity(n * n);
    cost.par_extend((0..n * n).into_par_iter().map(|k| {
        let (x, y) = (&a[k / n * D..][..D], &b[k % n * D..][..D]);
        store(1.0 - x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>())
    }));
    cost
}

/// Peak resident set of this process, in MB (`VmHWM` of `/proc/self/status`).
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb * 1024.0 / 1e6)
}

fn time<T: Cost>(m: &[T], n: usize) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let a = assign(m, n, n)?;
    Ok((t.elapsed().as_secs_f64(), a.total()))
}

/// One timed solve in this process: prints `seconds total peak_rss_mb`.
#[allow(clippy::print_stdout)] // a benchmark program: its output is the point
fn one(case: &str, n: usize, dtype: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (secs, total) = match dtype {
        "f64" => time(&matrix(case, n, |x| x)?, n)?,
        "f32" => time(&matrix(case, n, |x| x as f32)?, n)?,
        _ => return Err(format!("unknown dtype {dtype}").into()),
    };
    println!("{secs} {total} {}", peak_rss_mb());
    Ok(())
}

#[allow(clippy::print_stdout)] // a benchmark program: its output is the point
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, case, n, dtype] = args.as_slice() {
        if flag == "--one" {
            return one(case, n.parse()?, dtype);
        }
    }
    // `cargo bench --bench lap -- structured`: the cubic cases instead (one run each).
    let structured = args.iter().any(|a| a == "structured");
    let (cases, repeats): (&[&str], usize) = if structured {
        (&["i*j", "same-row", "rank-1"], 1)
    } else {
        (&["uniform", "permuted"], RUNS)
    };
    let exe = std::env::current_exe()?;
    println!(
        "{:<10} {:>6} {:>5} {:>9} {:>9} {:>9} {:>12}",
        "case", "n", "type", "best s", "worst s", "RSS MB", "total"
    );
    for &case in cases {
        for n in [1024usize, 2048, 4096] {
            let dtypes: &[&str] = if structured {
                &["f64"]
            } else {
                &["f64", "f32"]
            };
            for &dtype in dtypes {
                let mut runs = Vec::new();
                for _ in 0..repeats {
                    let out = Command::new(&exe)
                        .args(["--one", case, &n.to_string(), dtype])
                        .output()?;
                    if !out.status.success() {
                        return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
                    }
                    let text = String::from_utf8(out.stdout)?;
                    let v: Vec<f64> = text
                        .split_whitespace()
                        .map(str::parse)
                        .collect::<Result<_, _>>()?;
                    runs.push(v);
                }
                let best = runs.iter().map(|r| r[0]).fold(f64::INFINITY, f64::min);
                let worst = runs.iter().map(|r| r[0]).fold(0.0, f64::max);
                let rss = runs.iter().map(|r| r[2]).fold(0.0, f64::max);
                println!(
                    "{case:<10} {n:>6} {dtype:>5} {best:>9.3} {worst:>9.3} {rss:>9.0} {:>12.4}",
                    runs[0][1]
                );
            }
        }
    }
    Ok(())
}
