//! The GGUF header: magic, version, metadata key/values and tensor infos.
//!
//! Layout (llama.cpp `docs/gguf.md`, and `gguf_init_from_file_impl` in `ggml/src/gguf.cpp`,
//! the reader every GGUF file is made for), all little-endian:
//!
//! ```text
//! "GGUF"  u32 version  u64 tensor_count  u64 kv_count
//! kv_count × { string key, u32 type, value }
//! tensor_count × { string name, u32 n_dims, n_dims × u64 ne, u32 ggml_type, u64 offset }
//! padding to `general.alignment` (default 32), then the data section
//! ```
//!
//! A string is a u64 byte length and the bytes; an array value is a u32 element type, a u64
//! count and the elements (which may themselves be arrays). Version 1 used u32 lengths and
//! counts; version 3 only added big-endian files, which are recognised and refused.
//!
//! Every count and length is checked against the bytes that remain before anything is
//! allocated or read, and the whole header against [`Limits::max_header_bytes`]: a hostile
//! header can make the parser do work proportional to the file's size, never more.

use weightkin_core::{HeaderProblem, Limits, TensorProblem};

use crate::Problem;

/// The magic bytes a GGUF file starts with.
pub const MAGIC: &[u8; 4] = b"GGUF";

/// Alignment of the data section and of every tensor's offset when the file does not set
/// `general.alignment` (`GGUF_DEFAULT_ALIGNMENT` in `ggml/include/gguf.h`).
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// The metadata key that sets the alignment (`GGUF_KEY_GENERAL_ALIGNMENT`).
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// Deepest array nesting accepted. The format allows arrays of arrays; llama.cpp's reader
/// refuses any nesting (an array element type of ARRAY is "invalid GGUF type") and gguf-py's
/// writer produces it only when handed nested lists. Eight levels is more than any producer
/// writes and keeps recursion (and the stack) bounded on hostile input.
pub const MAX_ARRAY_DEPTH: usize = 8;

/// Arrays of at most this many elements are kept in memory (for per-layer hyper-parameters,
/// which GGUF stores as arrays for some architectures); longer ones (tokenizer vocabularies,
/// merges, scores) are walked and validated but kept only as a count.
pub const MAX_KEPT_ARRAY: u64 = 1024;

/// Highest tensor rank GGML represents (`GGML_MAX_DIMS` in `ggml/include/ggml.h`); llama.cpp
/// refuses files with more dimensions.
pub const GGML_MAX_DIMS: usize = 4;

/// Smallest encoding of one metadata key/value: an empty key (8), a type (4), a one-byte
/// value. Used to bound `kv_count` by the bytes present before allocating.
const MIN_KV_BYTES: u64 = 13;

/// Smallest encoding of one tensor info: an empty name (8), `n_dims` (4), the type (4) and
/// the offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 24;

/// The type of a metadata value (`enum gguf_type` in `ggml/include/gguf.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// `GGUF_TYPE_UINT8` (0).
    U8,
    /// `GGUF_TYPE_INT8` (1).
    I8,
    /// `GGUF_TYPE_UINT16` (2).
    U16,
    /// `GGUF_TYPE_INT16` (3).
    I16,
    /// `GGUF_TYPE_UINT32` (4).
    U32,
    /// `GGUF_TYPE_INT32` (5).
    I32,
    /// `GGUF_TYPE_FLOAT32` (6).
    F32,
    /// `GGUF_TYPE_BOOL` (7), one byte.
    Bool,
    /// `GGUF_TYPE_STRING` (8).
    String,
    /// `GGUF_TYPE_ARRAY` (9).
    Array,
    /// `GGUF_TYPE_UINT64` (10).
    U64,
    /// `GGUF_TYPE_INT64` (11).
    I64,
    /// `GGUF_TYPE_FLOAT64` (12).
    F64,
}

impl ValueType {
    /// The type with code `id`, if the format defines one.
    pub fn from_id(id: u32) -> Option<ValueType> {
        Some(match id {
            0 => ValueType::U8,
            1 => ValueType::I8,
            2 => ValueType::U16,
            3 => ValueType::I16,
            4 => ValueType::U32,
            5 => ValueType::I32,
            6 => ValueType::F32,
            7 => ValueType::Bool,
            8 => ValueType::String,
            9 => ValueType::Array,
            10 => ValueType::U64,
            11 => ValueType::I64,
            12 => ValueType::F64,
            _ => return None,
        })
    }

    /// Fewest bytes one value of this type occupies (exact for fixed-size types).
    fn min_bytes(self) -> u64 {
        match self {
            ValueType::U8 | ValueType::I8 | ValueType::Bool => 1,
            ValueType::U16 | ValueType::I16 => 2,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 4,
            ValueType::U64 | ValueType::I64 | ValueType::F64 | ValueType::String => 8,
            ValueType::Array => 12,
        }
    }

