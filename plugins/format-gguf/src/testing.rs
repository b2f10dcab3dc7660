//! GGUF fixtures built in code (feature `testing`): a writer and gguf-py's reference Q8_0 and
//! Q4_0 quantizers.
//!
//! [`GgufBuilder`] writes files byte for byte as gguf-py's `GGUFWriter` does (checked against
//! a file it wrote, `tests/golden/writer.gguf`): magic, version 3, counts, key/values in
//! insertion order starting with `general.architecture`, tensor infos with offsets packed in
//! insertion order, each padded to the alignment, then the data, each tensor followed by zero
//! padding to the alignment. It shares nothing with the reader but the GGML type-id table.
//! For adversarial fixtures it can also write tensor infos with chosen dimensions, type ids
//! and offsets, and files without the architecture key.

use std::io;
use std::path::Path;

use half::f16;
use weightkin_core::{checked_numel, Dtype};

use crate::ggml;

/// A metadata value to write. Arrays name their element type (a GGUF type code, see
/// [`Meta::type_id`]) so that empty and nested arrays can be written.
#[derive(Debug, Clone, PartialEq)]
pub enum Meta {
    /// `GGUF_TYPE_UINT8`.
    U8(u8),
    /// `GGUF_TYPE_INT8`.
    I8(i8),
    /// `GGUF_TYPE_UINT16`.
    U16(u16),
    /// `GGUF_TYPE_INT16`.
    I16(i16),
    /// `GGUF_TYPE_UINT32`.
    U32(u32),
    /// `GGUF_TYPE_INT32`.
    I32(i32),
    /// `GGUF_TYPE_FLOAT32`.
    F32(f32),
    /// `GGUF_TYPE_BOOL`.
    Bool(bool),
    /// `GGUF_TYPE_STRING`.
    Str(String),
    /// `GGUF_TYPE_ARRAY`: element type code and elements (which must all have that type).
    Array(u32, Vec<Meta>),
    /// `GGUF_TYPE_UINT64`.
    U64(u64),
    /// `GGUF_TYPE_INT64`.
    I64(i64),
    /// `GGUF_TYPE_FLOAT64`.
    F64(f64),
}

impl Meta {
    /// The GGUF type code of this value (`enum gguf_type`).
    pub fn type_id(&self) -> u32 {
        match self {
            Meta::U8(_) => 0,
            Meta::I8(_) => 1,
            Meta::U16(_) => 2,
            Meta::I16(_) => 3,
            Meta::U32(_) => 4,
            Meta::I32(_) => 5,
            Meta::F32(_) => 6,
            Meta::Bool(_) => 7,
            Meta::Str(_) => 8,
            Meta::Array(..) => 9,
            Meta::U64(_) => 10,
            Meta::I64(_) => 11,
            Meta::F64(_) => 12,
        }
    }

    /// A string value.
    pub fn str(s: &str) -> Meta {
        Meta::Str(s.to_owned())
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Meta::U8(v) => out.push(*v),
            Meta::I8(v) => out.extend(v.to_le_bytes()),
            Meta::U16(v) => out.extend(v.to_le_bytes()),
            Meta::I16(v) => out.extend(v.to_le_bytes()),
            Meta::U32(v) => out.extend(v.to_le_bytes()),
            Meta::I32(v) => out.extend(v.to_le_bytes()),
            Meta::F32(v) => out.extend(v.to_le_bytes()),
            Meta::Bool(v) => out.push(u8::from(*v)),
            Meta::Str(s) => write_str(out, s),
            Meta::Array(elem, items) => {
                out.extend(elem.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for item in items {
                    item.write(out);
                }
            }
            Meta::U64(v) => out.extend(v.to_le_bytes()),
            Meta::I64(v) => out.extend(v.to_le_bytes()),
            Meta::F64(v) => out.extend(v.to_le_bytes()),
        }
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// One tensor to write.
#[derive(Debug, Clone)]
struct Tensor {
    name: String,
    /// GGML `ne`: fastest-varying dimension first.
    ne: Vec<u64>,
    type_id: u32,
    /// `None`: the next packed offset, as GGUFWriter computes it.
    offset: Option<u64>,
    data: Vec<u8>,
    /// Whether `to_bytes` checks the data against the shape (not for adversarial tensors).
    checked: bool,
}

/// Builds a GGUF file.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use weightkin_format_gguf::testing::{GgufBuilder, Meta};
/// let bytes = GgufBuilder::new("llama")
///     .kv("llama.attention.head_count", Meta::U32(2))
///     .tensor_f32("output_norm.weight", &[4], &[1.0, 2.0, 3.0, 4.0])
///     .to_bytes()?;
/// assert_eq!(&bytes[..4], b"GGUF");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct GgufBuilder {
    version: u32,
    alignment: u64,
    kv: Vec<(String, Meta)>,
    tensors: Vec<Tensor>,
}

impl GgufBuilder {
    /// A file of architecture `arch`: like `GGUFWriter(path, arch)`, its first key is
    /// `general.architecture`.
    pub fn new(arch: &str) -> GgufBuilder {
        GgufBuilder::bare().kv("general.architecture", Meta::str(arch))
    }

