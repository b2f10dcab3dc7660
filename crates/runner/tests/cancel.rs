//! Cancellation (the Python package's Ctrl-C): a [`Progress`] that says stop makes the run
//! return [`Error::Cancelled`] at its next checkpoint, having measured no further pair, and a
//! sink that never says stop changes nothing. Counted in work units, not timed.
#![allow(clippy::unwrap_used, clippy::panic)]
use std::sync::atomic::{AtomicU64, Ordering};

use weightkin_runner::{registry, Error, Progress, Report, RunOptions};

/// Says stop once `after` tensor pairs of the comparison were measured; counts every pair
/// measured.
struct StopAfter {
    after: u64,
    pairs: AtomicU64,
    comparing: std::sync::atomic::AtomicBool,
}

impl Progress for StopAfter {
    fn start(&self, phase: &str, _total: u64, _unit: &str) {
        self.comparing
            .store(phase.starts_with("comparing"), Ordering::Relaxed);
    }
    fn advance(&self, _n: u64) {
        if self.comparing.load(Ordering::Relaxed) {
            self.pairs.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn cancelled(&self) -> bool {
        self.pairs.load(Ordering::Relaxed) >= self.after
    }
}

const LAYERS: usize = 12;

/// Audits two identical 12-layer models on one thread, stopping after `after` pairs.
fn audit(after: u64) -> (Result<Report, Error>, u64) {
    let stop = StopAfter {
        after,
        pairs: AtomicU64::new(0),
        comparing: Default::default(),
    };
    let result = audit_with(&stop);
    (result, stop.pairs.load(Ordering::Relaxed))
}

/// Audits two identical 12-layer models on one thread with `progress`.
fn audit_with(progress: &dyn Progress) -> Result<Report, Error> {
    use weightkin_core::testing::{uniform_f32, SafetensorsBuilder};
    let dir = tempfile::tempdir().unwrap();
    let model = (0..LAYERS).fold(SafetensorsBuilder::new(), |b, i| {
        let values = uniform_f32(64 * 64, i as u64, -1.0, 1.0);
        b.tensor_f32(
            &format!("model.layers.{i}.mlp.up_proj.weight"),
            &[64, 64],
            &values,
        )
    });
    model.write(&dir.path().join("a.safetensors")).unwrap();
    model.write(&dir.path().join("b.safetensors")).unwrap();
    let reg = registry::builtin().unwrap();
    let source = weightkin_runner::adhoc_recipe("a.safetensors", "b.safetensors", &[], &[], &[]);
    let recipe =
        weightkin_runner::recipe::parse(&dir.path().join("r.toml"), &source, &reg).unwrap();
    let opts = RunOptions {
        progress,
        ..RunOptions::default()
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| weightkin_runner::run(&recipe, &reg, &opts))
}

#[test]
fn a_stop_ends_the_run_at_the_next_pair() {
    let (result, measured) = audit(3);
    assert!(
        matches!(result, Err(Error::Cancelled)),
        "{:?}",
        result.err()
    );
    // One thread: the pair that said stop was the last one measured.
    assert_eq!(measured, 3);
    let (result, _) = audit(0);
    assert!(matches!(result, Err(Error::Cancelled)));
    assert_eq!(
        Error::Cancelled.to_string(),
        "the audit was cancelled",
        "the message front ends show"
    );
}

#[test]
fn a_sink_that_never_stops_changes_nothing() {
    let (result, measured) = audit(u64::MAX);
    let report = result.unwrap();
    assert_eq!(measured, LAYERS as u64);
    let plain = audit_with(&weightkin_runner::NoProgress).unwrap();
    assert_eq!(report.to_json(), plain.to_json());
}
