//! The command line, declared with clap's derive: commands, their arguments, help texts.
//!
//! `audit`, `compare` and `demo` all run an audit, and the knobs that only change how an
//! audit runs, not what its report says (`--threads`, `--no-hash-cache`), are one
//! [`RunArgs`] flattened into each of them; [`RunArgs::options`] is the one place they turn
//! into a thread pool and [`RunOptions`]. `--fail-on` is shared by `audit` and `compare`
//! through [`FailOn`] and `gate` in `main.rs`, but declared in each command: its help says
//! *when* each one exits (after writing the reports, after printing), and `demo` has none.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use weightkin_runner::judge::Verdict;
use weightkin_runner::{NoProgress, Progress, ReportFormat, RunOptions};

use crate::bar::Bar;

#[derive(Parser)]
#[command(
    name = "weightkin",
    version,
    about = "Audit neural-network weights for provenance: was model B derived from model A?",
    after_help = "Plugins: --plugin PATH (repeatable) and WEIGHTKIN_PLUGIN_PATH (a list \
                  separated like PATH) load shared-library metric plugins. Loading a plugin runs \
                  its code: load only plugins you trust.\n\n\
                  Exit codes: 0 success, 1 the command could not be completed (bad recipe, bad \
                  model file, a model file that changed while being read, plugin that cannot \
                  be loaded, I/O error), 2 invalid usage, \
                  3 `plugins check`: a metric failed a conformance check, 4 `--fail-on`: a \
                  comparison's overall verdict matched, 5/6/7 `verify`: the report does not \
                  reproduce (5 a model file changed, 6 the report was edited, 7 another tool \
                  version wrote it)."
)]
pub struct Cli {
    /// Load the metrics of the shared-library plugin at PATH (repeatable; also read from
    /// WEIGHTKIN_PLUGIN_PATH). Loading a plugin runs its code.
    #[arg(long = "plugin", value_name = "PATH", global = true)]
    pub plugins: Vec<PathBuf>,
    /// Never use the network for hf:// models: read them from the Hugging Face cache or
    /// from what earlier runs fetched, and fail naming what is missing (also set by
    /// HF_HUB_OFFLINE=1).
    #[arg(long, global = true)]
    pub offline: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run an audit recipe and write its reports.
    Audit {
        /// The recipe (TOML).
        recipe: PathBuf,
        /// Directory the reports are written to.
        #[arg(long, default_value = "weightkin-report")]
        out: PathBuf,
        /// Exit with code 4 if a comparison's overall verdict is this (repeatable), after
        /// writing the reports: for CI gates.
        #[arg(long, value_enum)]
        fail_on: Vec<FailOn>,
        #[command(flatten)]
        run_args: RunArgs,
    },
    /// Compare two models without a recipe; prints the report to stdout.
    Compare {
        /// Model A (file, directory, or `hf://org/name[@revision][/subpath]`).
        a: String,
        /// Model B (file, directory, or `hf://org/name[@revision][/subpath]`).
        b: String,
        /// Metric to compute (repeatable; default: cosine and pearson).
        #[arg(long = "metric", short = 'm')]
        metrics: Vec<String>,
        #[command(flatten)]
        selection: Selection,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutFormat::Md)]
        format: OutFormat,
        /// Exit with code 4 if the overall verdict is this (repeatable), after printing.
        #[arg(long, value_enum)]
        fail_on: Vec<FailOn>,
        /// Align B's MLP hidden units to A's before measuring (recipe `permutation =
        /// "auto"`): a copy whose units were permuted or width-pruned is compared unit by
        /// unit, against a null aligned the same way.
        #[arg(long)]
        align_units: bool,
        #[command(flatten)]
        run_args: RunArgs,
    },
    /// Find which tensor of B corresponds to which of A (names, normalised names, structure,
    /// content) without measuring anything; print it, and keep it as a recipe.
    Match {
        /// Model A (file or directory).
        a: String,
        /// Model B (file or directory).
        b: String,
        #[command(flatten)]
        selection: Selection,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutFormat::Md)]
        format: OutFormat,
        /// Write a recipe that reproduces the pairing with rename/split/transpose rules.
        #[arg(long, value_name = "FILE")]
        emit_recipe: Option<PathBuf>,
        #[command(flatten)]
        run_args: RunArgs,
    },
    /// List a model's tensors, dtypes, shapes and format metadata.
    Inspect {
        /// The model (file, directory, or `hf://org/name[@revision][/subpath]`; only its
        /// headers are fetched).
        model: PathBuf,
        /// Use this format instead of detecting it.
        #[arg(long = "as")]
        format: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the registered formats and metrics with their origin (built-in or plugin).
    Plugins {
        #[command(subcommand)]
        action: Option<PluginsAction>,
    },
    /// Run the audit a report.json records again and check that it reproduces: every model
    /// file's BLAKE3 first, then the whole report byte for byte; names each field that
    /// differs and why (a different file, another tool version, an edit).
    #[command(
        after_help = "Exit codes: 0 reproduced byte for byte; 1 could not verify (report \
                            unreadable or without an embedded recipe, a model file missing); \
                            5 a model file is not the one audited; 6 the files and tool version \
                            are as recorded but the report differs (edited); 7 the files are \
                            as recorded, the report was written by another weightkin version \
                            and differs."
    )]
    Verify {
        /// The report (report.json) to verify.
        report: PathBuf,
        /// Directory the recipe's relative model paths are relative to (default: the
        /// report's directory if the models are there, else the current directory).
        #[arg(long, value_name = "DIR")]
        base: Option<PathBuf>,
        #[command(flatten)]
        run_args: RunArgs,
    },
    /// Condense models into sketches for the lineage search (one streaming pass each):
    /// values at seeded coordinates of every tensor, roles, shapes, file hashes. Writes one
    /// Parquet store.
    Sketch {
        /// Models (files or directories; local).
        #[arg(required = true)]
        models: Vec<String>,
        /// The store to write: FILE.parquet, or a directory (`sketches.parquet` in it).
        #[arg(long)]
        out: PathBuf,
        /// Values sampled per tensor (k).
        #[arg(long, default_value_t = weightkin_runner::sketch::DEFAULT_SAMPLES)]
        samples: usize,
        /// Seed of the coordinates (sketches compare only with the same seed and k).
        #[arg(long, default_value_t = weightkin_runner::sketch::DEFAULT_SEED)]
        seed: u64,
        #[command(flatten)]
        run_args: RunArgs,
    },
    /// Lineage of sketched models: candidate pairs from the sketches (blocked by
    /// architecture, against a null that accounts for the search), the exact audit of each
    /// candidate, and the graph of `derived` edges (graph.json, graph.html).
    Lineage {
        /// A sketch store (FILE.parquet) or a directory of them.
        store: PathBuf,
        /// Directory for graph.json and graph.html.
        #[arg(long, default_value = "weightkin-lineage")]
        out: PathBuf,
        /// Family-wise rate at which unrelated pairs may become candidates.
        #[arg(long, default_value_t = weightkin_lineage::search::DEFAULT_ALPHA)]
        alpha: f64,
        #[command(flatten)]
        run_args: RunArgs,
    },
    /// Generate a small model family offline, audit it, and print the report.
    Demo {
        /// Keep the generated models, recipe and reports in this directory.
        #[arg(long)]
        keep: Option<PathBuf>,
        #[command(flatten)]
        run_args: RunArgs,
    },
}