    /// A file with no keys and no tensors.
    pub fn bare() -> GgufBuilder {
        GgufBuilder {
            version: 3,
            alignment: crate::DEFAULT_ALIGNMENT,
            kv: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Sets the version field (3 by default).
    pub fn version(mut self, version: u32) -> GgufBuilder {
        self.version = version;
        self
    }

    /// Appends a key/value (duplicates are written as given).
    pub fn kv(mut self, key: &str, value: Meta) -> GgufBuilder {
        self.kv.push((key.to_owned(), value));
        self
    }

    /// Sets a custom alignment, as `GGUFWriter.add_custom_alignment` does: appends
    /// `general.alignment` (u32) and pads to it.
    pub fn alignment(mut self, alignment: u32) -> GgufBuilder {
        self.alignment = u64::from(alignment);
        self.kv("general.alignment", Meta::U32(alignment))
    }

    /// Appends an F32 tensor of row-major `shape`.
    pub fn tensor_f32(self, name: &str, shape: &[usize], values: &[f32]) -> GgufBuilder {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor_raw(name, Dtype::F32, shape, bytes)
    }

    /// Appends `values` quantized to Q8_0 by [`quantize_q8_0`]; the row (last dimension of
    /// `shape`) must be a multiple of 32.
    pub fn tensor_q8_0(self, name: &str, shape: &[usize], values: &[f32]) -> GgufBuilder {
        self.tensor_raw(name, Dtype::Q8_0, shape, quantize_q8_0(values))
    }

    /// Appends `values` quantized to Q4_0 by [`quantize_q4_0`].
    pub fn tensor_q4_0(self, name: &str, shape: &[usize], values: &[f32]) -> GgufBuilder {
        self.tensor_raw(name, Dtype::Q4_0, shape, quantize_q4_0(values))
    }

    /// Appends a tensor of row-major `shape` from its stored bytes. A dtype GGUF cannot
    /// store, or bytes not matching the shape, make [`GgufBuilder::to_bytes`] fail.
    pub fn tensor_raw(
        self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        data: Vec<u8>,
    ) -> GgufBuilder {
        let ne = shape.iter().rev().map(|&d| d as u64).collect();
        let type_id = ggml::type_id(dtype).unwrap_or(u32::MAX);
        let mut builder = self.tensor_info(name, ne, type_id, None, data);
        if let Some(t) = builder.tensors.last_mut() {
            t.checked = true;
        }
        builder
    }

    /// Appends a tensor with everything chosen, for adversarial files: `ne` in GGML order,
    /// any type id, an explicit offset (`None`: packed after the previous tensor), and data
    /// that need not match. Its data is written at its offset (none at an offset beyond
    /// 2^32); bytes between tensors are zero.
    pub fn tensor_info(
        mut self,
        name: &str,
        ne: Vec<u64>,
        type_id: u32,
        offset: Option<u64>,
        data: Vec<u8>,
    ) -> GgufBuilder {
        self.tensors.push(Tensor {
            name: name.to_owned(),
            ne,
            type_id,
            offset,
            data,
            checked: false,
        });
        self
    }

    /// The file's bytes. Errors (`InvalidInput`) if a tensor added by [`GgufBuilder::tensor_raw`]
    /// has a dtype GGUF cannot store or bytes that do not match its shape.
    pub fn to_bytes(&self) -> io::Result<Vec<u8>> {
        let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
        let pad = |n: u64| n.div_ceil(self.alignment) * self.alignment;
        let mut out = Vec::new();
        out.extend(b"GGUF");
        out.extend(self.version.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.kv.len() as u64).to_le_bytes());
        for (key, value) in &self.kv {
            write_str(&mut out, key);
            out.extend(value.type_id().to_le_bytes());
            value.write(&mut out);
        }
        let mut next = 0u64;
        let mut placed = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            if t.checked {
                let Some(dtype) = ggml::dtype(t.type_id) else {
                    return Err(invalid(format!(
                        "tensor `{}`: dtype not storable in GGUF",
                        t.name
                    )));
                };
                let shape: Vec<usize> = t.ne.iter().map(|&d| d as usize).collect();
                let want = checked_numel(&shape).and_then(|n| dtype.byte_len(n as u64));
                if want != Some(t.data.len() as u64) {
                    return Err(invalid(format!(
                        "tensor `{}`: {} bytes given, ne {:?} of {dtype} needs {want:?}",
                        t.name,
                        t.data.len(),
                        t.ne
                    )));
                }
            }
            let offset = t.offset.unwrap_or(next);
            next = pad(offset.saturating_add(t.data.len() as u64).min(u64::MAX / 2));
            write_str(&mut out, &t.name);
            out.extend((t.ne.len() as u32).to_le_bytes());
            for d in &t.ne {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.type_id.to_le_bytes());
            out.extend(offset.to_le_bytes());
            placed.push(offset);
        }
        let data_start = pad(out.len() as u64) as usize;
        out.resize(data_start, 0);
        for (t, &offset) in self.tensors.iter().zip(&placed) {
            if offset > u64::from(u32::MAX) {
                if t.data.is_empty() {
                    continue;
                }
                return Err(invalid(format!(
                    "tensor `{}`: data at offset {offset}",
                    t.name
                )));
            }
            let at = data_start + offset as usize;
            let end = at + t.data.len();
            if out.len() < end {
                out.resize(end, 0);
            }
            out[at..end].copy_from_slice(&t.data);
            let padded = data_start + pad(offset + t.data.len() as u64) as usize;
            if out.len() < padded {
                out.resize(padded, 0);
            }
        }
        Ok(out)
    }