    /// A short name, plural, for summaries ("49152 strings").
    pub fn plural(self) -> &'static str {
        match self {
            ValueType::U8 => "u8 values",
            ValueType::I8 => "i8 values",
            ValueType::U16 => "u16 values",
            ValueType::I16 => "i16 values",
            ValueType::U32 => "u32 values",
            ValueType::I32 => "i32 values",
            ValueType::F32 => "f32 values",
            ValueType::Bool => "bools",
            ValueType::String => "strings",
            ValueType::Array => "arrays",
            ValueType::U64 => "u64 values",
            ValueType::I64 => "i64 values",
            ValueType::F64 => "f64 values",
        }
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An unsigned integer of any width.
    U64(u64),
    /// A signed integer of any width.
    I64(i64),
    /// An f32.
    F32(f32),
    /// An f64.
    F64(f64),
    /// A boolean (any non-zero byte is true, as in C).
    Bool(bool),
    /// A string, decoded as UTF-8 with invalid sequences replaced.
    String(String),
    /// An array.
    Array(Array),
}

/// An array value: its element type and length, and its elements when short enough to keep.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// Element type.
    pub elem: ValueType,
    /// Number of elements.
    pub len: u64,
    /// The elements, when `len <= MAX_KEPT_ARRAY`.
    pub items: Option<Vec<Value>>,
    /// Offset of the first element from the start of the file (where a long array's elements
    /// can be decoded later, e.g. [`crate::vocab::tokens`]).
    pub offset: u64,
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U64(v) => Some(v),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// One tensor info as written, before validation.
#[derive(Debug, Clone)]
pub struct RawTensor {
    /// The name, decoded as UTF-8 with invalid sequences replaced.
    pub name: String,
    /// Dimensions, fastest-varying first (GGML's `ne`).
    pub dims: Vec<u64>,
    /// The GGML type id.
    pub type_id: u32,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
}

/// One metadata key/value.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key, decoded as UTF-8 with invalid sequences replaced.
    pub key: String,
    /// The value's declared type.
    pub ty: ValueType,
    /// The value.
    pub value: Value,
}

/// A parsed header.
#[derive(Debug, Clone)]
pub struct Header {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata in file order; keys are unique.
    pub metadata: Vec<Entry>,
    /// Tensor infos in file order.
    pub tensors: Vec<RawTensor>,
    /// The alignment in force.
    pub alignment: u64,
    /// Offset of the data section from the start of the file.
    pub data_start: u64,
}

impl Header {
    /// The value of metadata key `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
    }
}

/// Why a header is rejected: a problem with the header as a whole, or with one tensor's info.
#[derive(Debug)]
pub enum Failure {
    /// The header as a whole.
    Header(HeaderProblem),
    /// The info of the named tensor.
    Tensor(String, TensorProblem),
}

impl From<HeaderProblem> for Failure {
    fn from(p: HeaderProblem) -> Failure {
        Failure::Header(p)
    }
}

impl From<Problem> for Failure {
    fn from(p: Problem) -> Failure {
        Failure::Header(p.into())
    }
}

/// A cursor over the header bytes that refuses to read past the file or past the header cap.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Bytes the header may occupy: the smaller of the file and the cap.
    limit: u64,
    max_header: u64,
}

impl<'a> Reader<'a> {
    /// Checks that `n` more bytes are available, naming the first byte that is not.
    fn need(&self, n: u64) -> Result<(), HeaderProblem> {
        let needed = (self.pos as u64).saturating_add(n);
        if needed <= self.limit {
            return Ok(());
        }
        let actual = self.bytes.len() as u64;
        Err(if needed > actual {
            HeaderProblem::Truncated { needed, actual }
        } else {
            HeaderProblem::TooLarge {
                declared: needed,
                limit: self.max_header,
            }
        })
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], HeaderProblem> {
        self.need(n)?;
        let end = self.pos + n as usize; // `need` bounded it by the slice length
        let out = self
            .bytes
            .get(self.pos..end)
            .ok_or(HeaderProblem::Truncated {
                needed: end as u64,
                actual: self.bytes.len() as u64,
            })?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], HeaderProblem> {
        let b = self.take(N as u64)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, HeaderProblem> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, HeaderProblem> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, HeaderProblem> {
        let len = self.u64()?;
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    /// Checks that `count` items of at least `each` bytes can still follow.
    fn need_items(&self, count: u64, each: u64) -> Result<(), HeaderProblem> {
        self.need(count.saturating_mul(each))
    }

    fn value(&mut self, ty: ValueType, key: &str, depth: usize) -> Result<Value, HeaderProblem> {
        Ok(match ty {
            ValueType::U8 => Value::U64(u64::from(self.array::<1>()?[0])),
            ValueType::I8 => Value::I64(i64::from(i8::from_le_bytes(self.array()?))),
            ValueType::U16 => Value::U64(u64::from(u16::from_le_bytes(self.array()?))),
            ValueType::I16 => Value::I64(i64::from(i16::from_le_bytes(self.array()?))),
            ValueType::U32 => Value::U64(u64::from(self.u32()?)),
            ValueType::I32 => Value::I64(i64::from(i32::from_le_bytes(self.array()?))),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array()?)),
            ValueType::Bool => Value::Bool(self.array::<1>()?[0] != 0),
            ValueType::String => Value::String(self.string()?),
            ValueType::U64 => Value::U64(self.u64()?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array()?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array()?)),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(HeaderProblem::TooDeep {
                        depth: depth + 1,
                        limit: MAX_ARRAY_DEPTH,
                    });
                }
                let elem = self.value_type(key)?;
                let len = self.u64()?;
                let offset = self.pos as u64;
                self.need_items(len, elem.min_bytes())?;
                let keep = len <= MAX_KEPT_ARRAY;
                let mut items = Vec::new();
                for _ in 0..len {
                    let v = self.value(elem, key, depth + 1)?;
                    if keep {
                        items.push(v);
                    }
                }
                Value::Array(Array {
                    elem,
                    len,
                    items: keep.then_some(items),
                    offset,
                })
            }
        })
    }

    fn value_type(&mut self, key: &str) -> Result<ValueType, HeaderProblem> {
        let id = self.u32()?;
        ValueType::from_id(id).ok_or_else(|| {
            Problem::UnknownValueType {
                key: key.to_owned(),
                type_id: id,
            }
            .into()
        })
    }
}

