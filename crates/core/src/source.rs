//! The two traits a file format implements: [`Format`] (recognise and open) and
//! [`WeightSource`] (an opened model).
//!
//! Opening reads headers only; tensor data stays on disk (memory-mapped) until a metric asks
//! for it, and then arrives as f32 in caller-sized chunks. That is what keeps peak memory
//! independent of model size: a caller never needs a whole tensor in memory unless the metric
//! itself does.
//!
//! A tensor is named by its model and its index together, [`Side`]: the pass and the readers
//! take one `Side` per tensor rather than parallel `source, index` arguments, so a pair can
//! never be called with one model's index against the other model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{Dtype, Limits, MappedFile, Result, TensorInfo, TensorTable};

/// One file that belongs to an opened model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Path of the file as opened (the model path joined with the shard name).
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
}

/// Something a format did to present a file's tensors in weightkin's canonical form: renamed
/// them to Hugging Face names, undid a converter's row permutation, subtracted a constant a
/// converter had baked in, flattened a nested state dict. Listed in reports and by `inspect`,
/// so a reader can see every step between the bytes on disk and the numbers compared.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Transform {
    /// Short stable identifier (`gguf-hf-names`, `rope-unpermute`, `strip-prefix`, …).
    pub name: String,
    /// What was done and why, in one or two sentences (cite the converter or spec).
    pub detail: String,
    /// How many tensors it touched.
    pub tensors: usize,
}

/// A tensor's stored bytes, borrowed from the memory map that holds them (see
/// [`WeightSource::raw`]).
#[derive(Debug, Clone, Copy)]
pub struct RawTensor<'a> {
    /// The stored element type.
    pub dtype: Dtype,
    /// The tensor's bytes (all of them, little-endian).
    pub bytes: &'a [u8],
    /// The map `bytes` lies in.
    pub file: &'a MappedFile,
}

/// A tensor stored whole in a memory map with its rows in another order than the one
/// presented (see [`WeightSource::stored_rows`]): presented row `r` is stored row
/// `order[r]`, each row `cols` elements.
#[derive(Debug, Clone)]
pub struct StoredRows<'a> {
    /// The stored tensor, all of it.
    pub raw: RawTensor<'a>,
    /// Elements per row.
    pub cols: usize,
    /// The stored row of each presented row.
    pub order: Vec<usize>,
}

/// An opened model: its tensors' metadata, eagerly; their data, lazily.
///
/// A format implements [`Self::table`] (what its header says, built once at open), and
/// [`Self::read_f32`] and optionally [`Self::raw`] (its bytes); every other accessor is
/// provided over the table.
///
/// Implementations must be safe against any file contents: every size read from a header is
/// checked before use, and `read_f32` never reads outside the tensor's validated byte range.
pub trait WeightSource: Send + Sync {
    /// The model's files, tensors, metadata and transforms (see [`TensorTable`]).
    fn table(&self) -> &TensorTable;

