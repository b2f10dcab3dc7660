//! The safetensors format: the reference format every other loader is checked against.
//!
//! A safetensors file is an 8-byte little-endian header length `N`, `N` bytes of JSON mapping
//! tensor names to `{dtype, shape, data_offsets}` (plus an optional `__metadata__` map of
//! strings), then the data section, which the tensors must cover exactly
//! (<https://github.com/huggingface/safetensors#format>).
//!
//! A model may be one file, or a directory of shards: with an index
//! (`model.safetensors.index.json`, or any single `*.safetensors.index.json`, whose
//! `weight_map` names each tensor's shard), or without one (every `*.safetensors` file in the
//! directory, in file-name order). An index file may also be opened directly.
//!
//! # Validation
//!
//! Files are untrusted. Opening one checks, in this order, so that every failure is a
//! structured [`Error`] naming the file and tensor:
//!
//! 1. the length prefix, against [`Limits::max_header_bytes`] and the file size, before any
//!    byte of the header is touched (nothing is ever allocated from it: the header is a slice
//!    of the memory map);
//! 2. the JSON (UTF-8, syntax, field types, one `__metadata__`, no name twice), collecting at
//!    most [`Limits::max_tensors`] entries;
//! 3. each tensor, in name order: dtype, rank ([`Limits::max_rank`]), checked element count
//!    and byte length, offsets not reversed, inside the data section, and matching shape ×
//!    dtype;
//! 4. the layout: no two tensors overlap and no byte of the data section is left uncovered;
//! 5. finally the `safetensors` crate's own `SafeTensors::read_metadata`, so that we never
//!    accept a file the reference implementation refuses. What it still rejects after our
//!    checks — packed F4/F6 tensors whose bit length is not a whole number of bytes, a header
//!    above its fixed 100 MB cap when [`Limits`] allows more, or a zero-sized tensor placed
//!    inside another tensor's bytes — becomes [`HeaderProblem::Rejected`].
//!
//! In a sharded model, tensor names must be unique across shards ([`Error::DuplicateTensor`]),
//! every tensor the index lists must be in the shard it names
//! ([`HeaderProblem::MissingFromShard`]), and shard names must be plain file names in the
//! model directory ([`HeaderProblem::BadShard`]). Tensors a listed shard holds but the index
//! omits are still included: their bytes are there and validated, and leaving them out would
//! hide evidence. Shard files in the directory that the index does not name are not part of
//! the model (they are typically another variant, e.g. an fp16 copy) and are not opened.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::table::sort_unique;
use crate::{
    convert, Dtype, Error, FileInfo, Format, HeaderProblem, Limits, Located, MappedFile, Result,
    TensorInfo, TensorProblem, TensorTable, WeightSource,
};

/// The format's name, as used in recipes and reports.
pub const NAME: &str = "safetensors";

/// The safetensors [`Format`]. Register [`FORMAT`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SafetensorsFormat;

/// The one instance to register.
pub static FORMAT: SafetensorsFormat = SafetensorsFormat;

/// Bytes of the little-endian header-length prefix.
const PREFIX: u64 = 8;
/// Extension of a safetensors file.
const FILE_SUFFIX: &str = ".safetensors";
/// Ending of a shard index file.
const INDEX_SUFFIX: &str = ".safetensors.index.json";
/// The index `transformers` writes and prefers (`SAFE_WEIGHTS_INDEX_NAME` in
/// `transformers/utils/__init__.py`).
const DEFAULT_INDEX: &str = "model.safetensors.index.json";
/// The key of the free-form string map in a header.
const METADATA_KEY: &str = "__metadata__";

