//! The progress bar: the CLI's [`Progress`] sink, drawn with `indicatif` on stderr.
//!
//! The runner only reports events (phase start, units done, phase end); how they look is the
//! front end's business, so the bar lives here and not in `weightkin-runner`.

use indicatif::{ProgressBar, ProgressStyle};
use weightkin_runner::Progress;

/// A progress bar on stderr ([`crate::args::RunArgs::options`] hands it to the runner only
/// when stderr is a terminal). One bar per phase; the mutex is taken once per tensor pair,
/// which is nothing next to streaming the pair.
#[derive(Default)]
pub struct Bar(std::sync::Mutex<Option<ProgressBar>>);

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
