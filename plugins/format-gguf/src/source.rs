//! Opening a GGUF file: validating the tensor layout, presenting tensors under Hugging Face
//! names in row-major shapes, and reading them as f32.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use weightkin_core::{
    checked_numel, Dtype, Error, FileInfo, HeaderProblem, Limits, Located, MappedFile, RawTensor,
    Result, StoredRows, TensorInfo, TensorProblem, TensorTable, Transform, WeightSource,
};

use crate::convention::{self, Remap};
use crate::header::{self, Failure, Header};
use crate::vocab::{self, TokensAt};
use crate::{dequant, ggml, metadata, names, Problem, NAME};

/// The key gguf-split writes into every shard (`LLM_KV_SPLIT_COUNT` in llama.cpp).
const SPLIT_COUNT_KEY: &str = "split.count";

/// What [`read`] needs to know about one tensor beyond its [`TensorInfo`].
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Byte range of the data within the file.
    pub range: Range<usize>,
    /// How HF rows map to stored rows.
    pub remap: Remap,
    /// Subtract 1 from every value (a converter's `+1` undone).
    pub minus_one: bool,
}

/// Everything known about a file once its header is validated: its table (tensors sorted by
/// name, metadata text, transforms) and each tensor's entry, parallel to the table's tensors.
#[derive(Debug)]
pub(crate) struct Layout {
    pub table: TensorTable,
    pub entries: Vec<Entry>,
    /// Where the tokenizer's token strings lie, when the file has them.
    pub tokens: Option<TokensAt>,
}

/// An opened GGUF file.
#[derive(Debug)]
pub(crate) struct Source {
    map: MappedFile,
    layout: Layout,
    /// The token strings, decoded on first use ([`WeightSource::vocabulary`]).
    vocab: OnceLock<Option<Vec<String>>>,
}

impl Source {
    pub(crate) fn open(path: &Path, limits: &Limits) -> Result<Source> {
        let map = MappedFile::open(path)?;
        let layout = layout(path, map.bytes(), limits)?;
        Ok(Source {
            map,
            layout,
            vocab: OnceLock::new(),
        })
    }
}

impl WeightSource for Source {
    fn table(&self) -> &TensorTable {
        &self.layout.table
    }