    /// Name of the format that opened this source (the [`Format::name`]).
    fn format(&self) -> &'static str {
        self.table().format()
    }

    /// Files making up the model, in a stable order.
    fn files(&self) -> &[FileInfo] {
        self.table().files()
    }

    /// All tensors, sorted by name, names unique.
    fn tensors(&self) -> &[TensorInfo] {
        self.table().tensors()
    }

    /// Format-level metadata (e.g. safetensors `__metadata__`, GGUF key/values), as text;
    /// empty when the format has none.
    fn metadata(&self) -> &BTreeMap<String, String> {
        self.table().metadata()
    }

    /// Transforms the format applied to present the tensors (see [`Transform`]); empty when
    /// it applied none.
    fn transforms(&self) -> &[Transform] {
        self.table().transforms()
    }

    /// The tokenizer's token strings in id order, exactly as the file stores them (no
    /// normalisation), when the format carries a vocabulary inside the model file (GGUF's
    /// `tokenizer.ggml.tokens`). The default (`None`: the format has none, or it was too large
    /// or malformed to decode safely) leaves callers to look beside the file
    /// (`tokenizer.json`, `vocab.txt`). A source that wraps another forwards this.
    fn vocabulary(&self) -> Option<&[String]> {
        None
    }

    /// Converts elements `start .. start + out.len()` of tensor `index` (row-major order) to
    /// f32 into `out`.
    ///
    /// Errors if the tensor's dtype is not convertible ([`crate::Dtype::is_float`]) or the
    /// range lies outside the tensor. Callers stream a tensor by calling this repeatedly with
    /// a chunk-sized buffer.
    fn read_f32(&self, index: usize, start: usize, out: &mut [f32]) -> Result<()>;

    /// The stored bytes of tensor `index`, when the source holds them contiguously in a
    /// memory map in a layout [`crate::to_f32`] decodes to exactly what [`Self::read_f32`]
    /// returns. The streaming kernels then decode while they reduce (no intermediate f32
    /// buffer) and hand pages they are done with back to the kernel
    /// ([`MappedFile::release`]), which keeps resident memory independent of model size.
    /// The default (`None`: e.g. a format that dequantizes blocks) streams through
    /// [`Self::read_f32`].
    fn raw(&self, index: usize) -> Option<RawTensor<'_>> {
        let _ = index;
        None
    }

    /// The stored bytes of tensor `index` when they are blocks of a quantized type the pass
    /// decodes inside its moment kernel (today [`Dtype::Q8_0`]: `d: f16, q: [i8; 32]` per
    /// 34 bytes, value `f32(q) · f32(d)`), whole blocks in element order, and
    /// [`Self::read_f32`] returns exactly those values. A pair of such tensors is then
    /// reduced without an intermediate f32 buffer, to the same bits. The default (`None`)
    /// reads through [`Self::read_f32`].
    fn blocks(&self, index: usize) -> Option<RawTensor<'_>> {
        let _ = index;
        None
    }

    /// The stored bytes of tensor `index` when it is a float tensor (F32, F16, BF16) or one
    /// of Q8_0 blocks (rows of whole blocks, each element `f32(q) · f32(d)` as
    /// [`Self::blocks`] has them) held whole in a map whose rows are stored in another order
    /// than presented (GGUF's RoPE rows), every element stored as it is presented, and
    /// [`Self::read_f32`] returns those values: the pass then gathers stored rows and reduces
    /// them in the fused kernels, to the same bits as reading through [`Self::read_f32`]. The
    /// default (`None`) reads through [`Self::read_f32`].
    fn stored_rows(&self, index: usize) -> Option<StoredRows<'_>> {
        let _ = index;
        None
    }

    /// Tells the source that the caller is done, for now, with elements `start .. end` of
    /// tensor `index`: a memory hint (the mapped pages that hold only those elements stop
    /// counting towards resident memory; a later read faults them in again, unchanged). The
    /// streaming pass calls it after each window of chunks it reads through
    /// [`Self::read_f32`], so resident memory stays independent of model size for every
    /// format. The default releases the matching part of [`Self::raw`]'s bytes, when the
    /// source has them at a whole number of bytes per element; a source that reads through
    /// something else (quantized blocks, a gather) overrides it or leaves it a no-op.
    fn release(&self, index: usize, start: usize, end: usize) {
        let (Some(info), Some(raw)) = (self.tensors().get(index), self.raw(index)) else {
            return;
        };
        if info.numel == 0 || raw.bytes.len() % info.numel != 0 {
            return;
        }
        let width = raw.bytes.len() / info.numel;
        let (start, end) = (start.min(info.numel), end.min(info.numel));
        if let Some(part) = raw.bytes.get(start * width..end * width) {
            raw.file.release(part);
        }
    }

    /// Looks a tensor up by name (binary search over the sorted list).
    fn find(&self, name: &str) -> Option<usize> {
        self.table().find(name)
    }

    /// Where tensor `index`'s stored bytes lie: one byte range of one of [`Self::files`].
    ///
    /// A remote source (the `weightkin-hub` crate) fetches exactly these bytes before the
    /// tensor is read, so a format that knows its tensors' ranges lets an audit of one
    /// component download that component alone. The default (`None`: unknown, or not one
    /// contiguous range) makes a remote source fetch the whole file instead — slower, never
    /// wrong.
    fn stored_range(&self, index: usize) -> Option<StoredRange> {
        let _ = index;
        None
    }

    /// Gets tensors `tensors` ready to read, all at once, before an audit reads them one by
    /// one: a remote source fetches their byte ranges, coalesced and in parallel, reporting
    /// bytes to `progress`. Reads work without it (a remote source then fetches each tensor
    /// when it is first read); this only makes them fast. The default does nothing: a local
    /// file is ready.
    fn prefetch(&self, tensors: &[usize], progress: &dyn FetchProgress) -> Result<()> {
        let _ = (tensors, progress);
        Ok(())
    }
}

