//! Opening an ONNX model: which tensors it holds, where their bytes are, under which names
//! they are presented, and reading them as f32.
//!
//! Tensors are the graph's initializers (in every graph, nested ones included) and the float
//! tensors of rank ≥ 1 that `Constant` nodes hold (exporters such as spox inline weights that
//! way). Integer and scalar `Constant` values are shape arithmetic (axes, indices, shapes) —
//! a few hundred in a small exported model — and are counted in the metadata, not listed.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use weightkin_core::{
    to_f32, Dtype, Error, FileInfo, HeaderProblem, Limits, Located, MappedFile, RawTensor, Result,
    StoredRange, TensorInfo, TensorProblem, TensorTable, Transform, WeightSource,
};

use crate::names::{self, Presented, Undo, Unrecovered, Use, View};
use crate::proto::{self, Graph, Piece, Tensor, Typed, EXTERNAL};
use crate::wire;
use crate::{Problem, NAME};

/// Most entries listed in one metadata value (unrecovered names, tensors not listed) before
/// the rest is summarised as "… and N more".
const LIST_CAP: usize = 20;

/// Where a stored tensor's bytes are.
#[derive(Debug, Clone)]
pub(crate) enum Storage {
    /// A byte range of file `file` (0: the model, then its external data files).
    Mapped {
        /// Index into the source's files.
        file: usize,
        /// The bytes.
        range: Range<usize>,
    },
    /// Bytes decoded from a typed field (`int32_data` holding f16 bit patterns, unpacked
    /// `float_data`), re-encoded in `raw_data` layout: index into [`Layout::buffers`].
    Owned(usize),
    /// No bytes: an empty tensor, or an integer tensor (listed, never read).
    None,
}

/// What [`read`] needs to know about one presented tensor beyond its [`TensorInfo`].
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The stored tensor's bytes.
    pub storage: Storage,
    /// Where the presented elements are among the stored ones.
    pub view: View,
}

/// Everything known about a model once it is parsed and validated.
#[derive(Debug)]
pub(crate) struct Layout {
    pub table: TensorTable,
    pub entries: Vec<Entry>,
    /// Owned byte buffers ([`Storage::Owned`]).
    pub buffers: Vec<Vec<u8>>,
}

/// The external data files of a model, opened on demand, each once.
pub(crate) struct Externals {
    /// The model's directory, canonical; `None` when there is none (fuzzing).
    dir: Option<PathBuf>,
    /// The model's directory as given (external files are named by it, like shards).
    given: PathBuf,
    maps: Vec<MappedFile>,
    by_location: BTreeMap<String, usize>,
}

impl Externals {
    /// External data resolved in `dir` (the model's directory), or refused when `None`.
    pub(crate) fn new(dir: Option<&Path>) -> Externals {
        Externals {
            dir: dir.and_then(|d| d.canonicalize().ok()),
            given: dir.map(Path::to_owned).unwrap_or_default(),
            maps: Vec::new(),
            by_location: BTreeMap::new(),
        }
    }

    /// The opened files, in the order first referenced.
    pub(crate) fn into_maps(self) -> Vec<MappedFile> {
        self.maps
    }

    /// Opens `location` (once), refusing paths that leave the model's directory. Returns the
    /// file's index among the model's files (1-based: 0 is the model) and its bytes.
    fn open(&mut self, location: &str) -> Result<(usize, &MappedFile), OpenFailure> {
        if let Some(&i) = self.by_location.get(location) {
            return Ok((i + 1, &self.maps[i]));
        }
        let refuse = |reason| {
            OpenFailure::Problem(Problem::ExternalPath {
                location: location.to_owned(),
                reason,
            })
        };
        if location.is_empty() {
            return Err(refuse("it is empty"));
        }
        let rel = Path::new(location);
        if rel.is_absolute() || location.starts_with(['/', '\\']) || rel.has_root() {
            return Err(refuse("it is an absolute path"));
        }
        if location.split(['/', '\\']).any(|c| c == "..") {
            return Err(refuse("it has a `..` component"));
        }
        if !rel
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(refuse("it is not a plain relative path"));
        }
        let Some(dir) = &self.dir else {
            return Err(OpenFailure::Problem(Problem::NoDirectory(
                location.to_owned(),
            )));
        };
        let path = self.given.join(rel);
        let canonical = dir.join(rel).canonicalize().map_err(|source| {
            OpenFailure::Error(Error::Io {
                path: path.clone(),
                action: "open external data file",
                source,
            })
        })?;
        if !canonical.starts_with(dir) {
            return Err(refuse(
                "it resolves (through a link) outside the model's directory",
            ));
        }
        if !canonical.is_file() {
            return Err(refuse("it is not a regular file"));
        }
        // Map the file that was checked (not the path again, which a link swap could change).
        let map = MappedFile::open(&canonical).map_err(OpenFailure::Error)?;
        let i = self.maps.len();
        self.maps.push(map);
        self.by_location.insert(location.to_owned(), i);
        Ok((i + 1, &self.maps[i]))
    }
}