impl Format for SafetensorsFormat {
    fn name(&self) -> &'static str {
        NAME
    }

    fn doc(&self) -> &'static str {
        "Hugging Face safetensors: a .safetensors file, a shard index, or a directory of shards"
    }

    fn sniff(&self, path: &Path, head: &[u8]) -> bool {
        if head.is_empty() && path.is_dir() {
            return std::fs::read_dir(path).is_ok_and(|entries| {
                entries.flatten().any(|e| {
                    let name = e.file_name();
                    ends_with(&name, FILE_SUFFIX) || ends_with(&name, INDEX_SUFFIX)
                })
            });
        }
        if path.file_name().is_some_and(|n| ends_with(n, INDEX_SUFFIX)) {
            return true;
        }
        match (head.get(..8), head.get(8)) {
            (Some(prefix), Some(&b'{')) => le_u64(prefix) >= 2,
            _ => false,
        }
    }

    fn open(&self, path: &Path, limits: &Limits) -> Result<Box<dyn WeightSource>> {
        let meta = std::fs::metadata(path).map_err(|e| io(path, "read metadata", e))?;
        let source = if meta.is_dir() {
            open_dir(path, limits)?
        } else if path.file_name().is_some_and(|n| ends_with(n, INDEX_SUFFIX)) {
            let dir = path.parent().unwrap_or(Path::new("."));
            open_index(dir, path, limits)?
        } else {
            assemble(path, vec![open_file(path, limits)?], limits)?
        };
        Ok(Box::new(source))
    }
}

/// An opened safetensors model: one file or several shards.
#[derive(Debug)]
struct Source {
    /// Files sorted by path, tensors sorted by name, and the `__metadata__` of all files (the
    /// first file's value wins on a conflicting key).
    table: TensorTable,
    /// The files' memory maps, parallel to the table's files.
    maps: Vec<MappedFile>,
    /// Each tensor's validated byte range within its file's map, parallel to the table's
    /// tensors.
    ranges: Vec<Range<usize>>,
}

impl WeightSource for Source {
    fn table(&self) -> &TensorTable {
        &self.table
    }

    fn read_f32(&self, index: usize, start: usize, out: &mut [f32]) -> Result<()> {
        let len = out.len();
        let info = self.table.checked_read(index, start, len)?;
        let out_of_range = || info.out_of_range(start, len);
        // `ranges` parallels the tensors, and the range was validated against the map at open
        // time, so these lookups succeed; they are checked anyway so that no path can panic.
        let data = self
            .ranges
            .get(index)
            .and_then(|range| Some((self.maps.get(info.file)?, range)))
            .and_then(|(m, range)| m.bytes().get(range.clone()))
            .ok_or_else(out_of_range)?;
        convert::to_f32(info.dtype, data, start, out).ok_or_else(out_of_range)?;
        crate::release_if_last(self, index, start, len);
        Ok(())
    }

    fn stored_range(&self, index: usize) -> Option<crate::StoredRange> {
        let (info, range) = (self.tensors().get(index)?, self.ranges.get(index)?);
        Some(crate::StoredRange {
            file: info.file,
            start: range.start as u64,
            end: range.end as u64,
        })
    }

    fn raw(&self, index: usize) -> Option<crate::RawTensor<'_>> {
        let (info, range) = (self.tensors().get(index)?, self.ranges.get(index)?);
        let file = self.maps.get(info.file)?;
        Some(crate::RawTensor {
            dtype: info.dtype,
            bytes: file.bytes().get(range.clone())?,
            file,
        })
    }
}

/// One opened, fully validated file.
#[derive(Debug)]
struct Shard {
    map: MappedFile,
    metadata: BTreeMap<String, String>,
    /// Tensors (their `file` field is set by [`assemble`]), with their absolute byte ranges
    /// in `map`.
    tensors: Vec<Located<Range<usize>>>,
}