/// Parses the header of the GGUF file whose bytes are `bytes`.
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Header, Failure> {
    let mut r = Reader {
        bytes,
        pos: 0,
        limit: (bytes.len() as u64).min(limits.max_header_bytes),
        max_header: limits.max_header_bytes,
    };
    let magic = r.take(4)?;
    if magic != MAGIC {
        return Err(Problem::BadMagic {
            expected: MAGIC,
            found: magic.to_vec(),
        }
        .into());
    }
    let version = r.u32()?;
    check_version(version)?;
    let tensor_count = r.u64()?;
    let kv_count = r.u64()?;
    if tensor_count > limits.max_tensors {
        return Err(HeaderProblem::TooManyTensors {
            count: tensor_count,
            limit: limits.max_tensors,
        }
        .into());
    }
    r.need_items(kv_count, MIN_KV_BYTES)?;

    let mut metadata: Vec<Entry> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..kv_count {
        let key = r.string()?;
        let ty = r.value_type(&key)?;
        let value = r.value(ty, &key, 0)?;
        if !seen.insert(key.clone()) {
            return Err(Problem::DuplicateKey(key).into());
        }
        metadata.push(Entry { key, ty, value });
    }

    // llama.cpp requires `general.alignment` to be a u32 and a power of two.
    let alignment = match metadata.iter().find(|e| e.key == ALIGNMENT_KEY) {
        None => DEFAULT_ALIGNMENT,
        Some(Entry {
            ty: ValueType::U32,
            value: Value::U64(a),
            ..
        }) if a.is_power_of_two() => *a,
        Some(_) => {
            return Err(Problem::BadValue {
                key: ALIGNMENT_KEY.to_owned(),
                expected: "a u32 power of two",
            }
            .into())
        }
    };

    r.need_items(tensor_count, MIN_TENSOR_INFO_BYTES)?;
    // Grown as infos are read, so memory follows the bytes actually present.
    let mut tensors = Vec::new();
    for _ in 0..tensor_count {
        let name = r.string()?;
        let n_dims = r.u32()?;
        let rank_limit = GGML_MAX_DIMS.min(limits.max_rank);
        if n_dims as usize > rank_limit {
            return Err(Failure::Tensor(
                name,
                TensorProblem::RankTooLarge {
                    rank: n_dims as usize,
                    limit: rank_limit,
                },
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(r.u64()?);
        }
        let type_id = r.u32()?;
        let offset = r.u64()?;
        tensors.push(RawTensor {
            name,
            dims,
            type_id,
            offset,
        });
    }

    let end = r.pos as u64;
    let data_start = end
        .checked_next_multiple_of(alignment)
        .ok_or(HeaderProblem::TooLarge {
            declared: end,
            limit: limits.max_header_bytes,
        })?;
    Ok(Header {
        version,
        metadata,
        tensors,
        alignment,
        data_start,
    })
}

/// Accepts versions 2 and 3 (identical for little-endian files); refuses version 1, whose
/// 32-bit lengths llama.cpp dropped in 2023 ("GGUFv1 is no longer supported"), big-endian
/// files (recognised by a byte-swapped version, as llama.cpp does), and anything newer.
fn check_version(version: u32) -> Result<(), HeaderProblem> {
    match version {
        2 | 3 => Ok(()),
        1 => Err(HeaderProblem::Unsupported {
            what: "GGUF version 1".to_owned(),
            reason: "GGUFv1 (32-bit lengths) is no longer read by llama.cpp either; \
                     convert the model again with a current llama.cpp",
        }),
        v if matches!(v.swap_bytes(), 2 | 3) => Err(HeaderProblem::Unsupported {
            what: format!("big-endian GGUF (version {})", v.swap_bytes()),
            reason: "only little-endian GGUF files are read",
        }),
        v => Err(HeaderProblem::Unsupported {
            what: format!("GGUF version {v}"),
            reason: "versions 2 and 3 are supported",
        }),
    }
}
