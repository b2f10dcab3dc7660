//! Writing a report's files into an output directory: whole sets, readable under the umask.
//!
//! Two guarantees (issue 18):
//!
//! - **Modes follow the umask.** Each file is created as `0666 & !umask`, like any file a
//!   program creates, so a CI job that publishes reports or a colleague on a shared machine can
//!   read them. (`tempfile`'s default, 0600, used to survive the rename into place.)
//! - **A set is never mixed.** Two audits writing into the same directory at once leave the
//!   complete set of one of them, never `report.json` of one beside `report.md` of the other,
//!   and never a partial file. Each file is rendered and written to a temporary name in the
//!   directory first (outside any lock: the slow part runs concurrently); then, holding an
//!   exclusive `flock(2)` on `DIR/.weightkin-report.lock`, every temporary file is renamed over
//!   its final name and report files of formats this run does not write are removed (a
//!   `report.html` left by an earlier run beside a new `report.json` would be a mixed set
//!   too). Each rename is atomic, and the lock makes the renames of one run one step for any
//!   other writer.
//!
//! Why a lock and not a directory swap: `rename(2)` cannot replace a non-empty directory, and
//! the output directory may hold other files (`weightkin demo --keep DIR` writes its models
//! and recipe there), so the set is published file by file under a lock. Why `flock` and not a
//! lock file created with `O_EXCL`: the kernel releases a `flock` when its holder exits,
//! however it exits, so a killed audit never leaves a stale lock behind. The lock file stays
//! (removing it would race with a writer that has just opened it); it is empty.
//!
//! The lock is advisory: it orders weightkin's writers, and a reader that lists the directory
//! while a set is being renamed into place may see the old and new files side by side for
//! that moment. Once every writer is done, the directory holds one run's set.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{Report, ReportFormat, WriteError};

/// Name of the lock file in the output directory.
pub const LOCK_FILE: &str = ".weightkin-report.lock";

/// Environment variable naming a directory, for tests only: with it set, a writer that has
/// renamed its first file into place (holding the lock) creates `DIR/paused` and waits until
/// `DIR/resume` exists. It lets a test hold one writer in the middle of publishing while
/// another starts, without timing.
pub const PAUSE_ENV: &str = "WEIGHTKIN_TEST_PUBLISH_PAUSE";

/// Mode asked for when creating a file; the process umask clears bits from it.
#[cfg(unix)]
const CREATE_MODE: u32 = 0o666;

impl Report {
    /// Writes each format into `dir` (created if missing) as one set: see the module
    /// documentation ([`publish`](self)) for what that guarantees. Returns the paths written,
    /// in `formats` order.
    pub fn write(&self, dir: &Path, formats: &[ReportFormat]) -> Result<Vec<PathBuf>, WriteError> {
        std::fs::create_dir_all(dir).map_err(err(dir))?;
        let mut staged = Vec::with_capacity(formats.len());
        for &f in formats {
            let path = dir.join(f.file_name());
            let mut tmp = builder()
                .prefix(".report-")
                .tempfile_in(dir)
                .map_err(err(&path))?;
            std::io::Write::write_all(&mut tmp, f.render(self).as_bytes()).map_err(err(&path))?;
            tmp.as_file().sync_all().map_err(err(&path))?;
            staged.push((tmp, path));
        }
        let lock_path = dir.join(LOCK_FILE);
        let _lock = Lock::acquire(&lock_path).map_err(err(&lock_path))?;
        let mut written = Vec::with_capacity(staged.len());
        for (tmp, path) in staged {
            tmp.persist(&path).map_err(|e| err(&path)(e.error))?;
            if written.is_empty() {
                test_pause();
            }
            written.push(path);
        }
        for f in ReportFormat::ALL.iter().filter(|f| !formats.contains(f)) {
            let stale = dir.join(f.file_name());
            match std::fs::remove_file(&stale) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(err(&stale)(e));
                }
                _ => {}
            }
        }
        Ok(written)
    }
}

/// The error for `path`.
fn err(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError {
    let path = path.to_owned();
    move |source| WriteError { path, source }
}

/// A temporary-file builder whose files get `0666 & !umask`.
fn builder() -> tempfile::Builder<'static, 'static> {
    let mut b = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Passed to open(2) as its mode: the kernel applies the umask.
        b.permissions(std::fs::Permissions::from_mode(CREATE_MODE));
    }
    b
}

/// An exclusive `flock` on the output directory's lock file, released when dropped (or when
/// the process ends).
struct Lock {
    _file: File,
}

impl Lock {
    /// Opens (creating if missing) and locks `path`, waiting for another writer to finish.
    fn acquire(path: &Path) -> std::io::Result<Lock> {
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, CREATE_MODE);
        let file = opts.open(path)?;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            loop {
                // SAFETY: `file` is open for the whole call, so the descriptor is valid;
                // flock takes no pointers.
                let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
                if rc == 0 {
                    break;
                }
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
        Ok(Lock { _file: file })
    }
}

/// The [`PAUSE_ENV`] hook: nothing unless the variable is set.
fn test_pause() {
    let Some(dir) = std::env::var_os(PAUSE_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    if std::fs::write(dir.join("paused"), b"").is_err() {
        return;
    }
    while !dir.join("resume").exists() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// The process umask, read without changing it (Linux: `/proc/self/status`).
    fn umask() -> Option<u32> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("Umask:"))?;
        u32::from_str_radix(line.trim_start_matches("Umask:").trim(), 8).ok()
    }

    #[test]
    fn files_get_the_mode_the_umask_gives_and_stale_formats_go() {
        let dir = tempfile::tempdir().unwrap();
        let report = Report {
            schema_version: crate::report::SCHEMA_VERSION,
            tool: crate::report::Tool {
                name: "weightkin",
                version: "0",
            },
            audit: crate::report::AuditInfo {
                name: "t".to_owned(),
                description: None,
                recipe_blake3: String::new(),
                recipe: String::new(),
            },
            models: Vec::new(),
            comparisons: Vec::new(),
        };
        std::fs::write(dir.path().join("report.html"), "old").unwrap();
        let written = report
            .write(dir.path(), &[ReportFormat::Json, ReportFormat::Markdown])
            .unwrap();
        assert_eq!(written.len(), 2);
        let expected = CREATE_MODE & !umask().unwrap();
        for p in &written {
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, expected, "{}", p.display());
            // Never the temporary file's 0600 (unless the umask asks for exactly that).
            assert!(expected == 0o600 || mode != 0o600);
        }
        assert!(!dir.path().join("report.html").exists());
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".report-"))
            .collect();
        assert!(names.is_empty(), "temporary files left: {names:?}");
    }
}
