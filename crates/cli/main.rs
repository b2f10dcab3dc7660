//! `weightkin`: the command-line front end.
//!
//! Thin by design: argument parsing, thread-pool set-up, progress display and error printing.
//! Everything that decides what a report says lives in `weightkin-runner`.
//!
//! Plugins: `--plugin PATH` (repeatable, before or after the subcommand) and the
//! `WEIGHTKIN_PLUGIN_PATH` variable (a list separated like `PATH`) name shared-library metric
//! plugins, loaded before the command runs (`weightkin_plugin_host`); loading one runs its
//! code. `weightkin plugins` lists every format and metric with its origin;
//! `weightkin plugins check PATH` runs the conformance kit against a plugin's metrics.
//!
//! Hash cache: `audit`, `compare` and `demo` take model files' BLAKE3 hashes from the cache
//! in `$WEIGHTKIN_CACHE_DIR/blake3` (default `~/.cache/weightkin/blake3`) when the file is
//! unchanged since it was hashed (`weightkin_runner::HashCache`); `--no-hash-cache` hashes
//! every file and leaves the cache alone.
//!
//! Exit codes: 0 success; 1 the command could not be completed (unreadable or invalid recipe or
//! model file, a plugin that cannot be loaded, I/O error); 2 invalid command-line usage;
//! 3 `plugins check` ran, and a metric failed a conformance check; 4 the audit ran and a
//! comparison's overall verdict is one that `--fail-on` names.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use weightkin_core::{Limits, Origin, Registry, WeightSource};
use weightkin_runner::{recipe, HashCache, NoProgress, Progress, Report, ReportFormat, RunOptions};

#[derive(Parser)]
#[command(
    name = "weightkin",
    version,
    about = "Audit neural-network weights for provenance: was model B derived from model A?",
    after_help = "Plugins: --plugin PATH (repeatable) and WEIGHTKIN_PLUGIN_PATH (a list \
                  separated like PATH) load shared-library metric plugins. Loading a plugin runs \
                  its code: load only plugins you trust.\n\n\
                  Exit codes: 0 success, 1 the command could not be completed (bad recipe, bad \
                  model file, plugin that cannot be loaded, I/O error), 2 invalid usage, \
                  3 `plugins check`: a metric failed a conformance check, 4 `--fail-on`: a \
                  comparison's overall verdict matched."
)]
struct Cli {
    /// Load the metrics of the shared-library plugin at PATH (repeatable; also read from
    /// WEIGHTKIN_PLUGIN_PATH). Loading a plugin runs its code.
    #[arg(long = "plugin", value_name = "PATH", global = true)]
    plugins: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// Exit code of `plugins check` when a metric fails a conformance check.
const EXIT_CHECK_FAILED: u8 = 3;

/// Exit code of `audit`/`compare` when a comparison's overall verdict is one `--fail-on` names.
const EXIT_VERDICT_MATCHED: u8 = 4;

/// A verdict to gate on.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FailOn {
    /// Some component of B derives from A.
    Derived,
    /// Every component of B is independent of A.
    Independent,
    /// The evidence does not settle it.
    Inconclusive,
}

impl FailOn {
    fn matches(self, v: weightkin_runner::judge::Verdict) -> bool {
        use weightkin_runner::judge::Verdict;
        matches!(
            (self, v),
            (FailOn::Derived, Verdict::Derived)
                | (FailOn::Independent, Verdict::Independent)
                | (FailOn::Inconclusive, Verdict::Inconclusive)
        )
    }
}

/// Exit code 4 if any comparison's overall verdict is one of `fail_on`, with a line on
/// stderr naming each match.
fn gate(report: &Report, fail_on: &[FailOn]) -> ExitCode {
    let mut matched = false;
    for c in &report.comparisons {
        if fail_on.iter().any(|f| f.matches(c.verdicts.overall)) {
            eprintln!(
                "--fail-on: {}: {} ({})",
                c.name,
                c.verdicts.overall.name(),
                c.verdicts.sentence
            );
            matched = true;
        }
    }
    if matched {
        ExitCode::from(EXIT_VERDICT_MATCHED)
    } else {
        ExitCode::SUCCESS
    }
}

