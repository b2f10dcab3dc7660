//! Files that change while an audit reads them void the audit (issue 18).
//!
//! A report over bytes of which some came from one version of a file and some from another is
//! worse than no report. So every local model file is stamped right after its model is opened
//! — device, inode, size, modification and status-change times — and stamped again when the
//! audit is done (after the last byte was read and hashed); any difference fails the audit
//! with [`Error::Changed`], naming the model, the file and what changed. The size the format
//! saw when it read the header is checked against the first stamp too, so a file truncated
//! between the format's open and the stamp is caught as well.
//!
//! A file that shrinks under a memory map makes reads past its new end fault (SIGBUS); those
//! faults are turned into zero-filled reads by [`weightkin_core::guard`] and recorded, so the
//! audit lives to reach this check, which names the first faulting offset.
//!
//! Files of a remote `hf://` model are skipped: they are sparse copies written by the fetch
//! itself, and identified by the hub's hashes of what was read ([`crate::report::HubReport`]).
//! Off Unix, only the size is compared. Tested in `tests/changed_files.rs` (through [`crate::run`],
//! which this module may not import).

use std::path::PathBuf;

use super::Models;
use crate::{Change, Error};

/// What identifies one version of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Id {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Id {
    #[cfg(unix)]
    fn of(path: &std::path::Path) -> Option<Id> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Some(Id {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        })
    }

    #[cfg(not(unix))]
    fn of(path: &std::path::Path) -> Option<Id> {
        let m = std::fs::metadata(path).ok()?;
        Some(Id {
            dev: 0,
            ino: 0,
            size: m.len(),
            mtime_ns: 0,
            ctime_ns: 0,
        })
    }

    /// How `self` (the first stamp) differs from `now`, the most telling change first.
    fn change_to(&self, now: &Id) -> Option<Change> {
        if (self.dev, self.ino) != (now.dev, now.ino) {
            Some(Change::Replaced)
        } else if self.size != now.size {
            Some(Change::Size {
                before: self.size,
                after: now.size,
            })
        } else if (self.mtime_ns, self.ctime_ns) != (now.mtime_ns, now.ctime_ns) {
            Some(Change::Modified)
        } else {
            None
        }
    }
}

/// One stamped file.
struct Stamp {
    model: String,
    path: PathBuf,
    id: Id,
}

/// The stamps of every local model file, taken when the models were opened.
pub struct Stamps(Vec<Stamp>);

impl Stamps {
    /// Stamps every local file of `models`; a file already changed since its format read the
    /// header fails here.
    pub fn take(models: &Models) -> Result<Stamps, Error> {
        let mut stamps = Vec::new();
        for (name, m) in &models.0 {
            if m.remote() {
                continue;
            }
            for f in m.source.files() {
                let changed = |change| Error::Changed {
                    model: name.clone(),
                    path: f.path.clone(),
                    change,
                };
                let id = Id::of(&f.path).ok_or_else(|| changed(Change::Gone))?;
                if id.size != f.size {
                    return Err(changed(Change::Size {
                        before: f.size,
                        after: id.size,
                    }));
                }
                stamps.push(Stamp {
                    model: name.clone(),
                    path: f.path.clone(),
                    id,
                });
            }
        }
        Ok(Stamps(stamps))
    }

    /// Stamps every file again: the first that changed (or whose mapping faulted) fails the
    /// audit.
    pub fn check(&self) -> Result<(), Error> {
        let faults = weightkin_core::guard::faults();
        for s in &self.0 {
            let changed = |change| Error::Changed {
                model: s.model.clone(),
                path: s.path.clone(),
                change,
            };
            let change = match Id::of(&s.path) {
                None => Some(Change::Gone),
                Some(now) => s.id.change_to(&now),
            };
            let fault = faults
                .iter()
                .find(|f| f.path == s.path)
                .map(|f| Change::Fault { offset: f.offset });
            // A fault names where the audit saw the change; a stamp says what changed.
            if let Some(change) = fault.or(change) {
                return Err(changed(change));
            }
        }
        Ok(())
    }
}
