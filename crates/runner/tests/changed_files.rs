//! A model file that changes while an audit reads it voids the audit (issue 18): rewritten
//! in place, grown, replaced, or truncated under its memory map (SIGBUS, turned into an error
//! by `weightkin_core::guard`). A `Progress` hook changes the file after every model was
//! opened and before any tensor is read: no timing.
#![allow(clippy::unwrap_used, clippy::panic)]
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use weightkin_runner::{registry, Change, Error, Progress, RunOptions};

/// A [`Progress`] that does something to a file when the comparison starts: after every
/// model was opened and stamped, before any tensor is read.
struct Meddle<F: Fn(&Path) + Sync> {
    path: PathBuf,
    act: F,
}

impl<F: Fn(&Path) + Sync> Progress for Meddle<F> {
    fn start(&self, phase: &str, _total: u64, _unit: &str) {
        if phase.starts_with("comparing") {
            (self.act)(&self.path);
        }
    }
}

const RECIPE: &str = r#"
[audit]
name = "t"
[models.a]
path = "a.safetensors"
[models.b]
path = "b.safetensors"
[[compare]]
a = "a"
b = "b"
"#;

/// Runs the recipe over two fresh 0.5 MB models while `act` meddles with `b`.
fn audit(act: impl Fn(&Path) + Sync) -> Result<weightkin_runner::Report, Error> {
    use weightkin_core::testing::{uniform_f32, SafetensorsBuilder};
    let dir = tempfile::tempdir().unwrap();
    let model = |seed: u64| {
        (0..2).fold(SafetensorsBuilder::new(), |b, i| {
            let values = uniform_f32(256 * 256, seed + i, -1.0, 1.0);
            b.tensor_f32(&format!("layers.{i}.w"), &[256, 256], &values)
        })
    };
    model(1).write(&dir.path().join("a.safetensors")).unwrap();
    let path = dir.path().join("b.safetensors");
    model(1).write(&path).unwrap();
    // Old timestamps, so that any write moves them whatever the clock's granularity.
    let old = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let reg = registry::builtin().unwrap();
    let recipe = weightkin_runner::recipe::parse(&dir.path().join("r.toml"), RECIPE, &reg).unwrap();
    let meddle = Meddle { path, act };
    let opts = RunOptions {
        progress: &meddle,
        ..RunOptions::default()
    };
    weightkin_runner::run(&recipe, &reg, &opts)
}

fn change(r: Result<weightkin_runner::Report, Error>) -> Change {
    match r {
        Err(Error::Changed {
            model,
            path,
            change,
        }) => {
            assert_eq!(model, "b");
            assert!(path.ends_with("b.safetensors"), "{}", path.display());
            change
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("the audit passed over a changed file"),
    }
}

#[test]
fn an_untouched_file_passes() {
    assert!(audit(|_| {}).is_ok());
}

#[test]
fn a_file_rewritten_in_place_fails_the_audit() {
    let c = change(audit(|p| {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::options().write(true).open(p).unwrap();
        let len = f.metadata().unwrap().len();
        f.write_all_at(&[0x7f; 64], len - 64).unwrap();
    }));
    assert_eq!(c, Change::Modified);
}

#[test]
fn a_file_grown_or_replaced_fails_the_audit() {
    let c = change(audit(|p| {
        use std::io::Write;
        let mut f = std::fs::File::options().append(true).open(p).unwrap();
        f.write_all(b"more").unwrap();
    }));
    assert!(matches!(c, Change::Size { before, after } if after == before + 4));
    let c = change(audit(|p| {
        let other = p.with_extension("new");
        std::fs::copy(p, &other).unwrap();
        std::fs::rename(&other, p).unwrap();
    }));
    assert_eq!(c, Change::Replaced);
}

/// Truncated while mapped: reads past the new end fault, the guard turns them into
/// zeros, and the audit fails naming where.
#[test]
fn a_file_truncated_while_mapped_fails_the_audit_instead_of_crashing() {
    let c = change(audit(|p| {
        let f = std::fs::File::options().write(true).open(p).unwrap();
        f.set_len(100_000).unwrap();
    }));
    match c {
        Change::Fault { offset } => assert!(offset >= 100_000, "{offset}"),
        other => panic!("{other:?}"),
    }
}