#[derive(Subcommand)]
enum Command {
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
        threads: Threads,
        #[command(flatten)]
        cache: CacheArg,
    },
    /// Compare two models without a recipe; prints the report to stdout.
    Compare {
        /// Model A (file or directory).
        a: String,
        /// Model B (file or directory).
        b: String,
        /// Metric to compute (repeatable; default: cosine and pearson).
        #[arg(long = "metric", short = 'm')]
        metrics: Vec<String>,
        /// Only compare tensors matching this glob (repeatable; `.` separates segments).
        #[arg(long)]
        include: Vec<String>,
        /// Skip tensors matching this glob (repeatable).
        #[arg(long)]
        exclude: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutFormat::Md)]
        format: OutFormat,
        /// Exit with code 4 if the overall verdict is this (repeatable), after printing.
        #[arg(long, value_enum)]
        fail_on: Vec<FailOn>,
        #[command(flatten)]
        threads: Threads,
        #[command(flatten)]
        cache: CacheArg,
    },
    /// List a model's tensors, dtypes, shapes and format metadata.
    Inspect {
        /// The model (file or directory).
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
    /// Generate a small model family offline, audit it, and print the report.
    Demo {
        /// Keep the generated models, recipe and reports in this directory.
        #[arg(long)]
        keep: Option<PathBuf>,
        #[command(flatten)]
        threads: Threads,
        #[command(flatten)]
        cache: CacheArg,
    },
}

#[derive(Subcommand)]
enum PluginsAction {
    /// Load the plugin at PATH and run the conformance kit (the checks every built-in metric
    /// passes) on each of its metrics; prints a pass/fail table, exit code 3 on a failure.
    Check {
        /// The shared library.
        path: PathBuf,
    },
}

#[derive(clap::Args)]
struct Threads {
    /// Worker threads (default: one per core). Reports are identical for any value.
    #[arg(long, short = 'j')]
    threads: Option<usize>,
}

#[derive(clap::Args)]
struct CacheArg {
    /// Hash every model file, neither reading nor writing the hash cache
    /// ($WEIGHTKIN_CACHE_DIR/blake3, default ~/.cache/weightkin/blake3). Reports are
    /// identical either way.
    #[arg(long)]
    no_hash_cache: bool,
}