    /// Writes the file to `path`.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.to_bytes()?)
    }
}

/// Quantizes `values` (a multiple of 32) to Q8_0 blocks exactly as gguf-py's
/// `Q8_0.quantize_blocks` does (itself bit-exact with llama.cpp's `quantize_row_q8_0_ref`):
/// `d = max|x| / 127`, `q = round_half_away(x · (1/d))`, `d` stored as f16. A trailing
/// partial block is ignored.
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / 32 * 34);
    for block in values.chunks_exact(32) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend(f16::from_f32(d).to_le_bytes());
        // `f32::round` rounds half away from zero, as gguf-py's `np_roundf`.
        out.extend(block.iter().map(|&x| (x * id).round() as i8 as u8));
    }
    out
}

/// Quantizes `values` (a multiple of 32) to Q4_0 blocks exactly as gguf-py's
/// `Q4_0.quantize_blocks` does: `max` is the value of largest magnitude (the first, on ties),
/// `d = max / −8`, `q = min(15, trunc(x · (1/d) + 8.5))`, packed low nibbles first.
pub fn quantize_q4_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / 32 * 18);
    for block in values.chunks_exact(32) {
        let mut max = 0f32;
        for &v in block {
            if v.abs() > max.abs() {
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        let q: Vec<u8> = block
            .iter()
            .map(|&x| ((x * id + 8.5).trunc() as u8).min(15))
            .collect();
        out.extend(f16::from_f32(d).to_le_bytes());
        out.extend((0..16).map(|j| q[j] | q[j + 16] << 4));
    }
    out
}