    /// A float tensor (F32, F16, BF16, F64) stored in the presented order, unchanged: its
    /// bytes in the map, so the streaming pass decodes while it reduces and hands pages back
    /// as it goes. Quantized blocks, RoPE-un-permuted rows and `+1`-undone norms are read
    /// through [`WeightSource::read_f32`].
    fn raw(&self, index: usize) -> Option<RawTensor<'_>> {
        let info = self.layout.table.tensors().get(index)?;
        let entry = self.layout.entries.get(index)?;
        let plain = matches!(
            info.dtype,
            Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64
        );
        if !plain || !matches!(entry.remap, Remap::None) || entry.minus_one {
            return None;
        }
        Some(RawTensor {
            dtype: info.dtype,
            bytes: self.map.bytes().get(entry.range.clone())?,
            file: &self.map,
        })
    }

    /// A float tensor (F32, F16, BF16) or one of Q8_0 blocks whose rows are stored
    /// RoPE-permuted (nothing added; Q8_0 rows whole blocks): its bytes and the stored row of
    /// each presented row, which the pass gathers.
    fn stored_rows(&self, index: usize) -> Option<StoredRows<'_>> {
        let info = self.layout.table.tensors().get(index)?;
        let entry = self.layout.entries.get(index)?;
        // Elements and bytes per stored unit.
        let (elements, unit) = match info.dtype {
            Dtype::F32 => (1, 4),
            Dtype::F16 | Dtype::BF16 => (1, 2),
            Dtype::Q8_0 => (32, 34),
            _ => return None,
        };
        if matches!(entry.remap, Remap::None) || entry.minus_one {
            return None;
        }
        let cols = entry.remap.cols();
        let bytes = self.map.bytes().get(entry.range.clone())?;
        let whole = info.numel % cols == 0 && cols % elements == 0;
        if !whole || bytes.len() != (info.numel / elements).checked_mul(unit)? {
            return None;
        }
        let rows = info.numel / cols;
        Some(StoredRows {
            raw: RawTensor {
                dtype: info.dtype,
                bytes,
                file: &self.map,
            },
            cols,
            order: (0..rows).map(|r| entry.remap.source_row(r)).collect(),
        })
    }

    /// Q8_0 tensors stored in element order (no rows to un-permute, nothing added), whose
    /// values [`Self::read_f32`] decodes as `f32(q) · f32(d)` ([`crate::dequant`]).
    fn blocks(&self, index: usize) -> Option<RawTensor<'_>> {
        let info = self.layout.table.tensors().get(index)?;
        let entry = self.layout.entries.get(index)?;
        if info.dtype != Dtype::Q8_0 || !matches!(entry.remap, Remap::None) || entry.minus_one {
            return None;
        }
        Some(RawTensor {
            dtype: info.dtype,
            bytes: self.map.bytes().get(entry.range.clone())?,
            file: &self.map,
        })
    }

    /// The whole blocks of elements `start .. end` (rows un-permuted within a head: the whole
    /// tensor only).
    fn release(&self, index: usize, start: usize, end: usize) {
        let (Some(info), Some(entry)) = (
            self.layout.table.tensors().get(index),
            self.layout.entries.get(index),
        ) else {
            return;
        };
        let Some(data) = self.map.bytes().get(entry.range.clone()) else {
            return;
        };
        let (start, end) = (start.min(info.numel), end.min(info.numel));
        if !matches!(entry.remap, Remap::None) {
            if start == 0 && end == info.numel {
                self.map.release(data);
            }
            return;
        }
        let (elements, bytes) = info
            .dtype
            .block()
            .unwrap_or((1, info.dtype.bits().div_ceil(8)));
        let (Ok(elements), Ok(bytes)) = (usize::try_from(elements), usize::try_from(bytes)) else {
            return;
        };
        if elements == 0 {
            return;
        }
        let first = start.div_ceil(elements).saturating_mul(bytes);
        let last = (end / elements).saturating_mul(bytes);
        if let Some(part) = data.get(first..last.max(first)) {
            self.map.release(part);
        }
    }

    fn read_f32(&self, index: usize, start: usize, out: &mut [f32]) -> Result<()> {
        read(&self.layout, self.map.bytes(), index, start, out)?;
        weightkin_core::release_if_last(self, index, start, out.len());
        Ok(())
    }

    /// `tokenizer.ggml.tokens`, decoded from the header bytes on first call (see
    /// [`vocab::tokens`] for the bounds).
    fn vocabulary(&self) -> Option<&[String]> {
        self.vocab
            .get_or_init(|| vocab::tokens(self.map.bytes(), self.layout.tokens?))
            .as_deref()
    }

    /// A tensor is one contiguous range of the file (a remote source fetches it alone).
    fn stored_range(&self, index: usize) -> Option<weightkin_core::StoredRange> {
        let entry = self.layout.entries.get(index)?;
        Some(weightkin_core::StoredRange {
            file: 0,
            start: entry.range.start as u64,
            end: entry.range.end as u64,
        })
    }
}

fn header_error(path: &Path, problem: HeaderProblem) -> Error {
    Error::header(path, NAME, problem)
}

fn tensor_error(path: &Path, name: &str, problem: TensorProblem) -> Error {
    Error::tensor(path, name, problem)
}

/// A tensor whose info passed validation, before renaming: its stored name and row-major
/// shape (GGUF's `ne` reversed).
struct Checked {
    info: TensorInfo,
    /// Offset within the data section.
    offset: u64,
}

