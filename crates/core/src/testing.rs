//! Fixture builders for tests of this and downstream crates (feature `testing`).
//!
//! Random test data comes from the workspace's one seeded generator, [`Rng`] (re-exported
//! from [`crate::rng`], where it lives so that non-test code can use it too), through
//! [`uniform_f32`]; tests never keep a generator of their own.
//!
//! Fixtures are built in code rather than committed as binaries, so that a reader sees what a
//! test file contains. Output is byte-for-byte deterministic: tensors are written in name
//! order, `__metadata__` in key order, and the header is padded with spaces to a multiple of
//! 8 bytes, as the `safetensors` crate pads it. The bytes are written by hand (length prefix,
//! JSON, data) rather than by `safetensors::serialize`, whose `__metadata__` is a `HashMap`
//! and so comes out in a different order from run to run.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::ser::{Serialize, SerializeMap, SerializeStruct, Serializer};

use crate::{checked_numel, Dtype};

pub use crate::rng::Rng;

/// `n` values uniform in (`lo`, `hi`], drawn from [`Rng`] seeded with `seed` (computed in f64
/// and rounded once to f32): the same values on every machine.
///
/// ```
/// use weightkin_core::testing::uniform_f32;
/// let v = uniform_f32(1000, 7, -0.5, 0.5);
/// assert!(v.iter().all(|&x| -0.5 <= x && x <= 0.5));
/// assert_eq!(v, uniform_f32(1000, 7, -0.5, 0.5));
/// ```
pub fn uniform_f32(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let (lo, width) = (f64::from(lo), f64::from(hi) - f64::from(lo));
    (0..n)
        .map(|_| (lo + width * rng.uniform()) as f32)
        .collect()
}

/// Builds a safetensors file with chosen tensors and metadata.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use weightkin_core::testing::SafetensorsBuilder;
/// let bytes = SafetensorsBuilder::new()
///     .tensor_f32("w", &[2], &[1.0, 2.0])
///     .metadata("format", "pt")
///     .to_bytes()?;
/// assert_eq!(bytes.len() % 8, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct SafetensorsBuilder {
    tensors: BTreeMap<String, Entry>,
    metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl SafetensorsBuilder {
    /// An empty file (no tensors, no metadata).
    pub fn new() -> SafetensorsBuilder {
        SafetensorsBuilder::default()
    }

    /// Adds (or replaces) an F32 tensor. `values` must hold the shape's element count; that is
    /// checked when the file is built.
    pub fn tensor_f32(self, name: &str, shape: &[usize], values: &[f32]) -> SafetensorsBuilder {
        self.tensor_raw(name, Dtype::F32, shape, f32_bytes(values))
    }

    /// Adds a BF16 tensor, rounding `values` to nearest even.
    pub fn tensor_bf16(self, name: &str, shape: &[usize], values: &[f32]) -> SafetensorsBuilder {
        self.tensor_raw(name, Dtype::BF16, shape, f32_to_bf16_bytes(values))
    }

    /// Adds an F16 tensor, rounding `values` to nearest even.
    pub fn tensor_f16(self, name: &str, shape: &[usize], values: &[f32]) -> SafetensorsBuilder {
        self.tensor_raw(name, Dtype::F16, shape, f32_to_f16_bytes(values))
    }

    /// Adds a tensor of any dtype from its stored bytes (little-endian; packed sub-byte types
    /// as [`pack_f4`] / [`pack_f6`] lay them out).
    pub fn tensor_raw(
        mut self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        bytes: impl Into<Vec<u8>>,
    ) -> SafetensorsBuilder {
        self.tensors.insert(
            name.to_owned(),
            Entry {
                dtype,
                shape: shape.to_vec(),
                bytes: bytes.into(),
            },
        );
        self
    }

    /// Sets a `__metadata__` entry.
    pub fn metadata(mut self, key: &str, value: &str) -> SafetensorsBuilder {
        self.metadata.insert(key.to_owned(), value.to_owned());
        self
    }

    /// The file's bytes. Errors (`InvalidInput`) if a tensor's bytes do not match its shape
    /// and dtype.
    pub fn to_bytes(&self) -> io::Result<Vec<u8>> {
        let mut offset = 0usize;
        let mut infos = Vec::with_capacity(self.tensors.len());
        for (name, t) in &self.tensors {
            let expected = checked_numel(&t.shape).and_then(|n| t.dtype.byte_len(n as u64));
            if expected != Some(t.bytes.len() as u64) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "tensor `{name}`: {} bytes given, shape {:?} of {} needs {expected:?}",
                        t.bytes.len(),
                        t.shape,
                        t.dtype
                    ),
                ));
            }
            let end = offset + t.bytes.len();
            infos.push((name.as_str(), t, (offset, end)));
            offset = end;
        }
        let header = Header {
            metadata: &self.metadata,
            tensors: &infos,
        };
        let json = serde_json::to_string(&header).map_err(io::Error::other)?;
        let data: Vec<&[u8]> = self.tensors.values().map(|t| t.bytes.as_slice()).collect();
        Ok(safetensors_bytes(&json, &data.concat()))
    }

    /// Writes the file to `path`.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.to_bytes()?)
    }
}