/// Why an external file could not be used.
enum OpenFailure {
    Problem(Problem),
    Error(Error),
}

/// An opened ONNX model.
#[derive(Debug)]
pub(crate) struct Source {
    /// The model file, then its external data files.
    maps: Vec<MappedFile>,
    layout: Layout,
}

impl Source {
    pub(crate) fn open(path: &Path, limits: &Limits) -> Result<Source> {
        let model = MappedFile::open(path)?;
        let dir = match path.parent() {
            Some(p) if p.as_os_str().is_empty() => Some(Path::new(".")),
            other => other,
        };
        let mut externals = Externals::new(dir);
        let layout = layout(path, model.bytes(), limits, &mut externals)?;
        let mut maps = vec![model];
        maps.extend(externals.into_maps());
        Ok(Source { maps, layout })
    }

    fn bytes(&self, index: usize) -> Option<&[u8]> {
        storage_bytes(&self.layout, &self.maps, index)
    }
}

fn storage_bytes<'a>(layout: &'a Layout, maps: &'a [MappedFile], index: usize) -> Option<&'a [u8]> {
    match &layout.entries.get(index)?.storage {
        Storage::Mapped { file, range } => maps.get(*file)?.bytes().get(range.clone()),
        Storage::Owned(i) => layout.buffers.get(*i).map(Vec::as_slice),
        Storage::None => Some(&[]),
    }
}

impl WeightSource for Source {
    fn table(&self) -> &TensorTable {
        &self.layout.table
    }

    fn read_f32(&self, index: usize, start: usize, out: &mut [f32]) -> Result<()> {
        let bytes = self.bytes(index).unwrap_or(&[]);
        read(&self.layout, bytes, index, start, out)?;
        weightkin_core::release_if_last(self, index, start, out.len());
        Ok(())
    }

    /// Part of a tensor presented as stored ([`Self::raw`]); all of a mapped initializer read
    /// through a view (a transposed view reads it out of order, so only as a whole).
    fn release(&self, index: usize, start: usize, end: usize) {
        let (Some(info), Some(entry)) = (
            self.layout.table.tensors().get(index),
            self.layout.entries.get(index),
        ) else {
            return;
        };
        let Storage::Mapped { file, range } = &entry.storage else {
            return;
        };
        let Some(map) = self.maps.get(*file) else {
            return;
        };
        let Some(bytes) = map.bytes().get(range.clone()) else {
            return;
        };
        if matches!(entry.view, View::Whole) && info.numel > 0 && bytes.len() % info.numel == 0 {
            let width = bytes.len() / info.numel;
            let (start, end) = (start.min(info.numel), end.min(info.numel));
            if let Some(part) = bytes.get(start * width..end * width) {
                map.release(part);
            }
        } else if start == 0 && end >= info.numel {
            map.release(bytes);
        }
    }

    /// A tensor presented as stored, in a memory map, is its bytes.
    fn raw(&self, index: usize) -> Option<RawTensor<'_>> {
        let entry = self.layout.entries.get(index)?;
        let info = self.layout.table.tensors().get(index)?;
        match (&entry.storage, &entry.view) {
            (Storage::Mapped { file, range }, View::Whole) if info.dtype.is_float() => {
                let map = self.maps.get(*file)?;
                Some(RawTensor {
                    dtype: info.dtype,
                    bytes: map.bytes().get(range.clone())?,
                    file: map,
                })
            }
            _ => None,
        }
    }

    fn stored_range(&self, index: usize) -> Option<StoredRange> {
        match &self.layout.entries.get(index)?.storage {
            Storage::Mapped { file, range } => Some(StoredRange {
                file: *file,
                start: range.start as u64,
                end: range.end as u64,
            }),
            _ => None,
        }
    }
}