/// Parses and validates the GGUF file `bytes` (read from `path`, which errors name).
///
/// Order of checks, each failure a structured [`Error`]: the header ([`header::parse`]:
/// magic, version, counts and lengths against the bytes present, metadata types and nesting,
/// alignment, ranks); that the file is not one shard of a split model; then each tensor in file order — known GGML type, dimensions that fit
/// and whose product does not overflow, rows of whole blocks, an aligned offset, data inside
/// the file; then the layout — no two tensors share a byte and no gap between tensors is
/// larger than alignment padding (llama.cpp's reader requires tensors packed in order, so any
/// larger hole is bytes no tool reads); then names (unique after renaming) and the
/// hyper-parameters the converter conventions need.
pub(crate) fn layout(path: &Path, bytes: &[u8], limits: &Limits) -> Result<Layout> {
    let file = FileInfo {
        path: path.to_owned(),
        size: bytes.len() as u64,
    };
    let header = header::parse(bytes, limits).map_err(|f| match f {
        Failure::Header(p) => header_error(path, p),
        Failure::Tensor(name, p) => tensor_error(path, &name, p),
    })?;
    // One shard of a model split by llama.cpp's gguf-split holds only some tensors (and, past
    // the first, no architecture): reading it alone would be a silently partial model.
    if let Some(count) = header.get(SPLIT_COUNT_KEY).and_then(|v| v.as_u64()) {
        if count > 1 {
            return Err(header_error(
                path,
                HeaderProblem::Unsupported {
                    what: format!("split GGUF (one of {count} shards)"),
                    reason: "models split across files are not read yet; merge the shards \
                             first with `llama-gguf-split --merge`",
                },
            ));
        }
    }
    let file_len = bytes.len() as u64;
    let data_len = file_len.saturating_sub(header.data_start);

    let mut checked = Vec::with_capacity(header.tensors.len());
    for raw in &header.tensors {
        let fail = |p| tensor_error(path, &raw.name, p);
        let dtype = ggml::dtype(raw.type_id).ok_or_else(|| {
            fail(TensorProblem::UnknownDtype(format!(
                "GGML type id {}",
                raw.type_id
            )))
        })?;
        let shape: Vec<usize> = raw
            .dims
            .iter()
            .rev()
            .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
            .collect();
        // llama.cpp also refuses element counts of i64::MAX or more.
        if checked_numel(&shape).is_none_or(|n| n as u64 >= i64::MAX as u64)
            || raw.dims.iter().any(|&d| d >= i64::MAX as u64)
        {
            return Err(fail(TensorProblem::ShapeOverflow(shape)));
        }
        let row = raw.dims.first().copied().unwrap_or(1);
        if let Some((block, _)) = dtype.block() {
            if row % block != 0 {
                return Err(fail(Problem::PartialBlock { row, dtype, block }.into()));
            }
        }
        let info = TensorInfo::new(raw.name.clone(), shape, dtype).map_err(fail)?;
        if raw.offset % header.alignment != 0 {
            return Err(fail(
                Problem::Misaligned {
                    offset: raw.offset,
                    alignment: header.alignment,
                }
                .into(),
            ));
        }
        let end = raw.offset.saturating_add(info.byte_len);
        if end > data_len {
            return Err(fail(TensorProblem::PastEnd {
                end,
                available: data_len,
            }));
        }
        checked.push(Checked {
            info,
            offset: raw.offset,
        });
    }
    let trailing = check_packing(path, &checked, header.alignment, data_len)?;

    let metadata = metadata::describe(
        &header,
        &checked.iter().map(|c| c.info.dtype).collect::<Vec<_>>(),
        trailing,
    );
    let mut layout = present(file, &header, checked, metadata)?;
    layout.tokens = vocab::locate(&header);
    Ok(layout)
}

/// Checks that tensors share no byte and leave no gap larger than alignment padding; returns
/// the bytes after the last tensor's padding.
fn check_packing(path: &Path, checked: &[Checked], alignment: u64, data_len: u64) -> Result<u64> {
    let mut spans: Vec<(u64, u64, &str)> = checked
        .iter()
        .filter(|c| c.info.byte_len > 0)
        .map(|c| (c.offset, c.offset + c.info.byte_len, c.info.name.as_str()))
        .collect();
    spans.sort_unstable();
    // End of the previous tensor, and its name.
    let mut prev: Option<(u64, &str)> = None;
    let mut covered = 0u64; // the previous end rounded up to the alignment
    for &(start, end, name) in &spans {
        if let Some((prev_end, prev_name)) = prev {
            if start < prev_end {
                return Err(tensor_error(
                    path,
                    name,
                    TensorProblem::Overlap {
                        start,
                        end,
                        other: prev_name.to_owned(),
                    },
                ));
            }
        }
        if start > covered {
            return Err(header_error(
                path,
                HeaderProblem::Gap {
                    start: covered,
                    end: start,
                },
            ));
        }
        prev = Some((end, name));
        // `end <= data_len <= u64::MAX`, and alignment is a power of two ≤ 2^31.
        covered = end.checked_next_multiple_of(alignment).unwrap_or(end);
    }
    Ok(data_len.saturating_sub(covered))
}