fn io(path: &Path, action: &'static str, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

fn header(path: &Path, problem: HeaderProblem) -> Error {
    Error::header(path, NAME, problem)
}

fn tensor(path: &Path, name: &str, problem: TensorProblem) -> Error {
    Error::tensor(path, name, problem)
}

fn bad_json(path: &Path, document: &'static str, source: serde_json::Error) -> Error {
    header(path, HeaderProblem::Json { document, source })
}

fn le_u64(bytes: &[u8]) -> u64 {
    let mut prefix = [0; 8];
    for (p, b) in prefix.iter_mut().zip(bytes) {
        *p = *b;
    }
    u64::from_le_bytes(prefix)
}

fn ends_with(name: &OsStr, suffix: &str) -> bool {
    name.as_encoded_bytes().ends_with(suffix.as_bytes())
}

/// A header entry as written, before validation.
#[derive(Deserialize)]
struct RawTensor {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

/// A parsed header: entries in file order, with how many there were in all (entries past
/// `max_tensors` are counted but not kept).
#[derive(Default)]
struct RawHeader {
    metadata: Option<BTreeMap<String, String>>,
    tensors: Vec<(String, RawTensor)>,
    count: u64,
}

/// Deserialises a header keeping at most `max_tensors` entries, so that memory stays
/// proportional to what [`Limits`] allows. Unlike a map type it keeps duplicate keys, which
/// serde maps would silently collapse.
struct HeaderSeed {
    max_tensors: u64,
}

impl<'de> DeserializeSeed<'de> for HeaderSeed {
    type Value = RawHeader;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<RawHeader, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeaderSeed {
    type Value = RawHeader;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of tensor entries")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeader, A::Error> {
        let mut raw = RawHeader::default();
        let mut seen_metadata = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == METADATA_KEY {
                if seen_metadata {
                    return Err(de::Error::custom("`__metadata__` appears twice"));
                }
                seen_metadata = true;
                // `null` is accepted, as the safetensors crate (an `Option` field) does.
                raw.metadata = map.next_value()?;
                continue;
            }
            raw.count = raw.count.saturating_add(1);
            if raw.count > self.max_tensors {
                map.next_value::<IgnoredAny>()?;
            } else {
                let entry: RawTensor = map.next_value()?;
                raw.tensors.push((key, entry));
            }
        }
        Ok(raw)
    }
}

/// Maps and validates one safetensors file (see the module documentation for the order of
/// checks).
fn open_file(path: &Path, limits: &Limits) -> Result<Shard> {
    let map = MappedFile::open(path)?;
    let bytes = map.bytes();
    let file_len = map.len();

    // 1. The length prefix, checked against the limit and the file before anything else.
    let Some(prefix) = bytes.get(..8) else {
        return Err(header(
            path,
            HeaderProblem::Truncated {
                needed: PREFIX,
                actual: file_len,
            },
        ));
    };
    let declared = le_u64(prefix);
    if declared > limits.max_header_bytes {
        return Err(header(
            path,
            HeaderProblem::TooLarge {
                declared,
                limit: limits.max_header_bytes,
            },
        ));
    }
    let needed = PREFIX.saturating_add(declared);
    let truncated = || {
        header(
            path,
            HeaderProblem::Truncated {
                needed,
                actual: file_len,
            },
        )
    };
    let header_end = usize::try_from(needed).map_err(|_| truncated())?;
    let json = bytes.get(8..header_end).ok_or_else(truncated)?;
    let data = bytes.get(header_end..).unwrap_or_default();
    let data_len = data.len() as u64;

    // 2. The JSON.
    let text = std::str::from_utf8(json).map_err(|e| header(path, HeaderProblem::NotUtf8(e)))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let raw = HeaderSeed {
        max_tensors: limits.max_tensors,
    }
    .deserialize(&mut de)
    .and_then(|raw| de.end().map(|()| raw))
    .map_err(|source| bad_json(path, "header", source))?;
    if raw.count > limits.max_tensors {
        return Err(header(
            path,
            HeaderProblem::TooManyTensors {
                count: raw.count,
                limit: limits.max_tensors,
            },
        ));
    }
    let mut entries = raw.tensors;
    // Refused before any entry is validated, so that a duplicate is reported as such.
    sort_unique(&mut entries, |(name, _)| name, |_| path.to_owned())?;

    // 3. Each tensor, in name order so that the error reported is deterministic.
    let mut tensors = Vec::with_capacity(entries.len());
    let mut offsets = Vec::with_capacity(entries.len());
    for (name, raw) in entries {
        let fail = |problem| tensor(path, &name, problem);
        let dtype = Dtype::parse(&raw.dtype)
            .ok_or_else(|| fail(TensorProblem::UnknownDtype(raw.dtype.clone())))?;
        if raw.shape.len() > limits.max_rank {
            return Err(fail(TensorProblem::RankTooLarge {
                rank: raw.shape.len(),
                limit: limits.max_rank,
            }));
        }
        let info = TensorInfo::new(name.clone(), raw.shape, dtype).map_err(fail)?;
        let byte_len = info.byte_len;
        let (start, end) = raw.data_offsets;
        if start > end {
            return Err(fail(TensorProblem::ReversedOffsets { start, end }));
        }
        if end > data_len {
            return Err(fail(TensorProblem::PastEnd {
                end,
                available: data_len,
            }));
        }
        if end - start != byte_len {
            return Err(fail(TensorProblem::SizeMismatch {
                shape: info.shape,
                dtype,
                expected: byte_len,
                actual: end - start,
            }));
        }
        offsets.push((start, end, tensors.len()));
        tensors.push(info);
    }

    // 4. The layout: sorted by offset, non-empty ranges must tile the data section exactly.
    offsets.sort_unstable();
    let mut covered = 0u64;
    let mut last: Option<usize> = None;
    for &(start, end, i) in offsets.iter().filter(|(s, e, _)| s < e) {
        if start < covered {
            let name = |i: usize| tensors.get(i).map(|t| t.name.clone()).unwrap_or_default();
            return Err(tensor(
                path,
                &name(i),
                TensorProblem::Overlap {
                    start,
                    end,
                    other: last.map(name).unwrap_or_default(),
                },
            ));
        }
        if start > covered {
            return Err(header(
                path,
                HeaderProblem::Gap {
                    start: covered,
                    end: start,
                },
            ));
        }
        covered = end;
        last = Some(i);
    }
    if covered < data_len {
        return Err(header(
            path,
            HeaderProblem::Gap {
                start: covered,
                end: data_len,
            },
        ));
    }

    // 5. The reference implementation must agree.
    safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| header(path, HeaderProblem::Rejected(e)))?;

    let mut ranges = vec![0..0; tensors.len()];
    for (start, end, i) in offsets {
        // Both offsets are at most `data_len`, so these conversions and additions fit the map.
        let abs = |o: u64| {
            usize::try_from(o)
                .ok()
                .and_then(|o| o.checked_add(header_end))
        };
        if let (Some(r), Some(s), Some(e)) = (ranges.get_mut(i), abs(start), abs(end)) {
            *r = s..e;
        }
    }
    Ok(Shard {
        metadata: raw.metadata.unwrap_or_default(),
        tensors: tensors
            .into_iter()
            .zip(ranges)
            .map(|(info, at)| Located { info, at })
            .collect(),
        map,
    })
}