/// Reads elements `start .. start + out.len()` of presented tensor `index`, whose stored
/// bytes are `bytes`.
pub(crate) fn read(
    layout: &Layout,
    bytes: &[u8],
    index: usize,
    start: usize,
    out: &mut [f32],
) -> Result<()> {
    let info = layout.table.checked_read(index, start, out.len())?;
    let len = out.len();
    let oob = || info.out_of_range(start, len);
    let entry = layout.entries.get(index).ok_or_else(oob)?;
    let dtype = info.dtype;
    match &entry.view {
        View::Whole => to_f32(dtype, bytes, start, out).ok_or_else(oob),
        View::Transposed { rows, cols } => {
            // Presented element p = (i, j) of [cols, rows] is stored element (j, i).
            let rows = (*rows).max(1);
            let stored = |k: usize| {
                let p = start + k;
                (p % rows) * cols + p / rows
            };
            if dtype == Dtype::F32 {
                // The common case (a MatMul weight) without a conversion call per element.
                for (k, o) in out.iter_mut().enumerate() {
                    let at = stored(k) * 4;
                    let b = bytes.get(at..at + 4).ok_or_else(oob)?;
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
                return Ok(());
            }
            for (k, o) in out.iter_mut().enumerate() {
                to_f32(dtype, bytes, stored(k), std::slice::from_mut(o)).ok_or_else(oob)?;
            }
            Ok(())
        }
        View::Segments(segments) => {
            let (mut at, mut done) = (0usize, 0usize);
            for &(seg_start, len) in segments {
                if done == out.len() {
                    break;
                }
                let want = start + done;
                if want < at + len {
                    let off = want - at;
                    let n = (len - off).min(out.len() - done);
                    to_f32(dtype, bytes, seg_start + off, &mut out[done..done + n])
                        .ok_or_else(oob)?;
                    done += n;
                }
                at += len;
            }
            if done == out.len() {
                Ok(())
            } else {
                Err(oob())
            }
        }
    }
}

/// A stored tensor found in the graph, and where it was defined (for errors).
struct Found<'a> {
    tensor: &'a Tensor<'a>,
    name: &'a str,
    place: String,
}

/// What a walk over all graphs collects.
#[derive(Default)]
struct Walk<'a> {
    found: Vec<Found<'a>>,
    uses: BTreeMap<&'a str, Vec<Use<'a>>>,
    nodes: u64,
    graphs: u64,
    ops: BTreeMap<&'a str, u64>,
    constants: u64,
    constants_listed: u64,
    not_listed: Vec<String>,
}

fn walk<'a>(g: &'a Graph<'a>, w: &mut Walk<'a>) {
    w.graphs += 1;
    let graph_name = if g.name.is_empty() {
        "(unnamed)"
    } else {
        g.name
    };
    for t in &g.initializers {
        w.found.push(Found {
            tensor: t,
            name: t.name,
            place: format!("an initializer of graph `{graph_name}`"),
        });
    }
    for s in &g.sparse_initializers {
        w.not_listed.push(format!("{s} (sparse initializer)"));
    }
    for n in &g.nodes {
        w.nodes += 1;
        *w.ops.entry(n.op_type).or_default() += 1;
        for (input, name) in n.inputs.iter().enumerate() {
            if !name.is_empty() {
                w.uses.entry(name).or_default().push(Use {
                    node: n.name,
                    op: n.op_type,
                    input,
                    trans_b: n.trans_b,
                });
            }
        }
        if n.op_type == "Constant" && n.domain.is_empty() {
            w.constants += 1;
            match (&n.value, n.outputs.first()) {
                (Some(t), Some(out)) if constant_is_weight(t) => {
                    w.constants_listed += 1;
                    w.found.push(Found {
                        tensor: t,
                        name: out,
                        place: format!(
                            "the value of Constant node `{}` in graph `{graph_name}`",
                            n.name
                        ),
                    });
                }
                _ => {
                    for v in &n.other_values {
                        if *v == "sparse_value" {
                            let out = n.outputs.first().copied().unwrap_or(n.name);
                            w.not_listed.push(format!("{out} (sparse Constant)"));
                        }
                    }
                }
            }
        }
        for sub in &n.subgraphs {
            walk(sub, w);
        }
    }
}

/// A Constant's tensor is listed when it is a float type of rank ≥ 1 (weights, biases, STFT
/// bases); integer and scalar constants are shape arithmetic.
fn constant_is_weight(t: &Tensor<'_>) -> bool {
    !t.dims.is_empty() && dtype(t.data_type).is_some_and(|d| d.ok().is_some_and(Dtype::is_float))
}

