//! Opening a GGUF file: validating the tensor layout, presenting tensors under Hugging Face
//! names in row-major shapes, and reading them as f32.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use weightkin_core::{
    checked_numel, Dtype, Error, FileInfo, HeaderProblem, Limits, MappedFile, Result, TensorInfo,
    TensorProblem, Transform, WeightSource,
};

use crate::convention::{self, Remap};
use crate::header::{self, Failure, Header};
use crate::{dequant, ggml, metadata, names, NAME};

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

/// Everything known about a file once its header is validated: tensors (sorted by name),
/// their entries (parallel), metadata text and transforms.
#[derive(Debug)]
pub(crate) struct Layout {
    pub tensors: Vec<TensorInfo>,
    pub entries: Vec<Entry>,
    pub metadata: BTreeMap<String, String>,
    pub transforms: Vec<Transform>,
}

/// An opened GGUF file.
#[derive(Debug)]
pub(crate) struct Source {
    files: Vec<FileInfo>,
    map: MappedFile,
    layout: Layout,
}

impl Source {
    pub(crate) fn open(path: &Path, limits: &Limits) -> Result<Source> {
        let map = MappedFile::open(path)?;
        let layout = layout(path, map.bytes(), limits)?;
        Ok(Source {
            files: vec![FileInfo {
                path: path.to_owned(),
                size: map.len(),
            }],
            map,
            layout,
        })
    }
}

impl WeightSource for Source {
    fn format(&self) -> &'static str {
        NAME
    }

    fn files(&self) -> &[FileInfo] {
        &self.files
    }

    fn tensors(&self) -> &[TensorInfo] {
        &self.layout.tensors
    }

    fn metadata(&self) -> &BTreeMap<String, String> {
        &self.layout.metadata
    }

    fn transforms(&self) -> &[Transform] {
        &self.layout.transforms
    }

    fn read_f32(&self, index: usize, start: usize, out: &mut [f32]) -> Result<()> {
        read(&self.layout, self.map.bytes(), index, start, out)
    }
}

fn header_error(path: &Path, problem: HeaderProblem) -> Error {
    Error::header(path, NAME, problem)
}

fn tensor_error(path: &Path, name: &str, problem: TensorProblem) -> Error {
    Error::tensor(path, name, problem)
}

/// A tensor whose info passed validation, before renaming.
struct Checked {
    name: String,
    /// Row-major shape (GGUF's `ne` reversed).
    shape: Vec<usize>,
    dtype: Dtype,
    numel: usize,
    byte_len: u64,
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
        let overflow = || fail(TensorProblem::ShapeOverflow(shape.clone()));
        // llama.cpp also refuses element counts of i64::MAX or more.
        let numel = checked_numel(&shape)
            .filter(|&n| {
                (n as u64) < i64::MAX as u64 && raw.dims.iter().all(|&d| d < i64::MAX as u64)
            })
            .ok_or_else(overflow)?;
        let row = raw.dims.first().copied().unwrap_or(1);
        if let Some((block, _)) = dtype.block() {
            if row % block != 0 {
                return Err(fail(TensorProblem::PartialBlock { row, dtype, block }));
            }
        }
        let byte_len = dtype.byte_len(numel as u64).ok_or_else(overflow)?;
        if raw.offset % header.alignment != 0 {
            return Err(fail(TensorProblem::Misaligned {
                offset: raw.offset,
                alignment: header.alignment,
            }));
        }
        let end = raw.offset.saturating_add(byte_len);
        if end > data_len {
            return Err(fail(TensorProblem::PastEnd {
                end,
                available: data_len,
            }));
        }
        checked.push(Checked {
            name: raw.name.clone(),
            shape,
            dtype,
            numel,
            byte_len,
            offset: raw.offset,
        });
    }
    let trailing = check_packing(path, &checked, header.alignment, data_len)?;

    let metadata = metadata::describe(
        &header,
        &checked.iter().map(|c| c.dtype).collect::<Vec<_>>(),
        trailing,
    );
    present(path, &header, checked, metadata)
}

/// Checks that tensors share no byte and leave no gap larger than alignment padding; returns
/// the bytes after the last tensor's padding.
fn check_packing(path: &Path, checked: &[Checked], alignment: u64, data_len: u64) -> Result<u64> {
    let mut spans: Vec<(u64, u64, &str)> = checked
        .iter()
        .filter(|c| c.byte_len > 0)
        .map(|c| (c.offset, c.offset + c.byte_len, c.name.as_str()))
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
    path: &Path,
    header: &Header,
    checked: Vec<Checked>,
    metadata: BTreeMap<String, String>,
) -> Result<Layout> {
    let arch = header
        .get("general.architecture")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let family = names::family(arch);
    let conventions =
        convention::Conventions::for_file(arch, header).map_err(|p| header_error(path, p))?;

    let mut renamed = 0usize;
    let mut kept = 0usize;
    let mut reversed = 0usize;
    let mut quantized = 0usize;
    let mut rope = 0usize;
    let mut norms = 0usize;
    let mut items: Vec<(TensorInfo, Entry)> = Vec::with_capacity(checked.len());
    let data_start = header.data_start;
    for c in checked {
        let hf = family.and_then(|f| f.hf_name(&c.name));
        match hf {
            Some(_) => renamed += 1,
            None => kept += 1,
        }
        if c.shape.len() > 1 {
            reversed += 1;
        }
        if c.dtype.block().is_some() {
            quantized += 1;
        }
        let presented = hf.clone().unwrap_or_else(|| c.name.clone());
        let heads = match hf {
            Some(_) => conventions
                .rope_heads(&presented)
                .map_err(|p| header_error(path, p))?,
            None => None,
        };
        let remap = match heads {
            None => Remap::None,
            Some(heads) => {
                let rows = c.shape.first().copied().unwrap_or(1);
                let remap = Remap::rope(rows, c.numel, heads).ok_or_else(|| {
                    tensor_error(
                        path,
                        &c.name,
                        TensorProblem::HeadsMismatch {
                            rows: rows as u64,
                            heads: heads as u64,
                        },
                    )
                })?;
                rope += 1;
                remap
            }
        };
        let minus_one = hf.is_some() && conventions.norm_plus_one(&presented) && c.dtype.is_float();
        if minus_one {
            norms += 1;
        }
        let range = to_range(data_start, c.offset, c.byte_len).ok_or_else(|| {
            tensor_error(path, &c.name, TensorProblem::ShapeOverflow(c.shape.clone()))
        })?;
        let stored_name = hf.is_some().then(|| c.name.clone());
        items.push((
            TensorInfo {
                name: presented,
                shape: c.shape,
                dtype: c.dtype,
                numel: c.numel,
                byte_len: c.byte_len,
                file: 0,
                stored_name,
            },
            Entry {
                range,
                remap,
                minus_one,
            },
        ));
    }
    items.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    if let Some(w) = items.windows(2).find(|w| w[0].0.name == w[1].0.name) {
        return Err(Error::DuplicateTensor {
            tensor: w[0].0.name.clone(),
            first: path.to_owned(),
            second: path.to_owned(),
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

    let (tensors, entries) = items.into_iter().unzip();
    Ok(Layout {
        tensors,
        entries,
        metadata,
        transforms,
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
    let info = weightkin_core::checked_read(&layout.tensors, index, start, len)?;
    let out_of_range = || info.out_of_range(start, len);
    // `entries` parallels `tensors`.
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