/// Opens a directory: through its index if it has one, else every `*.safetensors` file.
fn open_dir(dir: &Path, limits: &Limits) -> Result<Source> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, "list", e))? {
        names.push(entry.map_err(|e| io(dir, "list", e))?.file_name());
    }
    names.sort();

    let indexes: Vec<_> = names
        .iter()
        .filter(|n| ends_with(n, INDEX_SUFFIX))
        .collect();
    let index = if names.iter().any(|n| n == DEFAULT_INDEX) {
        Some(OsStr::new(DEFAULT_INDEX))
    } else {
        match indexes.as_slice() {
            [] => None,
            [one] => Some(one.as_os_str()),
            several => {
                let list = several.iter().map(|n| n.to_string_lossy().into_owned());
                return Err(header(dir, HeaderProblem::AmbiguousIndex(list.collect())));
            }
        }
    };
    if let Some(index) = index {
        return open_index(dir, &dir.join(index), limits);
    }

    let files: Vec<PathBuf> = names
        .iter()
        .filter(|n| ends_with(n, FILE_SUFFIX))
        .map(|n| dir.join(n))
        .filter(|p| p.is_file())
        .collect();
    if files.is_empty() {
        return Err(header(dir, HeaderProblem::EmptyDirectory(NAME)));
    }
    check_file_count(dir, files.len(), limits)?;
    let shards = files
        .iter()
        .map(|p| open_file(p, limits))
        .collect::<Result<Vec<_>>>()?;
    assemble(dir, shards, limits)
}

fn check_file_count(path: &Path, count: usize, limits: &Limits) -> Result<()> {
    let count = count as u64;
    if count > limits.max_files {
        return Err(header(
            path,
            HeaderProblem::TooManyFiles {
                count,
                limit: limits.max_files,
            },
        ));
    }
    Ok(())
}

/// The part of an index we use; `metadata` (e.g. `total_size`) and other keys are ignored.
#[derive(Deserialize)]
struct RawIndex {
    weight_map: BTreeMap<String, String>,
}