/// The weightkin dtype of ONNX data type `code` (`TensorProto.DataType`): `None` for an
/// unknown code, `Some(Err(reason))` for a type weightkin cannot list.
fn dtype(code: u64) -> Option<std::result::Result<Dtype, &'static str>> {
    Some(Ok(match code {
        1 => Dtype::F32,
        2 => Dtype::U8,
        3 => Dtype::I8,
        4 => Dtype::U16,
        5 => Dtype::I16,
        6 => Dtype::I32,
        7 => Dtype::I64,
        8 => return Some(Err("STRING")),
        9 => Dtype::BOOL,
        10 => Dtype::F16,
        11 => Dtype::F64,
        12 => Dtype::U32,
        13 => Dtype::U64,
        14 => Dtype::C64,
        15 => return Some(Err("COMPLEX128")),
        16 => Dtype::BF16,
        17 => Dtype::F8_E4M3,
        18 => Dtype::F8_E4M3FNUZ,
        19 => Dtype::F8_E5M2,
        20 => Dtype::F8_E5M2FNUZ,
        21 => return Some(Err("UINT4")),
        22 => return Some(Err("INT4")),
        23 => Dtype::F4,
        24 => Dtype::F8_E8M0,
        25 => return Some(Err("UINT2")),
        26 => return Some(Err("INT2")),
        27 => Dtype::F6_E2M3,
        28 => Dtype::F6_E3M2,
        _ => return None,
    }))
}

/// The ONNX name of a dtype, for errors.
fn onnx_name(d: Dtype) -> &'static str {
    match d {
        Dtype::F32 => "FLOAT",
        Dtype::F16 => "FLOAT16",
        Dtype::BF16 => "BFLOAT16",
        Dtype::F64 => "DOUBLE",
        Dtype::C64 => "COMPLEX64",
        Dtype::F8_E4M3 => "FLOAT8E4M3FN",
        Dtype::F8_E4M3FNUZ => "FLOAT8E4M3FNUZ",
        Dtype::F8_E5M2 => "FLOAT8E5M2",
        Dtype::F8_E5M2FNUZ => "FLOAT8E5M2FNUZ",
        Dtype::F8_E8M0 => "FLOAT8E8M0",
        Dtype::F4 => "FLOAT4E2M1",
        Dtype::F6_E2M3 => "FLOAT6E2M3",
        Dtype::F6_E3M2 => "FLOAT6E3M2",
        Dtype::I64 => "INT64",
        Dtype::U32 => "UINT32",
        Dtype::U64 => "UINT64",
        _ => "an integer type",
    }
}

/// Which typed field holds elements of `d` (`onnx.proto`, comments on each field).
fn typed_field(d: Dtype) -> Typed {
    match d {
        Dtype::F32 | Dtype::C64 => Typed::Float,
        Dtype::F64 => Typed::Double,
        Dtype::I64 => Typed::Int64,
        Dtype::U32 | Dtype::U64 => Typed::Uint64,
        _ => Typed::Int32,
    }
}

/// A stored tensor once its type, shape and bytes are checked.
struct Stored {
    info: TensorInfo,
    storage: Storage,
}

/// Parses and validates the ONNX model `bytes` (read from `path`, which errors name),
/// resolving external data through `externals`.
///
/// Order of checks, each failure a structured [`Error`]: the protobuf (wire encoding, the
/// wire type of every field read, UTF-8 names, graph depth, item count); a graph present;
/// no value name defined twice; the tensor count against [`Limits`]; then each tensor in
/// file order — a known data type, non-negative dimensions within the rank limit whose
/// product does not overflow, and exactly one place holding exactly its bytes (`raw_data`,
/// the typed field its type uses, or an external file inside the model's directory); then
/// names: generated names recovered (see [`names`]), presented names unique.
pub(crate) fn layout(
    path: &Path,
    bytes: &[u8],
    limits: &Limits,
    externals: &mut Externals,
) -> Result<Layout> {
    let header_error = |p: HeaderProblem| Error::header(path, NAME, p);
    let model = proto::model(bytes).map_err(header_error)?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| header_error(Problem::NoGraph.into()))?;
    let mut w = Walk::default();
    walk(graph, &mut w);

    // Value names are single-assignment across the graph and its subgraphs.
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for f in &w.found {
        if let Some(first) = seen.insert(f.name, &f.place) {
            return Err(header_error(
                Problem::DuplicateName {
                    name: f.name.to_owned(),
                    first: first.to_owned(),
                    second: f.place.clone(),
                }
                .into(),
            ));
        }
    }
    if w.found.len() as u64 > limits.max_tensors {
        return Err(header_error(HeaderProblem::TooManyTensors {
            count: w.found.len() as u64,
            limit: limits.max_tensors,
        }));
    }

    let mut files = vec![FileInfo {
        path: path.to_owned(),
        size: bytes.len() as u64,
    }];
    let mut buffers = Vec::new();
    let mut stored: Vec<(usize, Stored)> = Vec::new();
    let mut not_listed = w.not_listed.clone();
    for (i, f) in w.found.iter().enumerate() {
        let fail = |p: TensorProblem| Error::tensor(path, f.name, p);
        match check(f, bytes, limits, externals, &mut files, &mut buffers).map_err(|e| match e {
            Checked::Tensor(p) => fail(p),
            Checked::Error(e) => e,
        })? {
            Some(s) => stored.push((i, s)),
            None => {
                let why = dtype(f.tensor.data_type)
                    .and_then(|d| d.err())
                    .unwrap_or("unreadable");
                not_listed.push(format!("{} ({why})", f.name));
            }
        }
    }

    present(path, &model, &w, files, stored, buffers, not_listed)
}