/// Renames tensors, applies the converter conventions, sorts, and builds the transform list.
fn present(
    file: FileInfo,
    header: &Header,
    checked: Vec<Checked>,
    metadata: BTreeMap<String, String>,
) -> Result<Layout> {
    let path = file.path.as_path();
    let arch = header
        .get("general.architecture")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let family = names::family(arch);
    let conventions = convention::Conventions::for_file(arch, header)
        .map_err(|p| header_error(path, p.into()))?;

    let mut renamed = 0usize;
    let mut kept = 0usize;
    let mut reversed = 0usize;
    let mut quantized = 0usize;
    let mut rope = 0usize;
    let mut norms = 0usize;
    let mut items: Vec<Located<Entry>> = Vec::with_capacity(checked.len());
    let data_start = header.data_start;
    for Checked { mut info, offset } in checked {
        let hf = family.and_then(|f| f.hf_name(&info.name));
        match hf {
            Some(_) => renamed += 1,
            None => kept += 1,
        }
        if info.shape.len() > 1 {
            reversed += 1;
        }
        if info.dtype.block().is_some() {
            quantized += 1;
        }
        let presented = hf.clone().unwrap_or_else(|| info.name.clone());
        let heads = match hf {
            Some(_) => conventions
                .rope_heads(&presented)
                .map_err(|p| header_error(path, p.into()))?,
            None => None,
        };
        let remap = match heads {
            None => Remap::None,
            Some(heads) => {
                let rows = info.shape.first().copied().unwrap_or(1);
                let remap = Remap::rope(rows, info.numel, heads).ok_or_else(|| {
                    tensor_error(
                        path,
                        &info.name,
                        Problem::HeadsMismatch {
                            rows: rows as u64,
                            heads: heads as u64,
                        }
                        .into(),
                    )
                })?;
                rope += 1;
                remap
            }
        };
        let minus_one =
            hf.is_some() && conventions.norm_plus_one(&presented) && info.dtype.is_float();
        if minus_one {
            norms += 1;
        }
        let range = to_range(data_start, offset, info.byte_len).ok_or_else(|| {
            tensor_error(
                path,
                &info.name,
                TensorProblem::ShapeOverflow(info.shape.clone()),
            )
        })?;
        if hf.is_some() {
            info.stored_name = Some(std::mem::replace(&mut info.name, presented));
        }
        items.push(Located {
            info,
            at: Entry {
                range,
                remap,
                minus_one,
            },
        });
    }

    let mut transforms = Vec::new();
    if reversed > 0 {
        transforms.push(Transform {
            name: "gguf-row-major-shape".to_owned(),
            detail: "GGUF lists dimensions fastest-varying first (GGML's `ne`); shapes are shown \
                     reversed, row-major as in PyTorch and safetensors. The bytes are already in \
                     that order, so no data moves."
                .to_owned(),
            tensors: reversed,
        });
    }
    if let Some(f) = family {
        transforms.push(Transform {
            name: "gguf-hf-names".to_owned(),
            detail: format!(
                "Renamed to Hugging Face names with the `{arch}` map (the inverse of gguf-py's \
                 tensor_mapping.py for layers under `{}N.`); {kept} tensor(s) have no Hugging Face \
                 equivalent and keep their GGUF names.",
                f.layer_prefix
            ),
            tensors: renamed,
        });
    }
    if quantized > 0 {
        transforms.push(Transform {
            name: "gguf-dequantize".to_owned(),
            detail: "Block-quantized tensors are decoded to f32 block by block, exactly as \
                     llama.cpp's gguf-py `quants.dequantize` decodes them."
                .to_owned(),
            tensors: quantized,
        });
    }
    if rope > 0 {
        transforms.push(convention::rope_transform(arch, rope));
    }
    if norms > 0 {
        transforms.push(convention::norm_transform(arch, norms));
    }

    let sorted = TensorTable::build(NAME, vec![file], items)?;
    Ok(Layout {
        table: sorted
            .table
            .with_metadata(metadata)
            .with_transforms(transforms),
        entries: sorted.locators,
        tokens: None,
    })
}

/// Absolute byte range of a tensor, as `usize` (the file is mapped, so it fits when checked).
fn to_range(data_start: u64, offset: u64, len: u64) -> Option<Range<usize>> {
    let start = usize::try_from(data_start.checked_add(offset)?).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    Some(start..end)
}

/// Reads elements `start .. start + out.len()` of tensor `index` (in its presented,
/// Hugging Face layout) as f32.
pub(crate) fn read(
    layout: &Layout,
    bytes: &[u8],
    index: usize,
    start: usize,
    out: &mut [f32],
) -> Result<()> {
    let len = out.len();
    let info = layout.table.checked_read(index, start, len)?;
    let out_of_range = || info.out_of_range(start, len);
    // `entries` parallels the table's tensors.
    let entry = layout.entries.get(index).ok_or_else(out_of_range)?;
    // Validated at open time against the same bytes; checked again so that nothing can panic.
    let data = bytes.get(entry.range.clone()).ok_or_else(out_of_range)?;
    match entry.remap {
        Remap::None => dequant::to_f32(info.dtype, data, start, out).ok_or_else(out_of_range)?,
        Remap::Rope { .. } => {
            let cols = entry.remap.cols();
            let mut pos = start;
            let mut rest = &mut *out;
            while !rest.is_empty() {
                let (row, col) = (pos / cols, pos % cols);
                let take = rest.len().min(cols - col);
                let (chunk, tail) = rest.split_at_mut(take);
                let src = entry.remap.source_row(row) * cols + col;
                dequant::to_f32(info.dtype, data, src, chunk).ok_or_else(out_of_range)?;
                rest = tail;
                pos += take;
            }
        }
    }
    if entry.minus_one {
        for v in out.iter_mut() {
            *v -= 1.0;
        }
    }
    Ok(())
}