/// Whether `shard` names a file directly inside the model directory.
fn is_plain_file_name(shard: &str) -> bool {
    !shard.contains(['/', '\\', '\0'])
        && matches!(
            Path::new(shard).components().collect::<Vec<_>>().as_slice(),
            [Component::Normal(_)]
        )
}

/// Opens the shards that the index at `index` (in `dir`) names.
fn open_index(dir: &Path, index: &Path, limits: &Limits) -> Result<Source> {
    let size = std::fs::metadata(index)
        .map_err(|e| io(index, "read metadata", e))?
        .len();
    let too_large = |declared| {
        header(
            index,
            HeaderProblem::TooLarge {
                declared,
                limit: limits.max_index_bytes,
            },
        )
    };
    if size > limits.max_index_bytes {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    File::open(index)
        .map_err(|e| io(index, "open", e))?
        // The file may grow between the size check and the read.
        .take(limits.max_index_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| io(index, "read", e))?;
    if bytes.len() as u64 > limits.max_index_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    let raw: RawIndex =
        serde_json::from_slice(&bytes).map_err(|source| bad_json(index, "index", source))?;

    // Shard names first (in tensor order, so the error is deterministic), then the count.
    let mut shards: BTreeMap<&str, &str> = BTreeMap::new(); // shard -> first tensor naming it
    for (tensor, shard) in &raw.weight_map {
        if !is_plain_file_name(shard) {
            return Err(header(
                index,
                HeaderProblem::BadShard {
                    shard: shard.clone(),
                    tensor: tensor.clone(),
                    reason: "is not a plain file name inside the model directory",
                },
            ));
        }
        shards.entry(shard).or_insert(tensor);
    }
    if shards.is_empty() {
        return Err(header(index, HeaderProblem::EmptyDirectory(NAME)));
    }
    check_file_count(index, shards.len(), limits)?;
    let mut opened = Vec::with_capacity(shards.len());
    for (&shard, &tensor) in &shards {
        let path = dir.join(shard);
        if !path.is_file() {
            return Err(header(
                index,
                HeaderProblem::BadShard {
                    shard: shard.to_owned(),
                    tensor: tensor.to_owned(),
                    reason: "is not a file in the model directory",
                },
            ));
        }
        opened.push(open_file(&path, limits)?);
    }
    let source = assemble(dir, opened, limits)?;

    for (tensor, shard) in &raw.weight_map {
        let path = dir.join(shard);
        let found = source
            .find(tensor)
            .and_then(|i| source.tensors().get(i))
            .and_then(|t| source.files().get(t.file));
        if found.is_none_or(|f| f.path != path) {
            return Err(header(
                index,
                HeaderProblem::MissingFromShard {
                    tensor: tensor.clone(),
                    shard: shard.clone(),
                },
            ));
        }
    }
    Ok(source)
}

/// Joins validated shards into one source: files sorted by path, tensor names unique across
/// files, tensors sorted by name. `model` is the path the user opened.
fn assemble(model: &Path, mut shards: Vec<Shard>, limits: &Limits) -> Result<Source> {
    shards.sort_by(|a, b| a.map.path().cmp(b.map.path()));
    let total = shards.iter().map(|s| s.tensors.len() as u64).sum::<u64>();
    if total > limits.max_tensors {
        return Err(header(
            model,
            HeaderProblem::TooManyTensors {
                count: total,
                limit: limits.max_tensors,
            },
        ));
    }
    let mut files = Vec::with_capacity(shards.len());
    let mut maps = Vec::with_capacity(shards.len());
    let mut metadata = BTreeMap::new();
    let mut all = Vec::new();
    for (file, shard) in shards.into_iter().enumerate() {
        for (key, value) in shard.metadata {
            metadata.entry(key).or_insert(value);
        }
        all.extend(shard.tensors.into_iter().map(|mut t| {
            t.info.file = file;
            t
        }));
        files.push(FileInfo {
            path: shard.map.path().to_owned(),
            size: shard.map.len(),
        });
        maps.push(shard.map);
    }
    // Tensors are in file order, so a name in two files is reported in that order.
    let sorted = TensorTable::build(NAME, files, all)?;
    Ok(Source {
        table: sorted.table.with_metadata(metadata),
        maps,
        ranges: sorted.locators,
    })
}