/// Why [`check`] refused a tensor.
enum Checked {
    Tensor(TensorProblem),
    Error(Error),
}

impl From<Problem> for Checked {
    fn from(p: Problem) -> Checked {
        Checked::Tensor(p.into())
    }
}

impl From<TensorProblem> for Checked {
    fn from(p: TensorProblem) -> Checked {
        Checked::Tensor(p)
    }
}

fn wire_fault(f: wire::Fault) -> Checked {
    Problem::Wire {
        message: "TensorProto",
        at: f.at as u64,
        fault: f.fault,
    }
    .into()
}

/// Checks one stored tensor: its type, shape and bytes. `None` for a type weightkin cannot
/// list (strings, 4- and 2-bit integers, COMPLEX128).
fn check(
    f: &Found<'_>,
    bytes: &[u8],
    limits: &Limits,
    externals: &mut Externals,
    files: &mut Vec<FileInfo>,
    buffers: &mut Vec<Vec<u8>>,
) -> std::result::Result<Option<Stored>, Checked> {
    let t = f.tensor;
    let Some(d) = dtype(t.data_type) else {
        return Err(TensorProblem::UnknownDtype(format!("ONNX data type {}", t.data_type)).into());
    };
    let Ok(d) = d else {
        return Ok(None);
    };
    if t.dims.len() > limits.max_rank {
        return Err(TensorProblem::RankTooLarge {
            rank: t.dims.len(),
            limit: limits.max_rank,
        }
        .into());
    }
    let mut shape = Vec::with_capacity(t.dims.len());
    for &dim in &t.dims {
        let dim = usize::try_from(dim).map_err(|_| Problem::NegativeDim(dim))?;
        shape.push(dim);
    }
    if t.segmented {
        return Err(Problem::Segmented.into());
    }
    let mut info = TensorInfo::new(f.name.to_owned(), shape.clone(), d)?;
    let numel = info.numel as u64;
    let byte_len = info.byte_len;
    let size_mismatch = |actual: u64| TensorProblem::SizeMismatch {
        shape: shape.clone(),
        dtype: d,
        expected: byte_len,
        actual,
    };

    let external = t.data_location == EXTERNAL;
    if let Some((field, _)) = t.typed.first() {
        if external || t.raw.is_some() {
            return Err(Problem::ConflictingData {
                data_type: onnx_name(d),
                field: field.name(),
                other: if external {
                    "external_data"
                } else {
                    "raw_data"
                },
            }
            .into());
        }
    }
    if external {
        let mut location = None;
        let (mut offset, mut length) = (0u64, None);
        for &(k, v) in &t.external {
            let num = || {
                v.parse::<u64>().map_err(|_| {
                    Problem::ExternalEntry(format!("`{k}` is `{v}`, not a decimal integer"))
                })
            };
            match k {
                "location" => location = Some(v),
                "offset" => offset = num()?,
                "length" => length = Some(num()?),
                _ => {}
            }
        }
        let location =
            location.ok_or_else(|| Problem::ExternalEntry("no `location` entry".to_owned()))?;
        let (file, map) = externals.open(location).map_err(|e| match e {
            OpenFailure::Problem(p) => Checked::from(p),
            OpenFailure::Error(e) => Checked::Error(e),
        })?;
        let size = map.len();
        let external_path = externals.given.join(location);
        let length = length.unwrap_or(size.saturating_sub(offset));
        let end = offset.checked_add(length).filter(|&e| e <= size);
        let Some(end) = end else {
            return Err(Problem::ExternalRange {
                location: location.to_owned(),
                offset,
                length,
                size,
            }
            .into());
        };
        if length != byte_len {
            return Err(size_mismatch(length).into());
        }
        if file >= files.len() {
            files.push(FileInfo {
                path: external_path,
                size,
            });
        }
        info.file = file;
        // `end <= size`, the length of a slice.
        let range = offset as usize..end as usize;
        return Ok(Some(Stored {
            info,
            storage: if d.is_float() {
                Storage::Mapped { file, range }
            } else {
                Storage::None
            },
        }));
    }
    if let Some((raw, at)) = t.raw {
        if raw.len() as u64 != byte_len {
            return Err(size_mismatch(raw.len() as u64).into());
        }
        let storage = if d.is_float() {
            Storage::Mapped {
                file: 0,
                range: at..at + raw.len(),
            }
        } else {
            Storage::None
        };
        debug_assert!(bytes.get(at..at + raw.len()).is_some());
        return Ok(Some(Stored { info, storage }));
    }
    if t.typed.is_empty() {
        if numel == 0 {
            return Ok(Some(Stored {
                info,
                storage: Storage::None,
            }));
        }
        return Err(Problem::NoData { numel }.into());
    }
    let want = typed_field(d);
    if let Some((field, _)) = t.typed.iter().find(|(field, _)| *field != want) {
        return Err(Problem::ConflictingData {
            data_type: onnx_name(d),
            field: field.name(),
            other: "data_type",
        }
        .into());
    }
    let (storage, found) = typed(d, &t.typed, buffers)?;
    let expected = match d {
        Dtype::C64 => numel.saturating_mul(2),
        Dtype::F4 => numel.div_ceil(2),
        _ => numel,
    };
    if found != expected {
        return Err(Problem::ElementCount {
            field: want.name(),
            expected,
            found,
        }
        .into());
    }
    Ok(Some(Stored { info, storage }))
}

