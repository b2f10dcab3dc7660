//! Memory maps that survive their file shrinking (issue 18).
//!
//! Reading a mapped page that lies past the end of its file raises SIGBUS, and the default
//! action kills the process: a model file truncated while an audit reads it (a download still
//! in progress, a file replaced on a network disk) used to end `weightkin` with exit 135, no
//! message and no report. Every [`crate::MappedFile`] registers its range here, and a SIGBUS
//! handler installed on first use turns a fault inside a registered range into:
//!
//! 1. a zero-filled read: the faulting page and the rest of the range are replaced by
//!    anonymous zero pages (`mmap` with `MAP_FIXED`), and the faulting instruction, re-run on
//!    return, reads zeros;
//! 2. a record: the offset of the first fault in each range, read back by [`faults`].
//!
//! The bytes read are then wrong, so the caller must not trust anything read from a faulted
//! map: the runner checks [`faults`] (and every file's size, inode and times) when an audit is
//! done and fails it, naming the file and offset, instead of writing a report over mixed
//! bytes. A fault outside every registered range goes to the handler that was installed
//! before (Rust's stack-overflow handler, or the default action), exactly as without this
//! module.
//!
//! Why not `sigsetjmp`/`siglongjmp` around each read: unwinding out of a signal handler
//! across Rust frames is undefined behaviour, and a guarded read would need a jump buffer per
//! thread and per read. Why not `pread` instead of maps: the moment kernels decode straight
//! from the map and hand pages back as they go ([`crate::MappedFile::release`]); the handler
//! costs nothing until a fault happens.
//!
//! Async-signal safety: the handler touches only atomics in a fixed table and calls `mmap`
//! and `sigaction` (system calls; glibc's `mmap` wrapper takes no lock). Registration and
//! lookups outside the handler use the table's atomics, plus a mutex for paths that the
//! handler never reads. When all [`SLOTS`] are in use, further maps are not guarded (they
//! behave as before this module).

use std::path::PathBuf;

/// A fault in a registered map: the file it maps, and the offset of the first faulting read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The mapped file.
    pub path: PathBuf,
    /// Offset into the file of the first read that faulted.
    pub offset: u64,
}

/// Maps guarded at once; more than this many open maps are left unguarded.
pub const SLOTS: usize = 4096;

/// A registered range; unregistered when dropped (before its map is unmapped).
#[derive(Debug)]
pub struct Registration {
    #[cfg(target_os = "linux")]
    slot: Option<usize>,
}

#[cfg(target_os = "linux")]
pub use imp::{faults, register};

#[cfg(not(target_os = "linux"))]
mod imp_none {
    use super::{Fault, Registration};

    /// No guard off Linux: nothing is registered.
    pub fn register(_start: *const u8, _len: usize, _path: &std::path::Path) -> Registration {
        Registration {}
    }

    /// No guard off Linux: no fault is ever recorded.
    pub fn faults() -> Vec<Fault> {
        Vec::new()
    }
}
#[cfg(not(target_os = "linux"))]
pub use imp_none::{faults, register};