impl CacheArg {
    fn cache(&self) -> Option<HashCache> {
        if self.no_hash_cache {
            None
        } else {
            HashCache::from_env()
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum OutFormat {
    /// Markdown.
    Md,
    /// Canonical JSON.
    Json,
}

/// A progress bar on stderr, drawn only when stderr is a terminal. One bar per phase; the
/// mutex is taken once per tensor pair, which is nothing next to streaming the pair.
#[derive(Default)]
struct Bar(std::sync::Mutex<Option<ProgressBar>>);

impl Progress for Bar {
    fn start(&self, phase: &str, total: u64, unit: &str) {
        if let Ok(mut bar) = self.0.lock() {
            let pb = ProgressBar::new(total).with_message(phase.to_owned());
            let template = if unit == "bytes" {
                "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}"
            } else {
                "{msg:30!} [{bar:30}] {human_pos}/{human_len} {unit} {rate}"
            };
            if let Ok(style) = ProgressStyle::with_template(&template.replace("{unit}", unit)) {
                // Throughput with an SI prefix ("1.85 G/s"), not indicatif's raw `{per_sec}`.
                let rate = |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let r = state.per_sec();
                    let (v, prefix) = [(1e9, "G"), (1e6, "M"), (1e3, "k")]
                        .into_iter()
                        .find(|(scale, _)| r >= *scale)
                        .map_or((r, ""), |(scale, p)| (r / scale, p));
                    let _ = write!(w, "{v:.2} {prefix}/s");
                };
                pb.set_style(style.with_key("rate", rate).progress_chars("=> "));
            }
            *bar = Some(pb);
        }
    }
    fn advance(&self, n: u64) {
        if let Ok(bar) = self.0.lock() {
            if let Some(pb) = &*bar {
                pb.inc(n);
            }
        }
    }
    fn finish(&self) {
        if let Ok(mut bar) = self.0.lock() {
            if let Some(pb) = bar.take() {
                pb.finish_and_clear();
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "error: {e}");
            for cause in e.chain().skip(1) {
                let _ = writeln!(err, "  caused by: {cause}");
            }
            ExitCode::from(1)
        }
    }
}

fn set_threads(t: &Threads) -> anyhow::Result<()> {
    if let Some(n) = t.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("cannot set up the thread pool")?;
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut registry = weightkin_runner::registry::builtin()?;
    let mut plugin_paths = weightkin_plugin_host::env_paths();
    plugin_paths.extend(cli.plugins);
    weightkin_plugin_host::load_all(&mut registry, &plugin_paths)?;
    let bar = Bar::default();
    let progress: &dyn Progress = if std::io::stderr().is_terminal() {
        &bar
    } else {
        &NoProgress
    };
    let mut opts = RunOptions {
        limits: Limits::default(),
        progress,
        hash_cache: None,
    };
    match cli.command {
        Command::Audit {
            recipe,
            out,
            fail_on,
            threads,
            cache,
        } => {
            set_threads(&threads)?;
            opts.hash_cache = cache.cache();
            let (recipe, report) = weightkin_runner::audit_file(&recipe, &registry, &opts)?;
            for path in report.write(&out, &recipe.formats)? {
                emit(&format!("wrote {}\n", path.display()))?;
            }
            for c in &report.comparisons {
                emit(&format!(
                    "{}: {}. {}\n",
                    c.name,
                    c.verdicts.overall.name(),
                    c.verdicts.sentence
                ))?;
            }
            return Ok(gate(&report, &fail_on));
        }
        Command::Compare {
            a,
            b,
            metrics,
            include,
            exclude,
            format,
            fail_on,
            threads,
            cache,
        } => {
            set_threads(&threads)?;
            opts.hash_cache = cache.cache();
            let text = weightkin_runner::adhoc_recipe(&a, &b, &metrics, &include, &exclude);
            // Paths on the command line are relative to the current directory.
            let recipe = recipe::parse(Path::new("<command line>"), &text, &registry)?;
            let report = weightkin_runner::run(&recipe, &registry, &opts)?;
            let f = match format {
                OutFormat::Md => ReportFormat::Markdown,
                OutFormat::Json => ReportFormat::Json,
            };
            emit(&f.render(&report))?;
            return Ok(gate(&report, &fail_on));
        }
        Command::Inspect {
            model,
            format,
            json,
        } => {
            let source = registry
                .open(&model, format.as_deref(), &opts.limits)
                .with_context(|| format!("cannot open {}", model.display()))?;
            emit(&inspect(source.as_ref(), json))?;
        }
        Command::Plugins { action: None } => emit(&plugins(&registry))?,
        Command::Plugins {
            action: Some(PluginsAction::Check { path }),
        } => {
            let loaded = weightkin_plugin_host::load(&mut registry, &path)?;
            let reports: Vec<_> = loaded
                .metrics
                .iter()
                .map(|m| weightkin_core::conformance::check(m))
                .collect();
            emit(&format!(
                "plugin {} {} ({})\n\n{}",
                loaded.name,
                loaded.version,
                loaded.path.display(),
                weightkin_core::conformance::table(&reports)
            ))?;
            if !reports
                .iter()
                .all(weightkin_core::conformance::Report::passed)
            {
                return Ok(ExitCode::from(EXIT_CHECK_FAILED));
            }
        }
        Command::Demo {
            keep,
            threads,
            cache,
        } => {
            set_threads(&threads)?;
            opts.hash_cache = cache.cache();
            let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
            let dir = keep.as_deref().unwrap_or(tmp.path());
            let recipe_path = weightkin_runner::demo::generate(dir)
                .with_context(|| format!("cannot write the demo models to {}", dir.display()))?;
            let (recipe, report) = weightkin_runner::audit_file(&recipe_path, &registry, &opts)?;
            emit(&demo_summary(&report))?;
            if keep.is_some() {
                for path in report.write(dir, &recipe.formats)? {
                    eprintln!("wrote {}", path.display());
                }
            } else {
                eprintln!(
                    "(models generated in a temporary directory, now removed; \
                     `weightkin demo --keep DIR` keeps them with the recipe and reports)"
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout. A closed pipe (`weightkin compare … | head`) ends output quietly
/// instead of panicking as `print!` would.
fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to standard output")
        }
        _ => Ok(()),
    }
}

fn inspect(source: &dyn WeightSource, json: bool) -> String {
    use std::fmt::Write as _;
    let tensors = source.tensors();
    let params: u64 = tensors.iter().map(|t| t.numel as u64).sum();
    if json {
        let value = serde_json::json!({
            "format": source.format(),
            "files": source.files().iter().map(|f| serde_json::json!({
                "path": f.path.to_string_lossy(), "bytes": f.size })).collect::<Vec<_>>(),
            "parameters": params,
            "metadata": source.metadata(),
            "transforms": source.transforms(),
            "tensors": tensors,
        });
        return serde_json::to_string_pretty(&value).unwrap_or_default() + "\n";
    }
    let mut o = String::new();
    let _ = writeln!(o, "format: {}", source.format());
    for f in source.files() {
        let _ = writeln!(o, "file: {} ({} bytes)", f.path.display(), f.size);
    }
    let _ = writeln!(o, "tensors: {}  parameters: {params}", tensors.len());
    for (k, v) in source.metadata() {
        let _ = writeln!(o, "metadata: {k} = {v}");
    }
    for t in source.transforms() {
        let _ = writeln!(
            o,
            "transform: {} ({} tensors): {}",
            t.name, t.tensors, t.detail
        );
    }
    let width = tensors.iter().map(|t| t.name.len()).max().unwrap_or(0);
    let _ = writeln!(o);
    for t in tensors {
        let _ = write!(
            o,
            "{:width$}  {:8}  {:>12}  {:?}",
            t.name,
            t.dtype.as_str(),
            t.numel,
            t.shape
        );
        match &t.stored_name {
            Some(stored) => {
                let _ = writeln!(o, "  (stored as {stored})");
            }
            None => o.push('\n'),
        }
    }
    o
}

/// `weightkin plugins`: every format and metric with its origin (`built-in` or the name of the
/// plugin it came from), then each loaded plugin with its version and path.
fn plugins(registry: &Registry) -> String {
    use std::fmt::Write as _;
    let metrics: Vec<_> = registry.metrics_with_origin().collect();
    let origin = |o: &Origin| match o {
        Origin::BuiltIn => "built-in".to_owned(),
        Origin::Library { plugin, .. } => plugin.clone(),
    };
    let w_name = registry
        .formats()
        .iter()
        .map(|f| f.name().len())
        .chain(metrics.iter().map(|(m, _)| m.name.len()))
        .max()
        .unwrap_or(0);
    let w_origin = metrics
        .iter()
        .map(|(_, o)| origin(o).len())
        .chain(["built-in".len()])
        .max()
        .unwrap_or(0);
    let mut o = String::from("formats:\n");
    for f in registry.formats() {
        let _ = writeln!(
            o,
            "  {:w_name$}  {:w_origin$}  {}",
            f.name(),
            "built-in",
            f.doc()
        );
    }
    o.push_str("metrics:\n");
    let mut libraries: Vec<(&Origin, Vec<&str>)> = Vec::new();
    for (m, from) in &metrics {
        let identity = m
            .identity
            .map(|v| format!(", m(a,a) = {v}"))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "  {:w_name$}  {:w_origin$}  {} [range {}..{}{}{identity}]",
            m.name,
            origin(from),
            m.doc,
            m.range.0,
            m.range.1,
            if m.symmetric { ", symmetric" } else { "" }
        );
        if matches!(from, Origin::Library { .. }) {
            match libraries.iter_mut().find(|(l, _)| *l == *from) {
                Some((_, names)) => names.push(m.name),
                None => libraries.push((from, vec![m.name])),
            }
        }
    }
    if !libraries.is_empty() {
        o.push_str("plugins (loading a plugin runs its code):\n");
        for (lib, names) in libraries {
            if let Origin::Library {
                path,
                plugin,
                version,
            } = lib
            {
                let _ = writeln!(
                    o,
                    "  {plugin} {version}: {} ({})",
                    path.display(),
                    names.join(", ")
                );
            }
        }
    }
    o
}

/// The demo's terminal output: per comparison, the class table (the full report is written
/// to disk beside the models).
fn demo_summary(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "{}\n", report.audit.name);
    for c in &report.comparisons {
        let _ = writeln!(
            o,
            "{}: {} tensor pairs compared, {} not compared",
            c.name, c.summary.compared, c.summary.not_compared
        );
        let _ = writeln!(
            o,
            "  verdict: {}. {}",
            c.verdicts.overall.name(),
            c.verdicts.sentence
        );
        let w = c.classes.iter().map(|k| k.class.len()).max().unwrap_or(5);
        let _ = writeln!(
            o,
            "  {:w$} {:>4} {:>16} {:>16}",
            "class", "n", "cosine (median)", "pearson (median)"
        );
        for k in &c.classes {
            let med = |m: &str| {
                k.stats
                    .iter()
                    .find(|s| s.metric == m)
                    .and_then(|s| s.median)
                    .map_or_else(|| "—".to_owned(), |v| format!("{v:.4}"))
            };
            let _ = writeln!(
                o,
                "  {:w$} {:>4} {:>16} {:>16}",
                k.class,
                k.count,
                med("cosine"),
                med("pearson")
            );
        }
        for (reason, n) in c.summary.not_compared_by_text() {
            let _ = writeln!(o, "  not compared: {n} tensor(s), {reason}");
        }
        for a in &c.alignments {
            let _ = writeln!(
                o,
                "  layer alignment of {} (B→A, from {} grids): {}  (mean {} on it, {} off it{})",
                a.stack,
                a.metric,
                a.mapping_text(),
                a.score.map_or("—".to_owned(), |v| format!("{v:.4}")),
                a.off_mapping_mean
                    .map_or("—".to_owned(), |v| format!("{v:.4}")),
                if a.meaningful {
                    ""
                } else {
                    ": no layer correspondence"
                }
            );
        }
        o.push('\n');
    }
    o.push_str(
        "Note the norm weights: cosine ≈ 0.99 even for the independent model, because norm \
         weights sit near 1.0 in every model; Pearson removes that shared mean and drops to ≈ 0.\n",
    );
    o
}