/// The storage of a tensor held in typed field pieces, and how many values they hold.
fn typed(
    d: Dtype,
    pieces: &[(Typed, Piece<'_>)],
    buffers: &mut Vec<Vec<u8>>,
) -> std::result::Result<(Storage, u64), Checked> {
    let fixed = match d {
        Dtype::F32 => Some(4),
        Dtype::F64 => Some(8),
        _ => None,
    };
    if let Some(width) = fixed {
        // One packed run: its bytes are `raw_data` layout already.
        let field = typed_field(d).name();
        for (_, p) in pieces {
            if let Piece::Packed(b, _) = p {
                if b.len() % width != 0 {
                    return Err(Problem::PackedLength {
                        field,
                        len: b.len() as u64,
                        width: width as u64,
                    }
                    .into());
                }
            }
        }
        if let [(_, Piece::Packed(b, at))] = pieces {
            return Ok((
                Storage::Mapped {
                    file: 0,
                    range: *at..*at + b.len(),
                },
                (b.len() / width) as u64,
            ));
        }
        let mut out = Vec::new();
        for (_, p) in pieces {
            match p {
                Piece::Packed(b, _) => out.extend_from_slice(b),
                Piece::Scalar(v) => out.extend_from_slice(&v.to_le_bytes()[..width]),
            }
        }
        let n = (out.len() / width) as u64;
        buffers.push(out);
        return Ok((Storage::Owned(buffers.len() - 1), n));
    }
    // Varint fields: count them; decode the float ones into raw layout.
    let values = pieces.iter().flat_map(
        |(_, p)| -> Box<dyn Iterator<Item = std::result::Result<u64, wire::Fault>>> {
            match p {
                Piece::Packed(b, at) => Box::new(wire::varints(b, *at)),
                Piece::Scalar(v) => Box::new(std::iter::once(Ok(*v))),
            }
        },
    );
    if !d.is_float() {
        let mut n = 0u64;
        for v in values {
            v.map_err(wire_fault)?;
            n += 1;
        }
        return Ok((Storage::None, n));
    }
    let (bytes_per, max) = match d {
        Dtype::F16 | Dtype::BF16 => (2, 0xffff),
        Dtype::F6_E2M3 | Dtype::F6_E3M2 => (0, 0x3f),
        _ => (1, 0xff),
    };
    let mut out = Vec::new();
    let mut n = 0u64;
    for v in values {
        let v = v.map_err(wire_fault)?;
        if v > max {
            return Err(Problem::BadBits {
                value: v,
                data_type: onnx_name(d),
            }
            .into());
        }
        if bytes_per == 0 {
            // FP6: one 6-bit element per value, packed LSB-first (see `weightkin_core::to_f32`).
            let bit = n.saturating_mul(6);
            let byte = (bit / 8) as usize;
            if out.len() < byte + 2 {
                out.resize(byte + 2, 0);
            }
            let word = (v as u16) << (bit % 8);
            out[byte] |= word as u8;
            out[byte + 1] |= (word >> 8) as u8;
        } else {
            out.extend_from_slice(&v.to_le_bytes()[..bytes_per]);
        }
        n += 1;
    }
    if bytes_per == 0 {
        out.truncate((n.saturating_mul(6).div_ceil(8)) as usize);
    }
    buffers.push(out);
    Ok((Storage::Owned(buffers.len() - 1), n))
}

/// Recovers generated names, builds the table, the metadata and the transform list.
fn present(
    path: &Path,
    model: &proto::Model<'_>,
    w: &Walk<'_>,
    files: Vec<FileInfo>,
    stored: Vec<(usize, Stored)>,
    buffers: Vec<Vec<u8>>,
    not_listed: Vec<String>,
) -> Result<Layout> {
    // Names first: which stored tensors get which presented names.
    let taken: BTreeMap<&str, ()> = stored
        .iter()
        .filter(|(_, s)| !names::is_generated(&s.info.name))
        .map(|(_, s)| (s.info.name.as_str(), ()))
        .collect();
    let mut plans: Vec<std::result::Result<names::Recovered, Unrecovered>> = Vec::new();
    let mut claimed: BTreeMap<String, usize> = BTreeMap::new();
    for (_, s) in &stored {
        let plan = if names::is_generated(&s.info.name) {
            let uses = w
                .uses
                .get(s.info.name.as_str())
                .map_or(&[][..], Vec::as_slice);
            names::recover(&s.info.shape, uses)
        } else {
            Err(Unrecovered::NoReader)
        };
        if let Ok(r) = &plan {
            for t in &r.tensors {
                *claimed.entry(t.name.clone()).or_default() += 1;
            }
        }
        plans.push(plan);
    }
    // A recovered name must be new and claimed once.
    for plan in &mut plans {
        if let Ok(r) = plan {
            if let Some(t) = r
                .tensors
                .iter()
                .find(|t| taken.contains_key(t.name.as_str()) || claimed.get(&t.name) != Some(&1))
            {
                *plan = Err(Unrecovered::Taken(t.name.clone()));
            }
        }
    }

    let mut items: Vec<Located<Entry>> = Vec::new();
    let (mut renamed, mut transposed, mut gates) = (0usize, 0usize, 0usize);
    let mut unrecovered = Vec::new();
    for ((_, s), plan) in stored.into_iter().zip(plans) {
        match plan {
            Ok(r) => {
                renamed += 1;
                match r.undo {
                    Undo::Nothing => {}
                    Undo::Transpose => transposed += 1,
                    Undo::RnnGates => gates += 1,
                }
                for Presented { name, shape, view } in r.tensors {
                    let mut info = TensorInfo::new(name, shape, s.info.dtype)
                        .map_err(|p| Error::tensor(path, &s.info.name, p))?;
                    info.file = s.info.file;
                    info.stored_name = Some(s.info.name.clone());
                    items.push(Located {
                        info,
                        at: Entry {
                            storage: s.storage.clone(),
                            view,
                        },
                    });
                }
            }
            Err(why) => {
                if names::is_generated(&s.info.name) {
                    unrecovered.push(format!("{} ({why})", s.info.name));
                }
                items.push(Located {
                    info: s.info,
                    at: Entry {
                        storage: s.storage,
                        view: View::Whole,
                    },
                });
            }
        }
    }
    let sorted = TensorTable::build(NAME, files, items)?;

    let mut transforms = Vec::new();
    if w.constants_listed > 0 {
        transforms.push(Transform {
            name: "onnx-constant-nodes".into(),
            detail: "float tensors held by Constant nodes (how some exporters inline weights) \
                     are listed under the Constant's output name"
                .into(),
            tensors: w.constants_listed as usize,
        });
    }
    if renamed > 0 {
        transforms.push(Transform {
            name: "onnx-recover-names".into(),
            detail: "tensors the exporter stored under generated names (`onnx::MatMul_*`, …) \
                     are presented under the parameter name recovered from the scope of the \
                     node that reads them (`/encoder/layer.0/query/MatMul` → \
                     `encoder.layer.0.query.weight`)"
                .into(),
            tensors: renamed,
        });
    }
    if transposed > 0 {
        transforms.push(Transform {
            name: "onnx-untranspose".into(),
            detail: "weights read by MatMul (or Gemm without transB), which the exporter \
                     stores transposed as [in, out], are presented as [out, in] like the \
                     PyTorch Linear weight they came from"
                .into(),
            tensors: transposed,
        });
    }
    if gates > 0 {
        transforms.push(Transform {
            name: "onnx-rnn-gates".into(),
            detail: "GRU/LSTM/RNN weights are split per direction, their gate blocks put back \
                     from ONNX's order (GRU z r h, LSTM i o f c) into PyTorch's (r z n, \
                     i f g o), and the stacked bias split into bias_ih and bias_hh"
                .into(),
            tensors: gates,
        });
    }

    if !unrecovered.is_empty() {
        // Not a change to the tensors, but reports list transforms and not metadata, and a
        // reader of a report should see which names are the exporter's and not the model's.
        transforms.push(Transform {
            name: "onnx-names-unrecovered".into(),
            detail: format!(
                "exporter-generated names no rule recovers, kept as stored: {}",
                capped(&unrecovered)
            ),
            tensors: unrecovered.len(),
        });
    }
    let metadata = metadata(model, w, &not_listed, &unrecovered, &sorted.table);
    Ok(Layout {
        table: sorted
            .table
            .with_metadata(metadata)
            .with_transforms(transforms),
        entries: sorted.locators,
        buffers,
    })
}

/// `a, b, c … and N more`.
fn capped(items: &[String]) -> String {
    let mut s = items
        .iter()
        .take(LIST_CAP)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > LIST_CAP {
        s.push_str(&format!(" … and {} more", items.len() - LIST_CAP));
    }
    s
}

fn metadata(
    model: &proto::Model<'_>,
    w: &Walk<'_>,
    not_listed: &[String],
    unrecovered: &[String],
    table: &TensorTable,
) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(format!("onnx.{k}"), v);
    };
    if let Some(v) = model.ir_version {
        put("ir_version", v.to_string());
    }
    let producer = format!("{} {}", model.producer_name, model.producer_version);
    if !producer.trim().is_empty() {
        put("producer", producer.trim().to_owned());
    }
    if !model.domain.is_empty() {
        put("domain", model.domain.to_owned());
    }
    if let Some(v) = model.model_version {
        put("model_version", v.to_string());
    }
    if !model.doc_string.is_empty() {
        let doc: String = model.doc_string.chars().take(200).collect();
        put("doc_string", doc);
    }
    let opsets: Vec<String> = model
        .opsets
        .iter()
        .map(|(d, v)| format!("{} {v}", if d.is_empty() { "ai.onnx" } else { d }))
        .collect();
    if !opsets.is_empty() {
        put("opset_import", opsets.join(", "));
    }
    if let Some(g) = &model.graph {
        put("graph", g.name.to_owned());
    }
    put("nodes", format!("{} in {} graph(s)", w.nodes, w.graphs));
    let ops: Vec<String> = w.ops.iter().map(|(op, n)| format!("{op}×{n}")).collect();
    if !ops.is_empty() {
        put("op_types", ops.join(", "));
    }
    if w.constants > 0 {
        put(
            "constants",
            format!(
                "{} Constant nodes: {} float tensors of rank ≥ 1 listed as tensors, {} integer \
                 or scalar values (shape arithmetic) not listed",
                w.constants,
                w.constants_listed,
                w.constants - w.constants_listed
            ),
        );
    }
    for (k, v) in &model.metadata_props {
        put(&format!("metadata_props.{k}"), (*v).to_owned());
    }
    if table.files().len() > 1 {
        let ext: Vec<String> = table.files()[1..]
            .iter()
            .map(|f| {
                let name = f.path.file_name().unwrap_or_default();
                format!("{} ({} bytes)", name.to_string_lossy(), f.size)
            })
            .collect();
        put("external_data", ext.join(", "));
    }
    if !not_listed.is_empty() {
        put("not_listed", capped(not_listed));
    }
    if !unrecovered.is_empty() {
        put(
            "names_unrecovered",
            format!("{}: {}", unrecovered.len(), capped(unrecovered)),
        );
    }
    if model.functions > 0 {
        put(
            "functions",
            format!(
                "{} model-local functions (their nodes are not read)",
                model.functions
            ),
        );
    }
    if model.training_info > 0 {
        put(
            "training_info",
            format!("{} entries (not read)", model.training_info),
        );
    }
    m
}
