//! `weightkin-simhub`: the simulated hub of issue 21 — generate it, run the whole lineage path
//! on it and score the result (`bench`), and measure the search's null on the trained model
//! zoo (`null`). `scripts/bench-lineage.sh` drives it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rayon::prelude::*;
use weightkin_core::rng::Rng;
use weightkin_lineage::graph::{self, Graph};
use weightkin_lineage::search::{self, SearchOptions};
use weightkin_lineage::simhub::{self, Manifest};
use weightkin_lineage::store;
use weightkin_runner::judge::Verdict;
use weightkin_runner::sketch::{sketch_model, Sketch, SketchOptions};
use weightkin_runner::RunOptions;

#[derive(Parser)]
#[command(
    name = "weightkin-simhub",
    about = "Simulated hub for weightkin's lineage search"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a hub of at least N models into DIR (skipped when DIR already holds it).
    Generate {
        /// Output directory.
        dir: PathBuf,
        /// Models (whole clans: a few more may be written).
        #[arg(long, default_value_t = 100)]
        models: usize,
        /// Seed.
        #[arg(long, default_value_t = 21)]
        seed: u64,
    },
    /// Sketch, store, search, audit and score a hub; time every step.
    Bench {
        /// The hub directory (generated first if it holds no manifest for these settings).
        dir: PathBuf,
        /// Models.
        #[arg(long, default_value_t = 100)]
        models: usize,
        /// Seed.
        #[arg(long, default_value_t = 21)]
        seed: u64,
        /// Random pairs audited to extrapolate the cost of all-pairs audits.
        #[arg(long, default_value_t = 100)]
        all_pairs_sample: usize,
        /// Where the graph, sketches and scores are written (default DIR/lineage).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Measure the search's null on a zoo (crates/zoo): every same-architecture pair of models
    /// with disjoint roots.
    Null {
        /// The zoo directory (scripts/zoo.sh prints it).
        zoo: PathBuf,
        /// Family-wise α of the search.
        #[arg(long, default_value_t = search::DEFAULT_ALPHA)]
        alpha: f64,
    },
}

#[allow(clippy::print_stdout)]
fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Generate { dir, models, seed } => {
            let m = ensure_hub(&dir, models, seed)?;
            eprintln!("{} models in {}", m.models.len(), dir.display());
        }
        Command::Bench {
            dir,
            models,
            seed,
            all_pairs_sample,
            out,
        } => bench(&dir, models, seed, all_pairs_sample, out)?,
        Command::Null { zoo, alpha } => null(&zoo, alpha)?,
    }
    Ok(())
}

