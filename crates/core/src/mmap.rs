//! The one memory-mapping helper every format uses.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::{Error, Result};

/// A read-only memory-mapped file.
#[derive(Debug)]
pub struct MappedFile {
    path: PathBuf,
    map: Mmap,
}

impl MappedFile {
    /// Maps `path` read-only.
    pub fn open(path: &Path) -> Result<MappedFile> {
        let io = |action, source| Error::Io {
            path: path.to_owned(),
            action,
            source,
        };
        let file = File::open(path).map_err(|e| io("open", e))?;
        // SAFETY: the mapping is read-only and private to this process. If another process
        // truncates or rewrites the file while it is mapped, reads may see changed bytes or
        // fault (SIGBUS); that is the accepted caveat of every mmap-based model loader
        // (safetensors, candle, llama.cpp). Contents are still treated as untrusted bytes.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| io("map into memory", e))?;
        #[cfg(unix)]
        {
            // Audits read each tensor front to back; ask the kernel for aggressive read-ahead.
            // A failed hint changes nothing but speed, so its error is deliberately ignored.
            let _ = map.advise(memmap2::Advice::Sequential);
        }
        Ok(MappedFile {
            path: path.to_owned(),
            map,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