/// What a format's [`WeightSource::read_f32`] calls after each read: the read that ends a
/// tensor (elements `start .. start + len` reaching its last) hands the whole tensor back
/// ([`WeightSource::release`]), so whole-tensor reads (tables, CKA, alignment) do not leave
/// the model resident. A memory hint: a later read faults the pages in again.
pub fn release_if_last(
    source: &(impl WeightSource + ?Sized),
    index: usize,
    start: usize,
    len: usize,
) {
    let numel = source.tensors().get(index).map_or(0, |t| t.numel);
    if numel > 0 && start.saturating_add(len) == numel {
        source.release(index, 0, numel);
    }
}

/// Where a tensor's stored bytes lie ([`WeightSource::stored_range`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredRange {
    /// Index into [`WeightSource::files`].
    pub file: usize,
    /// First byte, from the start of the file.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// Receives the progress of a [`WeightSource::prefetch`]. Calls may come from any thread.
pub trait FetchProgress: Sync {
    /// The prefetch will transfer `bytes` bytes in all (called once, before any
    /// [`Self::fetched`]; not called when nothing needs fetching).
    fn planned(&self, bytes: u64) {
        let _ = bytes;
    }
    /// `bytes` more bytes arrived.
    fn fetched(&self, bytes: u64) {
        let _ = bytes;
    }
}

/// A [`FetchProgress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFetchProgress;
impl FetchProgress for NoFetchProgress {}

/// One tensor of one model: tensor `index` of `source`, the side of a pair. What the pass
/// ([`crate::pair_pass`]) and the readers ([`crate::read_tensor`], [`crate::read_examples`])
/// take for each tensor they read.
#[derive(Clone, Copy)]
pub struct Side<'a> {
    /// The model.
    pub source: &'a dyn WeightSource,
    /// The tensor's index in it (into [`WeightSource::tensors`]).
    pub index: usize,
}

impl<'a> Side<'a> {
    /// Tensor `index` of `source`.
    pub fn new(source: &'a dyn WeightSource, index: usize) -> Side<'a> {
        Side { source, index }
    }

    /// The tensor's metadata. `index` must be one of the source's tensors (an index the
    /// source itself gave out, from [`WeightSource::find`] or [`WeightSource::tensors`]);
    /// any other panics.
    pub fn info(&self) -> &'a TensorInfo {
        &self.source.tensors()[self.index]
    }

    /// The whole tensor as f32 (`numel` elements): [`crate::read_tensor`].
    pub fn read(&self, numel: usize) -> Result<Vec<f32>> {
        crate::read_tensor(*self, numel)
    }

    /// The tensor's stored bytes, when the source exposes them ([`WeightSource::raw`]).
    pub fn raw(&self) -> Option<RawTensor<'a>> {
        self.source.raw(self.index)
    }

    /// The tensor's quantized blocks, when the source exposes them
    /// ([`WeightSource::blocks`]).
    pub fn blocks(&self) -> Option<RawTensor<'a>> {
        self.source.blocks(self.index)
    }

    /// The tensor's stored rows in another order, when the source exposes them
    /// ([`WeightSource::stored_rows`]).
    pub fn stored_rows(&self) -> Option<StoredRows<'a>> {
        self.source.stored_rows(self.index)
    }

    /// Elements `start .. start + out.len()` as f32 ([`WeightSource::read_f32`]).
    pub fn read_f32(&self, start: usize, out: &mut [f32]) -> Result<()> {
        self.source.read_f32(self.index, start, out)
    }
}

impl std::fmt::Debug for Side<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tensor = self.source.tensors().get(self.index).map(|t| &t.name);
        f.debug_struct("Side")
            .field("format", &self.source.format())
            .field("index", &self.index)
            .field("tensor", &tensor)
            .finish()
    }
}

/// A file format: recognises its files by their first bytes and opens them.
pub trait Format: Send + Sync {
    /// Short unique name (`safetensors`, `gguf`, …), used in recipes and reports.
    fn name(&self) -> &'static str;

    /// One-line description for `weightkin plugins`.
    fn doc(&self) -> &'static str;

    /// Whether `path` looks like this format. `head` holds up to the first 64 bytes of the
    /// file, and is empty for a directory. Must be cheap: no parsing beyond magic bytes and,
    /// for directories, a listing.
    fn sniff(&self, path: &Path, head: &[u8]) -> bool;

    /// Opens `path` (a file or directory), reading and validating headers only.
    fn open(&self, path: &Path, limits: &Limits) -> Result<Box<dyn WeightSource>>;
}