/// The hub in `dir`, generated unless a manifest for these settings is there.
fn ensure_hub(dir: &Path, models: usize, seed: u64) -> anyhow::Result<Manifest> {
    if let Ok(m) = Manifest::read(dir) {
        if m.seed == seed
            && m.generator_version == simhub::GENERATOR_VERSION
            && m.models.len() >= models
            && m.models.len() < models + 40
        {
            return Ok(m);
        }
    }
    let t = Instant::now();
    let m = simhub::generate(dir, models, seed)?;
    eprintln!(
        "generated {} models in {:.1} s",
        m.models.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(m)
}

fn sketch_all(
    names_paths: &[(String, PathBuf)],
    registry: &weightkin_core::Registry,
) -> anyhow::Result<Vec<Sketch>> {
    let run = RunOptions::default();
    names_paths
        .par_iter()
        .map(|(name, path)| {
            sketch_model(path, name, registry, &SketchOptions::default(), &run)
                .with_context(|| format!("cannot sketch {}", path.display()))
        })
        .collect()
}

#[allow(clippy::print_stdout)]
fn bench(
    dir: &Path,
    models: usize,
    seed: u64,
    sample: usize,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let manifest = ensure_hub(dir, models, seed)?;
    let out = out.unwrap_or_else(|| dir.join("lineage"));
    std::fs::create_dir_all(&out)?;
    let registry = weightkin_runner::registry::builtin()?;
    let items: Vec<(String, PathBuf)> = manifest
        .models
        .iter()
        .map(|m| (m.name.clone(), Manifest::path_of(dir, m)))
        .collect();
    let bytes: u64 = items
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let t = Instant::now();
    let sketches = sketch_all(&items, &registry)?;
    let t_sketch = t.elapsed().as_secs_f64();
    let store_path = out.join("sketches.parquet");
    let t = Instant::now();
    store::write_parquet(&sketches, &store_path)?;
    let t_write = t.elapsed().as_secs_f64();
    let store_bytes = std::fs::metadata(&store_path)?.len();
    let t = Instant::now();
    let sketches = store::read_store(&store_path)?;
    let t_read = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let found = search::search(&sketches, &SearchOptions::default())?;
    let t_search = t.elapsed().as_secs_f64();
    let run = RunOptions::default();
    let t = Instant::now();
    let audited = graph::audit_candidates(&sketches, &found, &registry, &run)?;
    let t_audit = t.elapsed().as_secs_f64();
    let g: Graph = graph::graph(&sketches, &found, &audited);
    g.write(&out)?;
    let scores = simhub::score(&manifest, &g);
    let audit_bytes: u64 = found
        .candidates
        .iter()
        .map(|c| file_bytes(&sketches[c.a]) + file_bytes(&sketches[c.b]))
        .sum();

    // All-pairs audits, measured on a seeded sample of pairs and extrapolated.
    let n = sketches.len();
    let mut rng = Rng::new(seed ^ 0xa11);
    let pairs: Vec<(usize, usize)> = (0..sample.min(n * n.saturating_sub(1) / 2))
        .map(|_| {
            let i = rng.below(n as u64) as usize;
            let mut j = rng.below(n as u64 - 1) as usize;
            if j >= i {
                j += 1;
            }
            (i.min(j), i.max(j))
        })
        .collect();
    let t = Instant::now();
    let sampled: Vec<graph::Audited> = pairs
        .par_iter()
        .map(|&(a, b)| graph::audit_pair(&sketches, a, b, &registry, &run))
        .collect::<Result<_, _>>()?;
    let t_sample = t.elapsed().as_secs_f64();
    let all_pairs = (n as f64) * (n as f64 - 1.0) / 2.0;
    let per_pair = t_sample / sampled.len().max(1) as f64;
    let all_pairs_time = per_pair * all_pairs;
    let avg_bytes = bytes as f64 / n.max(1) as f64;
    let all_pairs_bytes = all_pairs * 2.0 * avg_bytes;
    let ours = t_sketch + t_write + t_read + t_search + t_audit;
    let sample_derived = sampled
        .iter()
        .filter(|a| a.verdict == Verdict::Derived)
        .count();
    let report = serde_json::json!({
        "models": n,
        "model_bytes": bytes,
        "threads": rayon::current_num_threads(),
        "seconds": {
            "sketch": t_sketch, "store_write": t_write, "store_read": t_read,
            "search": t_search, "audits": t_audit, "total": ours,
        },
        "store_bytes": store_bytes,
        "store_bytes_per_model": store_bytes as f64 / n.max(1) as f64,
        "bytes_read": { "sketch": bytes, "audits": audit_bytes, "total": bytes + audit_bytes },
        "search": found.stats,
        "scores": scores,
        "all_pairs": {
            "pairs": all_pairs, "sampled": sampled.len(), "sampled_seconds": t_sample,
            "sampled_derived": sample_derived,
            "seconds_per_pair": per_pair, "extrapolated_seconds": all_pairs_time,
            "extrapolated_bytes": all_pairs_bytes,
            "compute_ratio": all_pairs_time / ours.max(1e-9),
            "bytes_ratio": all_pairs_bytes / (bytes + audit_bytes).max(1) as f64,
        },
    });
    let text = serde_json::to_string_pretty(&report)? + "\n";
    std::fs::write(out.join("bench.json"), &text)?;
    print!("{text}");
    Ok(())
}

fn file_bytes(s: &Sketch) -> u64 {
    s.files.iter().map(|f| f.bytes).sum()
}

/// The zoo's manifest, as much of it as the null needs.
#[derive(serde::Deserialize)]
struct Zoo {
    models: Vec<ZooModel>,
}

#[derive(serde::Deserialize)]
struct ZooModel {
    name: String,
    path: String,
    architecture: String,
    roots: Vec<String>,
}

#[allow(clippy::print_stdout)]
fn null(zoo: &Path, alpha: f64) -> anyhow::Result<()> {
    let path = zoo.join("manifest.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let manifest: Zoo =
        serde_json::from_str(&text).with_context(|| format!("{}: not a zoo", path.display()))?;
    let registry = weightkin_runner::registry::builtin()?;
    let items: Vec<(String, PathBuf)> = manifest
        .models
        .iter()
        .map(|m| (m.name.clone(), zoo.join(&m.path)))
        .collect();
    let sketches = sketch_all(&items, &registry)?;
    let mut pairs = Vec::new();
    let mut related = Vec::new();
    for i in 0..manifest.models.len() {
        for j in i + 1..manifest.models.len() {
            let (a, b) = (&manifest.models[i], &manifest.models[j]);
            if a.architecture != b.architecture {
                continue;
            }
            if a.roots.iter().any(|r| b.roots.contains(r)) {
                related.push((i, j));
            } else {
                pairs.push((i, j));
            }
        }
    }
    let unrelated_scores = search::pair_scores(&sketches, &pairs);
    let related_scores = search::pair_scores(&sketches, &related);
    let z: Vec<f64> = unrelated_scores.iter().flatten().copied().collect();
    let zr: Vec<f64> = related_scores.iter().flatten().copied().collect();
    let mean = z.iter().sum::<f64>() / z.len().max(1) as f64;
    let sd =
        (z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (z.len().max(2) - 1) as f64).sqrt();
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // The threshold the search would use over these pairs, under the default null.
    let m = pairs.len().max(1) as f64;
    let opts = SearchOptions {
        alpha,
        ..SearchOptions::default()
    };
    let thr = |c: f64| opts.null_mean + opts.null_sd * upper_tail_inv_pub(opts.alpha / (m * c));
    // A pair is a candidate when any of its components clears the threshold.
    let candidate = |s: &Vec<f64>| s.iter().any(|&v| v > thr(1.0));
    let over = unrelated_scores.iter().filter(|s| candidate(s)).count();
    let related_found = related_scores.iter().filter(|s| candidate(s)).count();
    let mut by_arch: BTreeMap<&str, usize> = BTreeMap::new();
    for &(i, _) in &pairs {
        *by_arch
            .entry(manifest.models[i].architecture.as_str())
            .or_default() += 1;
    }
    let out = serde_json::json!({
        "models": sketches.len(),
        "unrelated_pairs": pairs.len(),
        "unrelated_pairs_by_architecture": by_arch,
        "unrelated_component_scores": z.len(),
        "null_z": { "mean": mean, "sd": sd, "max": max },
        "threshold_default_null": thr(1.0),
        "unrelated_pairs_over_threshold": over,
        "related_pairs": related.len(),
        "related_component_scores": zr.len(),
        "related_pairs_over_threshold": related_found,
        "sketch_bytes_per_model": sketches.iter().map(Sketch::value_bytes).sum::<usize>() as f64
            / sketches.len().max(1) as f64,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn upper_tail_inv_pub(p: f64) -> f64 {
    weightkin_lineage::search::threshold_z(p)
}
