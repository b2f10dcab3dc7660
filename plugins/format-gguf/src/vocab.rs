//! The tokenizer's token strings (`tokenizer.ggml.tokens`), for shared-vocabulary matching.
//!
//! The header parser keeps only short arrays (the header module's `MAX_KEPT_ARRAY`): a
//! vocabulary runs to hundreds of thousands of strings and most callers never look at it. It
//! records where each array's elements start instead, and this module decodes the token
//! array from the mapped bytes when a caller asks ([`weightkin_core::WeightSource::vocabulary`]).
//!
//! The parser has already walked the array and checked every length against the header, but
//! this decoder checks again (it takes any bytes and an offset) and bounds the result by
//! [`MAX_TOKENS`] and [`MAX_TOKEN_BYTES`]; past either, or on any inconsistency, the answer is
//! `None` — the vocabulary is then simply unknown, which callers handle — never a panic.

use crate::header::{Header, Value, ValueType};

/// The metadata key holding the token strings, in id order (`LLM_KV_TOKENIZER_LIST` in
/// llama.cpp's `src/llama-arch.cpp`).
pub const TOKENS_KEY: &str = "tokenizer.ggml.tokens";

/// The metadata key naming the tokenizer model (`gpt2`, `llama`, `bert`, …;
/// `LLM_KV_TOKENIZER_MODEL`).
pub const MODEL_KEY: &str = "tokenizer.ggml.model";

/// Most tokens decoded: 4 Mi. The largest vocabularies published are about 262 k (Gemma 3)
/// and 256 k (PaLM-style SentencePiece); sixteen times that leaves room without letting a
/// header make the decoder allocate without bound.
pub const MAX_TOKENS: u64 = 4 << 20;

/// Most bytes of token text decoded: 256 MiB (a 262 k vocabulary takes about 4 MiB).
pub const MAX_TOKEN_BYTES: u64 = 256 << 20;

/// Where a token array lies in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokensAt {
    /// Offset of the first string (its u64 length) from the start of the file.
    pub offset: u64,
    /// Number of strings.
    pub len: u64,
}

/// Where `tokenizer.ggml.tokens` lies, when the header has it as an array of strings.
pub(crate) fn locate(header: &Header) -> Option<TokensAt> {
    match header.get(TOKENS_KEY)? {
        Value::Array(a) if a.elem == ValueType::String => Some(TokensAt {
            offset: a.offset,
            len: a.len,
        }),
        _ => None,
    }
}

/// Decodes the `at.len` strings at `at.offset` of `bytes` (each a u64 little-endian byte
/// length and the bytes, decoded as UTF-8 with invalid sequences replaced). `None` when the
/// array runs past `bytes`, or holds more than [`MAX_TOKENS`] strings or [`MAX_TOKEN_BYTES`]
/// of text.
pub fn tokens(bytes: &[u8], at: TokensAt) -> Option<Vec<String>> {
    if at.len > MAX_TOKENS {
        return None;
    }
    let mut pos = usize::try_from(at.offset).ok()?;
    let mut text = 0u64;
    let mut out = Vec::new();
    for _ in 0..at.len {
        let end = pos.checked_add(8)?;
        let len_bytes: [u8; 8] = bytes.get(pos..end)?.try_into().ok()?;
        let len = u64::from_le_bytes(len_bytes);
        text = text.checked_add(len)?;
        if text > MAX_TOKEN_BYTES {
            return None;
        }
        let stop = end.checked_add(usize::try_from(len).ok()?)?;
        let s = bytes.get(end..stop)?;
        out.push(String::from_utf8_lossy(s).into_owned());
        pos = stop;
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn encode(tokens: &[&str]) -> Vec<u8> {
        let mut out = vec![0xAA; 3]; // something before the array
        for t in tokens {
            out.extend_from_slice(&(t.len() as u64).to_le_bytes());
            out.extend_from_slice(t.as_bytes());
        }
        out
    }

    #[test]
    fn decodes_in_order() {
        let bytes = encode(&["<s>", "Ġthe", "", "▁a"]);
        let got = tokens(&bytes, TokensAt { offset: 3, len: 4 }).unwrap();
        assert_eq!(got, ["<s>", "Ġthe", "", "▁a"]);
    }

    #[test]
    fn refuses_truncated_and_oversized_arrays() {
        let bytes = encode(&["abc", "de"]);
        // One string more than present.
        assert_eq!(tokens(&bytes, TokensAt { offset: 3, len: 3 }), None);
        // Cut inside the last string.
        assert_eq!(
            tokens(&bytes[..bytes.len() - 1], TokensAt { offset: 3, len: 2 }),
            None
        );
        // Offset past the end, and a count over the cap.
        assert_eq!(
            tokens(
                &bytes,
                TokensAt {
                    offset: 1000,
                    len: 1
                }
            ),
            None
        );
        assert_eq!(
            tokens(
                &bytes,
                TokensAt {
                    offset: 3,
                    len: MAX_TOKENS + 1
                }
            ),
            None
        );
        // A length that claims more than the cap of text.
        let mut huge = vec![0u8; 0];
        huge.extend_from_slice(&(MAX_TOKEN_BYTES + 1).to_le_bytes());
        assert_eq!(tokens(&huge, TokensAt { offset: 0, len: 1 }), None);
        let mut wrap = vec![0u8; 0];
        wrap.extend_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(tokens(&wrap, TokensAt { offset: 0, len: 1 }), None);
    }
}
