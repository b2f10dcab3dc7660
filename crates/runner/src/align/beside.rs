//! Files beside the weights: a tokenizer (`tokenizer.json`, `vocab.txt`) or a model
//! configuration (`config.json`) in the directory of a model's first file, as Hugging Face
//! repositories lay them out. They are untrusted input like the weights: read with a size cap
//! ([`MAX_FILE_BYTES`]), and every way they can be wrong is a [`FileProblem`] naming what was
//! expected, reported with the file's path ([`crate::Error::ModelFile`]).

use std::path::{Path, PathBuf};

use weightkin_core::WeightSource;

pub use crate::error::FileProblem;
use crate::Error;

/// Largest file beside the weights that is read: 64 MiB. The largest published
/// `tokenizer.json` files (262 k-token vocabularies with their merges, e.g. Gemma 3's) are
/// about 33 MiB; a `config.json` is kilobytes.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// The directory of `source`'s first file, where a tokenizer or configuration would lie, and
/// that file's name (for the report: "`config.json` beside model.safetensors"). `None` for a
/// source with no files.
pub fn first_file(source: &dyn WeightSource) -> Option<(PathBuf, String)> {
    let first = &source.files().first()?.path;
    let dir = first.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = first
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Some((dir, name))
}

/// The error for a problem with the file at `path`.
pub fn error(path: &Path, problem: FileProblem) -> Error {
    Error::ModelFile {
        path: path.to_owned(),
        problem,
    }
}

/// Reads the text of `path`, at most [`MAX_FILE_BYTES`]; `Ok(None)` when there is no such
/// file.
pub fn read_text(path: &Path) -> Result<Option<String>, Error> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(error(path, FileProblem::Read(e))),
    };
    let size = file
        .metadata()
        .map_err(|e| error(path, FileProblem::Read(e)))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(error(
            path,
            FileProblem::TooLarge {
                size,
                limit: MAX_FILE_BYTES,
            },
        ));
    }
    // Read at most one byte past the cap, in case the file grew after the size was taken.
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| error(path, FileProblem::Read(e)))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(error(
            path,
            FileProblem::TooLarge {
                size: bytes.len() as u64,
                limit: MAX_FILE_BYTES,
            },
        ));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| error(path, FileProblem::NotUtf8))
}
