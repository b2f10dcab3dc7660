//! `weightkin-zoo`: build, verify and validate the zoo of trained models.
//!
//! ```text
//! weightkin-zoo build DIR [--subset small|full] [--jobs N]   train what is missing, write the manifest
//! weightkin-zoo verify DIR                                   check every file against the manifest
//! weightkin-zoo validate DIR [--json FILE]                   run weightkin on the zoo's pairs, print the table
//!               [--names original|opaque|convention]           B's names hidden, `pairing = "auto"`
//!               [--align [--scramble]]                         `permutation = "auto"`; B scrambled
//! weightkin-zoo version                                      the generator version (the cache key)
//! ```
//!
//! Determinism: `build` sets `RAYON_NUM_THREADS=1` before any thread exists, because candle
//! reads it on every matrix product to decide whether to split the product across threads.
//! Each model then trains on one thread, in a fixed order of floating-point operations, and
//! `--jobs` only decides how many models train at once: the files are the same for any value.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use weightkin_zoo::manifest::{Manifest, Subset};
use weightkin_zoo::{build, validate, GENERATOR_VERSION};

#[derive(Parser)]
#[command(
    name = "weightkin-zoo",
    version,
    about = "A zoo of small trained models with known lineage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum NamesArg {
    /// The zoo's own names (equal names pair everything).
    Original,
    /// B's tensors renamed `t0000.weight`, … in a shuffled order: no layers, no roles.
    Opaque,
    /// B renamed to another convention (`blocks.N.attn.qkv`, q/k/v fused; timm ResNet).
    Convention,
}

#[derive(Clone, Copy, ValueEnum)]
enum SubsetArg {
    Small,
    Full,
}

#[derive(Subcommand)]
enum Command {
    /// Train and write every model of the subset that DIR does not already hold (verified).
    Build {
        /// The zoo directory (created if missing).
        dir: PathBuf,
        /// Which models.
        #[arg(long, value_enum, default_value_t = SubsetArg::Full)]
        subset: SubsetArg,
        /// Models trained at once (default: one per core). The files do not depend on it.
        #[arg(long, short = 'j')]
        jobs: Option<usize>,
    },
    /// Check that every model the manifest lists has its file with the recorded BLAKE3.
    Verify {
        /// The zoo directory.
        dir: PathBuf,
        /// Also fail unless the directory holds at least this subset.
        #[arg(long, value_enum)]
        subset: Option<SubsetArg>,
    },
    /// Compare the zoo's unrelated and derived pairs with weightkin and print the table.
    Validate {
        /// The zoo directory.
        dir: PathBuf,
        /// Also write every pair's result (verdicts, per-tensor z) as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Only the models of this subset (default: every model the directory holds).
        #[arg(long, value_enum)]
        subset: Option<SubsetArg>,
        /// How B's tensor names are presented: hidden names are compared with
        /// `pairing = "auto"` and the discovered pairing is checked against the truth.
        #[arg(long, value_enum, default_value_t = NamesArg::Original)]
        names: NamesArg,
        /// Compare with `permutation = "auto"` (residual stream, attention heads and MLP units
        /// aligned first): the false-positive rate of the alignment's searches.
        #[arg(long, conflicts_with = "names")]
        align: bool,
        /// With `--align`: give every Llama B a function-preserving scramble first (the
        /// residual stream signed-permuted, KV groups and MLP units permuted in every layer);
        /// ResNet and MLP B are compared unchanged.
        #[arg(long, requires = "align")]
        scramble: bool,
    },
    /// Print the generator version (the zoo cache is keyed by it).
    Version,
}

fn subset(s: SubsetArg) -> Subset {
    match s {
        SubsetArg::Small => Subset::Small,
        SubsetArg::Full => Subset::Full,
    }
}

fn manifest(dir: &std::path::Path) -> anyhow::Result<Manifest> {
    Manifest::read(dir)?.with_context(|| format!("{} holds no zoo manifest", dir.display()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Build { .. }) {
        // Before any thread exists (see the module docs).
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)]
fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Build {
            dir,
            subset: s,
            jobs,
        } => {
            let jobs = jobs
                .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
                .unwrap_or(1);
            let start = std::time::Instant::now();
            let summary = build::build(&dir, subset(s), jobs, &|line| eprintln!("{line}"))?;
            println!(
                "zoo {} ({}): {} models built, {} already there, in {:.1} s",
                dir.display(),
                subset(s).name(),
                summary.built.len(),
                summary.kept.len(),
                start.elapsed().as_secs_f64()
            );
        }
        Command::Verify { dir, subset: s } => {
            let m = manifest(&dir)?;
            build::verify(&dir, &m)?;
            if let Some(s) = s {
                if m.subset < Some(subset(s)) {
                    anyhow::bail!(
                        "{} does not hold the whole {} subset",
                        dir.display(),
                        subset(s).name()
                    );
                }
            }
            println!("zoo {}: {} models verified", dir.display(), m.models.len());
        }
        Command::Validate {
            dir,
            json,
            subset: s,
            names,
            align,
            scramble,
        } => {
            let mut m = manifest(&dir)?;
            if let Some(s) = s {
                let s = subset(s);
                m.models.retain(|x| x.subsets.contains(&s));
            }
            let naming = match names {
                NamesArg::Original => validate::Naming::Original,
                NamesArg::Opaque => validate::Naming::Opaque,
                NamesArg::Convention => validate::Naming::Convention,
            };
            // Renamed copies of the B models live only as long as the run.
            let work = tempfile::tempdir().context("cannot create a temporary directory")?;
            let results = if scramble {
                validate::run_scrambled(&dir, &m, work.path())?
            } else if align {
                validate::run_aligned(&dir, &m)?
            } else {
                validate::run_named(&dir, &m, naming, work.path())?
            };
            print!("{}", validate::table(&m, &results));
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&results)?;
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
        Command::Version => println!("{GENERATOR_VERSION}"),
    }
    Ok(ExitCode::SUCCESS)
}