/// Which tensors an ad-hoc `compare` or `match` selects.
#[derive(clap::Args)]
pub struct Selection {
    /// Only tensors matching this glob (repeatable; `.` separates segments; under automatic
    /// pairing, each model's own names).
    #[arg(long)]
    pub include: Vec<String>,
    /// Skip tensors matching this glob (repeatable).
    #[arg(long)]
    pub exclude: Vec<String>,
}

#[derive(Subcommand)]
pub enum PluginsAction {
    /// Load the plugin at PATH and run the conformance kit (the checks every built-in metric
    /// passes) on each of its metrics; prints a pass/fail table, exit code 3 on a failure.
    Check {
        /// The shared library.
        path: PathBuf,
    },
}

/// How an audit runs, not what its report says: flattened into every command that runs one,
/// so the flags, their help and their set-up ([`RunArgs::options`]) exist once.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Worker threads (default: one per core). Reports are identical for any value.
    #[arg(long, short = 'j')]
    threads: Option<usize>,
    /// Hash every model file, neither reading nor writing the hash cache
    /// ($WEIGHTKIN_CACHE_DIR/blake3, default ~/.cache/weightkin/blake3). Reports are
    /// identical either way.
    #[arg(long)]
    no_hash_cache: bool,
}

impl RunArgs {
    /// Sets up an audit run: builds the global thread pool (`--threads`; call once per
    /// process), opens the hash cache unless `--no-hash-cache`, and draws `bar` when stderr is
    /// a terminal.
    pub fn options<'a>(&self, bar: &'a Bar, offline: bool) -> anyhow::Result<RunOptions<'a>> {
        if let Some(n) = self.threads {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()
                .context("cannot set up the thread pool")?;
        }
        let progress: &dyn Progress = if std::io::stderr().is_terminal() {
            bar
        } else {
            &NoProgress
        };
        Ok(RunOptions::from_env(progress, !self.no_hash_cache, offline))
    }
}

/// A verdict to gate on.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Some component of B derives from A.
    Derived,
    /// Every component of B is independent of A.
    Independent,
    /// The evidence does not settle it.
    Inconclusive,
}

impl FailOn {
    /// Whether `verdict` is the one this names.
    pub fn matches(self, verdict: Verdict) -> bool {
        matches!(
            (self, verdict),
            (FailOn::Derived, Verdict::Derived)
                | (FailOn::Independent, Verdict::Independent)
                | (FailOn::Inconclusive, Verdict::Inconclusive)
        )
    }
}

/// `compare --format`.
#[derive(Clone, Copy, ValueEnum)]
pub enum OutFormat {
    /// Markdown.
    Md,
    /// Canonical JSON.
    Json,
}

impl OutFormat {
    /// The runner's renderer for this format.
    pub fn report_format(self) -> ReportFormat {
        match self {
            OutFormat::Md => ReportFormat::Markdown,
            OutFormat::Json => ReportFormat::Json,
        }
    }
}
