//! `weightkin`: the command-line front end.
//!
//! Thin by design: argument parsing, thread-pool set-up, progress display and error printing.
//! Everything that decides what a report says lives in `weightkin-runner`. The command line
//! is declared in `args` (the knobs every audit-running command shares are one `RunArgs`,
//! set up in one place), the progress bar is `bar`, and the plain-text views that are not
//! reports (`inspect`, `plugins`, the demo summary) are `text`; this file dispatches the
//! commands, gates on verdicts and prints errors.
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
//! model file, a model file that changed while being read, a plugin that cannot be loaded, I/O
//! error); 2 invalid command-line usage;
//! 3 `plugins check` ran, and a metric failed a conformance check; 4 the audit ran and a
//! comparison's overall verdict is one that `--fail-on` names; `verify` ran and the report
//! does not reproduce: 5 a model file is not the one audited, 6 the files and the tool
//! version are the ones recorded but the report differs (it was edited), 7 the files are the
//! ones recorded and another version of weightkin wrote the report.

mod args;
mod bar;
mod text;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use weightkin_runner::verify::Outcome;
use weightkin_runner::{recipe, Adhoc, Report};

use crate::args::{Cli, Command, FailOn, PluginsAction, Selection};
use crate::bar::Bar;

/// Exit code of `plugins check` when a metric fails a conformance check.
const EXIT_CHECK_FAILED: u8 = 3;

/// Exit code of `audit`/`compare` when a comparison's overall verdict is one `--fail-on` names.
const EXIT_VERDICT_MATCHED: u8 = 4;

/// Exit code of `verify` when a model file is not the one audited.
const EXIT_VERIFY_FILE_CHANGED: u8 = 5;

/// Exit code of `verify` when files and tool version are as recorded but the report differs.
const EXIT_VERIFY_EDITED: u8 = 6;

/// Exit code of `verify` when another version of weightkin wrote the report and it differs.
const EXIT_VERIFY_TOOL_VERSION: u8 = 7;

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

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut registry = weightkin_runner::registry::builtin()?;
    let mut plugin_paths = weightkin_plugin_host::env_paths();
    plugin_paths.extend(cli.plugins);
    weightkin_plugin_host::load_all(&mut registry, &plugin_paths)?;
    let bar = Bar::default();
    let offline = cli.offline;
    match cli.command {
        Command::Audit {
            recipe,
            out,
            fail_on,
            run_args,
        } => {
            let opts = run_args.options(&bar, offline)?;
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
            selection: Selection { include, exclude },
            format,
            fail_on,
            align_units,
            run_args,
        } => {
            let opts = run_args.options(&bar, offline)?;
            let adhoc = Adhoc {
                a,
                b,
                metrics,
                include,
                exclude,
                align_units,
            };
            let report = weightkin_runner::compare(&adhoc, &registry, &opts)?;
            emit(&format.report_format().render(&report))?;
            return Ok(gate(&report, &fail_on));
        }
        Command::Match {
            a,
            b,
            selection: Selection { include, exclude },
            format,
            emit_recipe,
            run_args,
        } => {
            let opts = run_args.options(&bar, offline)?;
            let source = weightkin_runner::adhoc_recipe(&a, &b, &[], &include, &exclude);
            let recipe = recipe::parse(
                Path::new(weightkin_runner::COMMAND_LINE),
                &source,
                &registry,
            )?;
            let found = weightkin_runner::discover::discover(&recipe, &registry, &opts)?;
            let Some(m) = found.first() else {
                anyhow::bail!("nothing to match");
            };
            if let Some(path) = emit_recipe {
                std::fs::write(&path, &m.recipe)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            match format {
                args::OutFormat::Md => emit(&m.to_markdown())?,
                args::OutFormat::Json => {
                    let mut s = serde_json::to_string_pretty(m)?;
                    s.push('\n');
                    emit(&s)?;
                }
            }
        }
        Command::Inspect {
            model,
            format,
            json,
        } => {
            // Only the headers are read (or fetched): inspect reads no tensor.
            let hub = weightkin_runner::hub_from_env(offline);
            let source =
                weightkin_runner::inspect::open(&model, format.as_deref(), &registry, &hub)?;
            emit(&text::inspect(source.as_ref(), json))?;
        }
        Command::Plugins { action: None } => emit(&text::plugins(&registry))?,
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
        Command::Verify {
            report,
            base,
            run_args,
        } => {
            let opts = run_args.options(&bar, offline)?;
            let v = weightkin_runner::verify::verify(&report, base.as_deref(), &registry, &opts)?;
            emit(&v.text())?;
            return Ok(match v.outcome {
                Outcome::Identical => ExitCode::SUCCESS,
                Outcome::FileChanged => ExitCode::from(EXIT_VERIFY_FILE_CHANGED),
                Outcome::Edited => ExitCode::from(EXIT_VERIFY_EDITED),
                Outcome::ToolVersion => ExitCode::from(EXIT_VERIFY_TOOL_VERSION),
            });
        }
        Command::Sketch {
            models,
            out,
            samples,
            seed,
            run_args,
        } => {
            let opts = run_args.options(&bar, offline)?;
            let sketch_opts = weightkin_runner::sketch::SketchOptions { samples, seed };
            let sketches =
                weightkin_lineage::sketch_paths(&models, &registry, &sketch_opts, &opts)?;
            let path = if out.extension().is_some_and(|e| e == "parquet") {
                if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                out
            } else {
                std::fs::create_dir_all(&out)
                    .with_context(|| format!("cannot create {}", out.display()))?;
                out.join("sketches.parquet")
            };
            weightkin_lineage::store::write_parquet(&sketches, &path)?;
            emit(&format!(
                "sketched {} model(s) into {}\n",
                sketches.len(),
                path.display()
            ))?;
        }
        Command::Lineage {
            store,
            out,
            alpha,
            run_args,
        } => {
            let opts = run_args.options(&bar, offline)?;
            let sketches = weightkin_lineage::store::read_store(&store)?;
            let search_opts = weightkin_lineage::search::SearchOptions {
                alpha,
                ..Default::default()
            };
            let g = weightkin_lineage::graph::lineage(&sketches, &search_opts, &registry, &opts)?;
            for path in g.write(&out)? {
                emit(&format!("wrote {}\n", path.display()))?;
            }
            let derived = g
                .edges
                .iter()
                .filter(|e| e.verdict == weightkin_runner::judge::Verdict::Derived)
                .count();
            emit(&format!(
                "{} models, {} pairs searched, {} audited, {} derived edges, {} families\n",
                g.nodes.len(),
                g.search.pairs_searched,
                g.audits,
                derived,
                g.families.len()
            ))?;
        }
        Command::Demo { keep, run_args } => {
            let opts = run_args.options(&bar, offline)?;
            let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
            let dir = keep.as_deref().unwrap_or(tmp.path());
            let recipe_path = weightkin_runner::demo::generate(dir)
                .with_context(|| format!("cannot write the demo models to {}", dir.display()))?;
            let (recipe, report) = weightkin_runner::audit_file(&recipe_path, &registry, &opts)?;
            emit(&text::demo_summary(&report))?;
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