#[cfg(target_os = "linux")]
mod imp {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Mutex, Once};

    use super::{Fault, Registration, SLOTS};

    /// No fault recorded.
    const NONE: u64 = u64::MAX;

    struct Slot {
        /// Claimed by a registration.
        used: AtomicBool,
        /// Start address of the range; 0 while the slot is not live.
        start: AtomicUsize,
        /// Length of the range.
        len: AtomicUsize,
        /// Offset of the first fault, or [`NONE`].
        fault: AtomicU64,
    }

    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: Slot = Slot {
        used: AtomicBool::new(false),
        start: AtomicUsize::new(0),
        len: AtomicUsize::new(0),
        fault: AtomicU64::new(NONE),
    };

    static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];

    /// Paths by slot (never read by the handler).
    static PATHS: Mutex<BTreeMap<usize, PathBuf>> = Mutex::new(BTreeMap::new());

    /// The page size, read once at installation.
    static PAGE: AtomicUsize = AtomicUsize::new(4096);

    /// The action that was installed before ours (leaked: lives for the process).
    static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());

    static INSTALL: Once = Once::new();

    /// Guards `len` bytes mapped at `start` for the file at `path`.
    pub fn register(start: *const u8, len: usize, path: &Path) -> Registration {
        INSTALL.call_once(install);
        if len == 0 || PREVIOUS.load(Ordering::Acquire).is_null() {
            return Registration { slot: None };
        }
        let Some(i) = TABLE.iter().position(|s| {
            s.used
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        }) else {
            return Registration { slot: None };
        };
        if let Ok(mut paths) = PATHS.lock() {
            paths.insert(i, path.to_owned());
        }
        let slot = &TABLE[i];
        slot.fault.store(NONE, Ordering::Relaxed);
        slot.len.store(len, Ordering::Relaxed);
        slot.start.store(start as usize, Ordering::Release);
        Registration { slot: Some(i) }
    }

    impl Drop for Registration {
        fn drop(&mut self) {
            let Some(i) = self.slot else { return };
            let slot = &TABLE[i];
            slot.start.store(0, Ordering::Release);
            if let Ok(mut paths) = PATHS.lock() {
                paths.remove(&i);
            }
            slot.used.store(false, Ordering::Release);
        }
    }

    /// Every fault recorded in a map that is still registered.
    pub fn faults() -> Vec<Fault> {
        let Ok(paths) = PATHS.lock() else {
            return Vec::new();
        };
        TABLE
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let offset = s.fault.load(Ordering::Acquire);
                if offset == NONE || s.start.load(Ordering::Acquire) == 0 {
                    return None;
                }
                Some(Fault {
                    path: paths.get(&i)?.clone(),
                    offset,
                })
            })
            .collect()
    }

    /// Installs the handler, keeping the previous action to chain to. On failure nothing is
    /// guarded (`PREVIOUS` stays null).
    fn install() {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if let Ok(p) = usize::try_from(page) {
            if p.is_power_of_two() {
                PAGE.store(p, Ordering::Relaxed);
            }
        }
        // SAFETY: an all-zero `sigaction` is a valid value (no handler, empty mask, no
        // flags); every field that matters is set below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_sigbus as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: as above.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers point to live `sigaction` values; `on_sigbus` has the
        // three-argument signature `SA_SIGINFO` requires. `sa_mask` is emptied first.
        let rc = unsafe {
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGBUS, &action, &mut previous)
        };
        if rc == 0 {
            PREVIOUS.store(Box::into_raw(Box::new(previous)), Ordering::Release);
        }
    }

    /// The SIGBUS handler (see the module docs).
    extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: with SA_SIGINFO the kernel passes a valid `siginfo_t`; for SIGBUS,
        // `si_addr` is the faulting address.
        let addr = unsafe { (*info).si_addr() } as usize;
        let page = PAGE.load(Ordering::Relaxed);
        for slot in &TABLE {
            let start = slot.start.load(Ordering::Acquire);
            if start == 0 {
                continue;
            }
            let len = slot.len.load(Ordering::Relaxed);
            if addr < start || addr - start >= len {
                continue;
            }
            let from = addr & !(page - 1);
            let end = (start + len).div_ceil(page) * page;
            // SAFETY: [from, end) lies within the registered map (its pages, rounded to
            // whole pages as the kernel maps them), which is live while registered; replacing
            // it with private anonymous pages keeps every reference into it valid (reads see
            // zeros) and its owner's munmap still unmaps it.
            let p = unsafe {
                libc::mmap(
                    from as *mut libc::c_void,
                    end - from,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                slot.fault
                    .fetch_min((addr - start) as u64, Ordering::AcqRel);
                return;
            }
        }
        chain(sig, info, ctx);
    }

    /// Hands a fault that is not ours to the previous action.
    fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        let previous = PREVIOUS.load(Ordering::Acquire);
        // SAFETY: `PREVIOUS` is set (before any map is registered, so before this handler can
        // see a registered fault) to a leaked, never-freed `sigaction`.
        let Some(previous) = (unsafe { previous.as_ref() }) else {
            return;
        };
        let handler = previous.sa_sigaction;
        if handler != libc::SIG_DFL
            && handler != libc::SIG_IGN
            && previous.sa_flags & libc::SA_SIGINFO != 0
        {
            // SAFETY: a handler installed with SA_SIGINFO has this signature.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(handler) };
            f(sig, info, ctx);
            return;
        }
        if handler != libc::SIG_DFL && handler != libc::SIG_IGN {
            // SAFETY: a handler installed without SA_SIGINFO has this signature.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
            f(sig);
            return;
        }
        // Default (or ignored, which for a fault would loop): restore the default action;
        // the faulting instruction re-runs on return and the process ends as it would have.
        // SAFETY: an all-zero `sigaction` with `SIG_DFL` is valid; sigaction is
        // async-signal-safe.
        unsafe {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use crate::MappedFile;

    #[test]
    fn a_read_past_a_truncated_end_reads_zeros_and_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        let map = MappedFile::open(&path).unwrap();
        assert!(super::faults().iter().all(|f| f.path != path));
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(10_000)
            .unwrap();
        let bytes = map.bytes();
        // Before the new end: the file's bytes (the page holding the end is still mapped).
        assert_eq!(bytes[9_999], 7);
        // Past it: a fault, turned into zeros (without the guard, SIGBUS ends the process).
        let far = std::hint::black_box(700_000);
        assert_eq!(bytes[far], 0);
        assert_eq!(bytes[(1 << 20) - 1], 0);
        let faults: Vec<_> = super::faults()
            .into_iter()
            .filter(|f| f.path == path)
            .collect();
        assert_eq!(faults.len(), 1, "{faults:?}");
        assert_eq!(faults[0].offset, 700_000);
        drop(map);
        assert!(super::faults().iter().all(|f| f.path != path));
    }
}
