//! How long a GGUF file's header is, from a prefix of it: the one thing a remote source must
//! know before the GGUF format can open a sparse copy (it then fetches exactly
//! `0..data_start` and nothing else up front).
//!
//! This is a scanner, not a parser: it walks the layout of the GGUF v2/v3 specification
//! (<https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>) — magic, version, counts,
//! key/value pairs, tensor infos, then padding to `general.alignment` — checking every length
//! against the bytes present, and keeps only the alignment. Validating what the header says
//! is `weightkin-format-gguf`'s job once the bytes are local; formats never depend on each
//! other, so the plugin's parser is not reused here.

/// What a prefix says about the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The header and its padding end at this offset (where tensor data starts).
    DataStart(u64),
    /// The prefix ends inside the header: fetch more.
    NeedMore,
    /// Not a GGUF v2/v3 header (fetch the whole file and let the format judge it).
    Unknown,
}

const MAGIC: &[u8] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
const ALIGNMENT_KEY: &[u8] = b"general.alignment";

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// A prefix too short is `Err(true)`; a malformed header is `Err(false)`.
type Step<T> = Result<T, bool>;

impl Cursor<'_> {
    fn take(&mut self, n: u64) -> Step<&[u8]> {
        let n = usize::try_from(n).map_err(|_| true)?;
        let end = self.at.checked_add(n).ok_or(false)?;
        let out = self.bytes.get(self.at..end).ok_or(true)?;
        self.at = end;
        Ok(out)
    }
    fn u32(&mut self) -> Step<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Step<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn string(&mut self) -> Step<&[u8]> {
        let len = self.u64()?;
        self.take(len)
    }
}

/// Size of a fixed-size GGUF value type; `None` for string (8) and array (9).
fn fixed_size(value_type: u32) -> Step<Option<u64>> {
    Ok(Some(match value_type {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        8 | 9 => return Ok(None),
        _ => return Err(false),
    }))
}

/// Skips one value of `value_type`; returns it as a number when it is a u32 (alignment).
fn skip_value(c: &mut Cursor<'_>, value_type: u32, depth: u32) -> Step<Option<u64>> {
    if let Some(size) = fixed_size(value_type)? {
        let b = c.take(size)?;
        return Ok(
            (value_type == 4).then(|| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        );
    }
    if value_type == 8 {
        c.string()?;
        return Ok(None);
    }
    if depth > 4 {
        return Err(false);
    }
    let elem = c.u32()?;
    let count = c.u64()?;
    match fixed_size(elem)? {
        Some(size) => {
            c.take(count.checked_mul(size).ok_or(false)?)?;
        }
        None => {
            for _ in 0..count {
                skip_value(c, elem, depth + 1)?;
            }
        }
    }
    Ok(None)
}

/// Scans `prefix` (the first bytes of a file).
pub fn scan(prefix: &[u8]) -> Scan {
    match scan_inner(prefix) {
        Ok(start) => Scan::DataStart(start),
        Err(true) => Scan::NeedMore,
        Err(false) => Scan::Unknown,
    }
}

fn scan_inner(prefix: &[u8]) -> Step<u64> {
    let mut c = Cursor {
        bytes: prefix,
        at: 0,
    };
    if c.take(4)? != MAGIC {
        return Err(false);
    }
    if !matches!(c.u32()?, 2 | 3) {
        return Err(false);
    }
    let tensors = c.u64()?;
    let kvs = c.u64()?;
    let mut alignment = DEFAULT_ALIGNMENT;
    for _ in 0..kvs {
        let key_is_alignment = c.string()? == ALIGNMENT_KEY;
        let value_type = c.u32()?;
        let value = skip_value(&mut c, value_type, 0)?;
        if key_is_alignment {
            alignment = value.filter(|&a| a > 0).ok_or(false)?;
        }
    }
    for _ in 0..tensors {
        c.string()?;
        let dims = c.u32()?;
        c.take(u64::from(dims).checked_mul(8).ok_or(false)?)?;
        c.u32()?;
        c.u64()?;
    }
    let end = c.at as u64;
    end.checked_next_multiple_of(alignment).ok_or(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn header(alignment: Option<u32>) -> Vec<u8> {
        let mut h = b"GGUF".to_vec();
        h.extend(3u32.to_le_bytes());
        h.extend(1u64.to_le_bytes()); // tensors
        h.extend(2u64.to_le_bytes()); // kvs
        let key = |h: &mut Vec<u8>, k: &[u8]| {
            h.extend((k.len() as u64).to_le_bytes());
            h.extend(k);
        };
        key(&mut h, b"tokenizer.tokens");
        h.extend(9u32.to_le_bytes());
        h.extend(8u32.to_le_bytes());
        h.extend(2u64.to_le_bytes());
        key(&mut h, b"ab");
        key(&mut h, b"c");
        match alignment {
            Some(a) => {
                key(&mut h, ALIGNMENT_KEY);
                h.extend(4u32.to_le_bytes());
                h.extend(a.to_le_bytes());
            }
            None => {
                key(&mut h, b"x");
                h.extend(6u32.to_le_bytes());
                h.extend(1.0f32.to_le_bytes());
            }
        }
        key(&mut h, b"t");
        h.extend(2u32.to_le_bytes());
        h.extend(4u64.to_le_bytes());
        h.extend(2u64.to_le_bytes());
        h.extend(0u32.to_le_bytes());
        h.extend(0u64.to_le_bytes());
        h
    }

    #[test]
    fn finds_the_data_start_and_asks_for_more_when_cut() {
        for (alignment, expect) in [(None, 32u64), (Some(64), 64)] {
            let h = header(alignment);
            let end = h.len() as u64;
            assert_eq!(scan(&h), Scan::DataStart(end.next_multiple_of(expect)));
            for cut in 0..h.len() {
                assert_eq!(scan(&h[..cut]), Scan::NeedMore, "cut at {cut}");
            }
        }
        assert_eq!(scan(b"GGUF\x01\0\0\0"), Scan::Unknown);
        assert_eq!(scan(b"NOPE\x03\0\0\0"), Scan::Unknown);
        let mut h = header(Some(0));
        assert_eq!(scan(&h), Scan::Unknown);
        h.truncate(4);
        assert_eq!(scan(&h), Scan::NeedMore);
    }
}
