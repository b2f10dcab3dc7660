//! GGUF metadata as readable text, for `inspect` and reports.
//!
//! Scalars print as themselves, `general.file_type` with its name, strings escaped and cut at
//! [`MAX_STRING_CHARS`] characters (a chat template runs to kilobytes), arrays in full up to
//! [`MAX_LISTED`] elements and otherwise as a summary ("array of 49152 strings"), so that a
//! tokenizer's vocabulary never floods the output. Keys weightkin derives itself start with
//! `gguf.` (no GGUF producer uses that namespace) and are written after the file's own keys,
//! so a file cannot spoof them.

use std::collections::BTreeMap;
use std::fmt::Write;

use weightkin_core::Dtype;

use crate::ggml;
use crate::header::{Header, Value};

/// Strings longer than this many characters are cut, with their byte length noted.
pub const MAX_STRING_CHARS: usize = 120;

/// Arrays of at most this many elements are printed in full.
pub const MAX_LISTED: u64 = 16;

/// The metadata map of a parsed file: its own keys, then `gguf.version`, `gguf.alignment`,
/// `gguf.tensor_types` (a histogram of tensor types) and, when bytes follow the last tensor,
/// `gguf.trailing_bytes`.
pub fn describe(header: &Header, dtypes: &[Dtype], trailing: u64) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in &header.metadata {
        let text = match (e.key.as_str(), &e.value) {
            ("general.file_type", v) => match v.as_u64() {
                Some(ft) => match ggml::file_type_name(ft) {
                    Some(name) => format!("{ft} ({name})"),
                    None => format!("{ft} (unknown file type)"),
                },
                None => value(v),
            },
            (_, v) => value(v),
        };
        out.insert(e.key.clone(), text);
    }
    out.insert("gguf.version".to_owned(), header.version.to_string());
    out.insert("gguf.alignment".to_owned(), header.alignment.to_string());
    let mut histogram: BTreeMap<&str, usize> = BTreeMap::new();
    for d in dtypes {
        *histogram.entry(d.as_str()).or_default() += 1;
    }
    let types = histogram
        .iter()
        .map(|(d, n)| format!("{d}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    out.insert("gguf.tensor_types".to_owned(), types);
    if trailing > 0 {
        out.insert("gguf.trailing_bytes".to_owned(), trailing.to_string());
    }
    out
}

/// One value as text.
pub fn value(v: &Value) -> String {
    match v {
        Value::U64(x) => x.to_string(),
        Value::I64(x) => x.to_string(),
        Value::F32(x) => float(f64::from(*x), x.to_string(), format!("{x:e}")),
        Value::F64(x) => float(*x, x.to_string(), format!("{x:e}")),
        Value::Bool(x) => x.to_string(),
        Value::String(s) => string(s),
        Value::Array(a) => match &a.items {
            Some(items) if a.len <= MAX_LISTED => {
                let parts: Vec<String> = items.iter().map(value).collect();
                format!("[{}]", parts.join(", "))
            }
            _ => format!("array of {} {}", a.len, a.elem.plural()),
        },
    }
}

/// A float in plain decimal, or in exponent notation when plain decimal would run long
/// (`1e-5`, not `0.00001`; `-2.5e-300`, not three hundred zeros). Each text is the shortest
/// that reads back to the same value of its own type.
fn float(x: f64, plain: String, exp: String) -> String {
    let a = x.abs();
    if a != 0.0 && a.is_finite() && !(1e-4..1e16).contains(&a) {
        exp
    } else {
        plain
    }
}

/// A string quoted, with control characters escaped, cut at [`MAX_STRING_CHARS`].
fn string(s: &str) -> String {
    let mut out = String::from("\"");
    for (i, c) in s.chars().enumerate() {
        if i == MAX_STRING_CHARS {
            let _ = write!(out, "…\" ({} bytes)", s.len());
            return out;
        }
        if c.is_control() || c == '"' || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::header::{Array, ValueType};

    #[test]
    fn summarises_long_arrays_and_cuts_long_strings() {
        let long = Value::Array(Array {
            elem: ValueType::String,
            len: 49152,
            items: None,
            offset: 0,
        });
        assert_eq!(value(&long), "array of 49152 strings");
        let short = Value::Array(Array {
            elem: ValueType::U32,
            len: 2,
            items: Some(vec![Value::U64(4), Value::U64(8)]),
            offset: 0,
        });
        assert_eq!(value(&short), "[4, 8]");
        assert_eq!(value(&Value::String("a\nb\"".into())), "\"a\\nb\\\"\"");
        let s = "x".repeat(500);
        assert_eq!(
            value(&Value::String(s)),
            format!("\"{}…\" (500 bytes)", "x".repeat(MAX_STRING_CHARS))
        );
    }
}