/// The header, serialised in a fixed order.
struct Header<'a> {
    metadata: &'a BTreeMap<String, String>,
    tensors: &'a [(&'a str, &'a Entry, (usize, usize))],
}

struct TensorJson<'a>(&'a Entry, (usize, usize));

impl Serialize for Header<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if !self.metadata.is_empty() {
            map.serialize_entry("__metadata__", self.metadata)?;
        }
        for (name, entry, offsets) in self.tensors {
            map.serialize_entry(name, &TensorJson(entry, *offsets))?;
        }
        map.end()
    }
}

impl Serialize for TensorJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("TensorInfo", 3)?;
        st.serialize_field("dtype", self.0.dtype.as_str())?;
        st.serialize_field("shape", &self.0.shape)?;
        st.serialize_field("data_offsets", &[self.1 .0, self.1 .1])?;
        st.end()
    }
}

/// A safetensors file from a header given as text and a data section, for adversarial
/// fixtures: the header is padded with spaces to a multiple of 8 bytes and prefixed with its
/// length, and nothing is checked.
pub fn safetensors_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let padded = header.len().div_ceil(8) * 8;
    let mut out = Vec::with_capacity(8 + padded + data.len());
    out.extend_from_slice(&(padded as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.resize(8 + padded, b' ');
    out.extend_from_slice(data);
    out
}

/// Little-endian F32 bytes.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Little-endian BF16 bytes, rounded to nearest even.
pub fn f32_to_bf16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
        .collect()
}

/// Little-endian F16 bytes, rounded to nearest even.
pub fn f32_to_f16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect()
}

/// Packs 4-bit codes (low 4 bits of each byte) two per byte, element `2i` in the low nibble;
/// an odd count leaves the last high nibble zero. The layout `to_f32` reads for F4.
pub fn pack_f4(codes: &[u8]) -> Vec<u8> {
    codes
        .chunks(2)
        .map(|c| c.iter().rev().fold(0u8, |acc, &v| acc << 4 | (v & 0x0f)))
        .collect()
}

/// Packs 6-bit codes (low 6 bits of each byte) four per three bytes, least significant bit
/// first; a partial last group is padded with zero bits to a whole byte. The layout `to_f32`
/// reads for F6_E2M3 and F6_E3M2.
pub fn pack_f6(codes: &[u8]) -> Vec<u8> {
    let bits = codes.len() * 6;
    let mut out = vec![0u8; bits.div_ceil(8)];
    for (i, &code) in codes.iter().enumerate() {
        let word = u16::from(code & 0x3f) << (i * 6 % 8);
        for (k, b) in word.to_le_bytes().into_iter().enumerate() {
            if let Some(slot) = out.get_mut(i * 6 / 8 + k) {
                *slot |= b;
            }
        }
    }
    out
}

/// An error and its [`source`](std::error::Error::source) chain joined by ": ", as anyhow's
/// alternate form (`{:#}`) prints them: what tests compare a whole error's text against, so
/// that a cause dropped from the chain (or shown twice) fails them.
///
/// ```
/// use std::error::Error;
/// use std::fmt;
/// use weightkin_core::testing::error_chain;
///
/// #[derive(Debug)]
/// struct Render(fmt::Error);
/// impl fmt::Display for Render {
///     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
///         f.write_str("cannot render the report")
///     }
/// }
/// impl Error for Render {
///     fn source(&self) -> Option<&(dyn Error + 'static)> {
///         Some(&self.0)
///     }
/// }
/// assert_eq!(
///     error_chain(&Render(fmt::Error)),
///     "cannot render the report: an error occurred when formatting an argument"
/// );
/// ```
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}
