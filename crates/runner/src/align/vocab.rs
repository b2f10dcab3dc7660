//! A model's vocabulary: the token string of every embedding row, so that two models'
//! embeddings can be matched over the tokens they share (issue 15: the residual basis is
//! recovered from shared-vocabulary rows, and a vocabulary that was extended or reordered
//! must not hide the rows that did not move).
//!
//! # Where the tokens come from
//!
//! In order: the model file itself ([`WeightSource::vocabulary`]: GGUF's
//! `tokenizer.ggml.tokens`); else `tokenizer.json` in the directory of the model's first
//! file (Hugging Face `tokenizers`: `model.vocab` and `added_tokens`); else `vocab.txt` there
//! (one WordPiece token a line, BERT's layout). Row `i` is the token with id `i`; an id no
//! token claims is the empty string, which matches nothing.
//!
//! # Normalisation
//!
//! Tokenizers spell the same text differently, so every token is rewritten to the text it
//! stands for before tokens are compared. What a token's characters mean depends on the
//! tokenizer's [`Scheme`], read from what the tokenizer declares (`tokenizer.json`'s
//! `model.type`, and for BPE its pre-tokenizer and decoder; GGUF's `tokenizer.ggml.model`)
//! and guessed from the tokens only when it declares nothing known:
//!
//! - **Byte-level BPE** (GPT-2, SmolLM2, Llama 3; GGUF `gpt2`): every character stands for one
//!   byte through GPT-2's `bytes_to_unicode` table (`Ġ` is a space, `Ċ` a newline, printable
//!   ASCII and Latin-1 stand for themselves); the bytes are the text.
//! - **SentencePiece** (Llama 2, Gemma, T5; GGUF `llama`, `t5`, and `bert`, whose GGUF
//!   converter rewrites WordPiece into this form): `▁` is a space; a byte-fallback token
//!   `<0xNN>` is the byte `NN`.
//! - **WordPiece** (BERT, MiniLM; `vocab.txt`): `##x` continues a word and is the text `x`;
//!   any other token begins a word and is ` x`, with the leading space the other schemes
//!   spell out.
//! - **Verbatim**: a tokenizer of no known scheme; tokens are compared as stored.
//!
//! In every scheme a bracketed special token (`[CLS]`, `<s>`, `<|endoftext|>`,
//! `<start_of_turn>`: `[…]` or `<…>`, at least three characters, no whitespace) is kept as
//! written, and so are `tokenizer.json`'s added tokens, whose `content` is already text.
//! Bytes that are not valid UTF-8 on their own (a byte-level token for half a character)
//! are written `<0xNN>`, so a byte-level BPE token and a SentencePiece byte-fallback token for
//! the same byte meet.
//!
//! A SentencePiece byte-fallback token whose character is also a piece of its own (`<0x41>`
//! beside `A`) is never produced by the tokenizer — it falls back to bytes only for
//! characters no piece covers — so the piece keeps the text and the byte token keeps its
//! stored form `<0xNN>`, which matches nothing. Any other two rows of one vocabulary that
//! normalise to the same text are ambiguous and left out of [`shared`], which counts them.

use std::collections::HashMap;
use std::path::Path;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use weightkin_core::WeightSource;

use crate::align::beside::{self, FileProblem};
use crate::Error;

/// Most rows a vocabulary may have: 4 Mi. The largest published vocabularies are about
/// 262 k tokens (Gemma 3); sixteen times that bounds what a hostile file can make us allocate.
pub const MAX_TOKENS: u64 = 4 << 20;

/// How a tokenizer spells text in its tokens (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// Byte-level BPE: characters stand for bytes through GPT-2's `bytes_to_unicode`.
    ByteLevel,
    /// SentencePiece: `▁` is a space, `<0xNN>` a byte.
    SentencePiece,
    /// WordPiece: `##` marks a continuation, anything else begins a word.
    WordPiece,
    /// Unknown: tokens compared as stored.
    Verbatim,
}

impl Scheme {
    /// A short name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::ByteLevel => "byte-level BPE",
            Scheme::SentencePiece => "SentencePiece",
            Scheme::WordPiece => "WordPiece",
            Scheme::Verbatim => "verbatim",
        }
    }

    /// The scheme of a GGUF file whose `tokenizer.ggml.model` is `model` (llama.cpp's
    /// `llama_vocab::impl::load`: `gpt2` is byte-level BPE, `llama` SentencePiece, `t5`
    /// SentencePiece unigram, `bert` WordPiece rewritten by the converter to `▁` form).
    fn from_gguf(model: &str) -> Option<Scheme> {
        match model {
            "gpt2" => Some(Scheme::ByteLevel),
            "llama" | "t5" | "bert" => Some(Scheme::SentencePiece),
            _ => None,
        }
    }

    /// The scheme the tokens themselves suggest: the word-start marker most of them carry
    /// (`Ġ`, `▁`, or `##` on continuations), when at least 5 % do; otherwise verbatim.
    fn guess(tokens: &[String]) -> Scheme {
        let count = |f: &dyn Fn(&str) -> bool| tokens.iter().filter(|t| f(t)).count();
        let candidates = [
            (count(&|t| t.starts_with('Ġ')), Scheme::ByteLevel),
            (count(&|t| t.starts_with('▁')), Scheme::SentencePiece),
            (count(&|t| t.starts_with("##")), Scheme::WordPiece),
        ];
        let (n, scheme) = candidates
            .iter()
            .copied()
            .max_by_key(|&(n, _)| n)
            .unwrap_or((0, Scheme::Verbatim));
        if n > 0 && n * 20 >= tokens.len() {
            scheme
        } else {
            Scheme::Verbatim
        }
    }
}

/// A model's vocabulary: normalised token strings in row order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocabulary {
    /// The normalised text of each row's token (see the module documentation); `""` for a
    /// row no token claims.
    pub tokens: Vec<String>,
    /// Where they came from, for the report, e.g. "GGUF metadata `tokenizer.ggml.tokens`" or
    /// "`tokenizer.json` beside model.safetensors".
    pub source: String,
    /// How the stored tokens were read.
    pub scheme: Scheme,
}

/// Loads the vocabulary of a model: from the source itself (GGUF), else `tokenizer.json`,
/// else `vocab.txt` in the directory of the model's first file (`source.files()[0].path`).
/// `Ok(None)` when none is present. `Err` ([`Error::ModelFile`], naming the file and what was
/// expected) when a present file is malformed.
pub fn vocabulary(source: &dyn WeightSource) -> Result<Option<Vocabulary>, Error> {
    if let Some(stored) = source.vocabulary() {
        let declared = source
            .metadata()
            .get("tokenizer.ggml.model")
            .map(|v| unquote(v))
            .and_then(Scheme::from_gguf);
        let scheme = declared.unwrap_or_else(|| Scheme::guess(stored));
        let mut tokens: Vec<String> = stored.iter().map(|t| normalise(t, scheme)).collect();
        if scheme == Scheme::SentencePiece {
            unused_byte_tokens(stored.iter().map(String::as_str), &mut tokens);
        }
        return Ok(Some(Vocabulary {
            tokens,
            source: "GGUF metadata `tokenizer.ggml.tokens`".to_owned(),
            scheme,
        }));
    }
    let Some((dir, first)) = beside::first_file(source) else {
        return Ok(None);
    };
    let json = dir.join("tokenizer.json");
    if let Some(text) = beside::read_text(&json)? {
        let (tokens, scheme) = from_tokenizer_json(&json, &text)?;
        return Ok(Some(Vocabulary {
            tokens,
            source: format!("`tokenizer.json` beside {first}"),
            scheme,
        }));
    }
    let txt = dir.join("vocab.txt");
    if let Some(text) = beside::read_text(&txt)? {
        let tokens = from_vocab_txt(&txt, &text)?;
        return Ok(Some(Vocabulary {
            tokens,
            source: format!("`vocab.txt` beside {first}"),
            scheme: Scheme::WordPiece,
        }));
    }
    Ok(None)
}

/// The rows two vocabularies share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shared {
    /// (row in A, row in B) for each token present exactly once in both, sorted by A's row.
    pub rows: Vec<(usize, usize)>,
    /// Tokens occurring more than once after normalisation in A (distinct texts, not rows),
    /// left out.
    pub duplicates_a: usize,
    /// The same for B.
    pub duplicates_b: usize,
}

/// The rows of `a` and `b` whose tokens are the same text, each present exactly once in both
/// vocabularies (empty rows match nothing).
pub fn shared(a: &Vocabulary, b: &Vocabulary) -> Shared {
    let (index_a, duplicates_a) = unique_rows(&a.tokens);
    let (index_b, duplicates_b) = unique_rows(&b.tokens);
    let mut rows: Vec<(usize, usize)> = index_a
        .iter()
        .filter_map(|(token, &ra)| Some((ra?, (*index_b.get(token)?)?)))
        .collect();
    rows.sort_unstable();
    Shared {
        rows,
        duplicates_a,
        duplicates_b,
    }
}

/// Each non-empty token's row, or `None` when it occurs more than once; and how many tokens
/// occur more than once.
fn unique_rows(tokens: &[String]) -> (HashMap<&str, Option<usize>>, usize) {
    let mut index: HashMap<&str, Option<usize>> = HashMap::with_capacity(tokens.len());
    let mut duplicates = 0;
    for (row, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            continue;
        }
        index
            .entry(token)
            .and_modify(|r| {
                if r.take().is_some() {
                    duplicates += 1;
                }
            })
            .or_insert(Some(row));
    }
    (index, duplicates)
}

/// Gives SentencePiece byte-fallback tokens (`<0xNN>`) whose text some other token also
/// spells their stored form back: SentencePiece falls back to bytes only for characters none
/// of its pieces cover, so `<0x21>` is never produced when `!` is a piece, and the piece is
/// the row that means `!`. `stored` parallels `tokens`.
fn unused_byte_tokens<'a>(stored: impl Iterator<Item = &'a str> + Clone, tokens: &mut [String]) {
    let pieces: std::collections::HashSet<&str> = stored
        .clone()
        .zip(tokens.iter())
        .filter(|(raw, _)| byte_token(raw).is_none())
        .map(|(_, text)| text.as_str())
        .collect();
    let unused: Vec<(usize, &str)> = stored
        .enumerate()
        .filter(|&(i, raw)| {
            byte_token(raw).is_some() && tokens.get(i).is_some_and(|t| pieces.contains(t.as_str()))
        })
        .collect();
    drop(pieces);
    for (i, raw) in unused {
        if let Some(t) = tokens.get_mut(i) {
            *t = raw.to_owned();
        }
    }
}

/// A metadata text without the quotes GGUF's metadata printer puts around strings.
fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// The text stored token `token` stands for under `scheme` (see the module documentation).
pub fn normalise(token: &str, scheme: Scheme) -> String {
    if let Some(byte) = byte_token(token) {
        if scheme == Scheme::SentencePiece {
            return render(&[byte]);
        }
    }
    if is_special(token) {
        return token.to_owned();
    }
    match scheme {
        Scheme::Verbatim => token.to_owned(),
        Scheme::SentencePiece => token.replace('▁', " "),
        Scheme::WordPiece => match token.strip_prefix("##") {
            Some(rest) if !rest.is_empty() => rest.to_owned(),
            _ => format!(" {token}"),
        },
        Scheme::ByteLevel => {
            let mut bytes = Vec::with_capacity(token.len());
            for c in token.chars() {
                match gpt2_byte(c) {
                    Some(b) => bytes.push(b),
                    None => {
                        let mut buf = [0u8; 4];
                        bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                }
            }
            render(&bytes)
        }
    }
}

/// A bracketed special token: `[…]` or `<…>`, at least three characters, no whitespace.
fn is_special(token: &str) -> bool {
    let bracketed = (token.starts_with('[') && token.ends_with(']'))
        || (token.starts_with('<') && token.ends_with('>'));
    bracketed && token.chars().count() >= 3 && !token.chars().any(char::is_whitespace)
}

/// The byte of a SentencePiece byte-fallback token `<0xNN>`.
fn byte_token(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Bytes as text: valid UTF-8 as itself, every other byte as `<0xNN>`.
fn render(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("<0x{b:02X}>"));
        }
    }
    out
}

/// The byte GPT-2's `bytes_to_unicode` maps to `c` (`encoder.py` in openai/gpt-2): the bytes
/// `!`..=`~`, `¡`..=`¬` and `®`..=`ÿ` stand for themselves; the other 68 bytes, in
/// increasing order, are U+0100, U+0101, ….
fn gpt2_byte(c: char) -> Option<u8> {
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    let code = u32::from(c);
    if code < 0x100 {
        return printable(code).then_some(code as u8);
    }
    let nth = code - 0x100;
    (0u32..0x100)
        .filter(|&b| !printable(b))
        .nth(nth as usize)
        .map(|b| b as u8)
}

/// The parts of a `tokenizer.json` read here; everything else (normalizer, merges, …) is
/// skipped.
#[derive(Deserialize)]
struct TokenizerJson {
    model: ModelJson,
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
    #[serde(default)]
    pre_tokenizer: Option<serde_json::Value>,
    #[serde(default)]
    decoder: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ModelJson {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    vocab: VocabJson,
}

#[derive(Deserialize)]
struct AddedToken {
    id: u64,
    content: String,
}

/// `model.vocab`: a map token → id (BPE, WordPiece, WordLevel) or a list of `[token, score]`
/// whose positions are the ids (Unigram). Entries are kept in file order, duplicates
/// included, so that they can be reported.
enum VocabJson {
    Map(Vec<(String, u64)>),
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for VocabJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<VocabJson, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = VocabJson;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of token to id, or a list of [token, score]")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<VocabJson, A::Error> {
                let mut out = Vec::new();
                while let Some((token, id)) = m.next_entry::<String, u64>()? {
                    if out.len() as u64 >= MAX_TOKENS {
                        return Err(de::Error::custom(format_args!(
                            "more than {MAX_TOKENS} tokens"
                        )));
                    }
                    out.push((token, id));
                }
                Ok(VocabJson::Map(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<VocabJson, A::Error> {
                let mut out = Vec::new();
                while let Some((token, _score)) = s.next_element::<(String, IgnoredAny)>()? {
                    if out.len() as u64 >= MAX_TOKENS {
                        return Err(de::Error::custom(format_args!(
                            "more than {MAX_TOKENS} tokens"
                        )));
                    }
                    out.push(token);
                }
                Ok(VocabJson::List(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether a `tokenizer.json` component (pre-tokenizer or decoder, possibly a `Sequence`)
/// contains a step of type `kind`, or a `Replace` of `▁` when `kind` is `Metaspace`.
fn has_step(v: &serde_json::Value, kind: &str) -> bool {
    match v {
        serde_json::Value::Object(m) => {
            let ty = m.get("type").and_then(|t| t.as_str());
            if ty == Some(kind) {
                return true;
            }
            if kind == "Metaspace" && ty == Some("Replace") {
                let pattern = m.get("pattern").and_then(|p| p.get("String"));
                if pattern.and_then(|p| p.as_str()) == Some("▁") {
                    return true;
                }
            }
            m.values().any(|x| has_step(x, kind))
        }
        serde_json::Value::Array(a) => a.iter().any(|x| has_step(x, kind)),
        _ => false,
    }
}

/// Reads a `tokenizer.json` (already read from `path` as `text`): normalised tokens by id,
/// and the scheme.
fn from_tokenizer_json(path: &Path, text: &str) -> Result<(Vec<String>, Scheme), Error> {
    let fail = |p| beside::error(path, p);
    let parsed: TokenizerJson =
        serde_json::from_str(text).map_err(|e| fail(FileProblem::Json(e)))?;
    let declared = parsed.model.kind.as_deref();
    let steps = [parsed.pre_tokenizer.as_ref(), parsed.decoder.as_ref()];
    let step = |kind: &str| steps.iter().flatten().any(|v| has_step(v, kind));
    let (entries, unigram) = match parsed.model.vocab {
        VocabJson::Map(m) => (m, false),
        VocabJson::List(l) => (l.into_iter().zip(0u64..).collect(), true),
    };
    let raw: Vec<String> = entries.iter().map(|(t, _)| t.clone()).collect();
    let scheme = match declared {
        Some("WordPiece") => Scheme::WordPiece,
        Some("Unigram") => Scheme::SentencePiece,
        None if unigram => Scheme::SentencePiece,
        Some("BPE") | None if step("ByteLevel") => Scheme::ByteLevel,
        Some("BPE") | None if step("Metaspace") => Scheme::SentencePiece,
        _ => Scheme::guess(&raw),
    };
    drop(raw);

    let count = entries.len() as u64 + parsed.added_tokens.len() as u64;
    if count > MAX_TOKENS {
        return Err(fail(FileProblem::TooManyTokens { limit: MAX_TOKENS }));
    }
    // Ids must be rows of an embedding: below the cap and not so sparse that the gaps
    // outnumber the tokens by far (a hostile id would otherwise size the table).
    let limit = MAX_TOKENS.min(count.saturating_mul(2).saturating_add(1024));
    let mut seen = std::collections::HashSet::new();
    for (token, _) in &entries {
        if !seen.insert(token.as_str()) {
            return Err(fail(FileProblem::DuplicateToken {
                key: "model.vocab".to_owned(),
                token: token.clone(),
            }));
        }
    }
    drop(seen);
    // Each id's (stored token, normalised text); added tokens are text already.
    let mut rows: Vec<Option<(String, String)>> = Vec::new();
    let vocab = entries
        .into_iter()
        .map(|(t, id)| (id, normalise(&t, scheme), t));
    let added = parsed
        .added_tokens
        .into_iter()
        .map(|a| (a.id, a.content.clone(), a.content));
    for (id, text, stored) in vocab.chain(added) {
        if id >= limit {
            return Err(fail(FileProblem::IdOutOfRange {
                token: stored,
                id,
                limit,
            }));
        }
        let i = id as usize; // below MAX_TOKENS
        if rows.len() <= i {
            rows.resize(i + 1, None);
        }
        match &rows[i] {
            // An added token restating its vocabulary entry (BERT's `[CLS]`, Gemma's
            // specials) is the same row.
            Some((first, _)) if *first == stored => {}
            Some((first, _)) => {
                return Err(fail(FileProblem::DuplicateId {
                    id,
                    first: first.clone(),
                    second: stored,
                }))
            }
            None => rows[i] = Some((stored, text)),
        }
    }
    let stored: Vec<&str> = rows
        .iter()
        .map(|r| r.as_ref().map_or("", |(t, _)| t.as_str()))
        .collect();
    let mut tokens: Vec<String> = rows
        .iter()
        .map(|r| r.as_ref().map(|(_, text)| text.clone()).unwrap_or_default())
        .collect();
    if scheme == Scheme::SentencePiece {
        unused_byte_tokens(stored.iter().copied(), &mut tokens);
    }
    Ok((tokens, scheme))
}

/// Reads a `vocab.txt` (already read from `path` as `text`): one WordPiece token a line, the
/// line number its id.
fn from_vocab_txt(path: &Path, text: &str) -> Result<Vec<String>, Error> {
    let mut tokens = Vec::new();
    for line in text.lines() {
        if tokens.len() as u64 >= MAX_TOKENS {
            return Err(beside::error(
                path,
                FileProblem::TooManyTokens { limit: MAX_TOKENS },
            ));
        }
        tokens.push(normalise(line, Scheme::WordPiece));
    }
    Ok(tokens)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn vocab(tokens: &[&str]) -> Vocabulary {
        Vocabulary {
            tokens: tokens.iter().map(|t| (*t).to_owned()).collect(),
            source: "test".to_owned(),
            scheme: Scheme::Verbatim,
        }
    }

    #[test]
    fn gpt2_byte_table_is_a_bijection() {
        let mut seen = [false; 256];
        for c in (0u32..0x200).filter_map(char::from_u32) {
            if let Some(b) = gpt2_byte(c) {
                assert!(!seen[b as usize], "byte {b} mapped twice");
                seen[b as usize] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
        // Fixed points of the table (`encoder.py`): space is U+0120 `Ġ`, newline U+010A `Ċ`,
        // NUL U+0100, DEL (0x7F) U+0121 after the 33 control bytes and space.
        assert_eq!(gpt2_byte('Ġ'), Some(b' '));
        assert_eq!(gpt2_byte('Ċ'), Some(b'\n'));
        assert_eq!(gpt2_byte('ĉ'), Some(b'\t'));
        assert_eq!(gpt2_byte('Ā'), Some(0));
        assert_eq!(gpt2_byte('ġ'), Some(0x7F));
        assert_eq!(gpt2_byte('a'), Some(b'a'));
        assert_eq!(gpt2_byte('é'), Some(0xE9));
        assert_eq!(gpt2_byte('▁'), None);
    }

    #[test]
    fn the_three_schemes_meet() {
        let bpe = |t| normalise(t, Scheme::ByteLevel);
        let spm = |t| normalise(t, Scheme::SentencePiece);
        let wp = |t| normalise(t, Scheme::WordPiece);
        // Word-initial.
        assert_eq!(bpe("Ġthe"), " the");
        assert_eq!(spm("▁the"), " the");
        assert_eq!(wp("the"), " the");
        // Continuations.
        assert_eq!(bpe("ing"), "ing");
        assert_eq!(spm("ing"), "ing");
        assert_eq!(wp("##ing"), "ing");
        // Bytes: a newline, and half of a UTF-8 character ("é" is C3 A9).
        assert_eq!(bpe("Ċ"), "\n");
        assert_eq!(spm("<0x0A>"), "\n");
        assert_eq!(bpe("Ã"), "<0xC3>");
        assert_eq!(spm("<0xC3>"), "<0xC3>");
        assert_eq!(bpe("Ã©"), "é");
        assert_eq!(bpe("ĠÃ©t"), " ét");
        // Specials stay as written; `##` alone is a word.
        for s in ["[CLS]", "<s>", "<|endoftext|>", "<start_of_turn>"] {
            assert_eq!(bpe(s), s);
            assert_eq!(spm(s), s);
            assert_eq!(wp(s), s);
        }
        assert_eq!(wp("##"), " ##");
        assert_eq!(spm("▁▁"), "  ");
        assert_eq!(normalise("Ġx", Scheme::Verbatim), "Ġx");
    }

    #[test]
    fn guesses_the_scheme_from_the_tokens() {
        let t = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(Scheme::guess(&t(&["Ġa", "b", "Ġc"])), Scheme::ByteLevel);
        assert_eq!(Scheme::guess(&t(&["▁a", "b", "c"])), Scheme::SentencePiece);
        assert_eq!(Scheme::guess(&t(&["a", "##b", "c"])), Scheme::WordPiece);
        assert_eq!(Scheme::guess(&t(&["a", "b", "c"])), Scheme::Verbatim);
        assert_eq!(Scheme::guess(&[]), Scheme::Verbatim);
    }

    #[test]
    fn shared_rows_leave_out_duplicates_and_empty_rows() {
        let a = vocab(&["x", "y", "dup", "z", "dup", "", "only-a"]);
        let b = vocab(&["z", "", "dup", "y", "x", "x", "w"]);
        let s = shared(&a, &b);
        // "x" is twice in B, "dup" twice in A: only "y" and "z" are shared.
        assert_eq!(s.rows, [(1, 3), (3, 0)]);
        assert_eq!(s.duplicates_a, 1);
        assert_eq!(s.duplicates_b, 1);
        // A token three times is one duplicate.
        let c = vocab(&["q", "q", "q"]);
        assert_eq!(shared(&c, &c).duplicates_a, 1);
        assert!(shared(&c, &c).rows.is_empty());
    }

    fn parse(json: &str) -> Result<(Vec<String>, Scheme), Error> {
        from_tokenizer_json(Path::new("dir/tokenizer.json"), json)
    }

    fn problem(json: &str) -> FileProblem {
        match parse(json) {
            Err(Error::ModelFile { path, problem }) => {
                assert_eq!(path, Path::new("dir/tokenizer.json"));
                problem
            }
            other => panic!("expected a file problem, got {other:?}"),
        }
    }

    #[test]
    fn reads_tokenizer_json_of_each_model_type() {
        let wordpiece = r###"{"model": {"type": "WordPiece", "vocab": {"[PAD]": 0, "the": 2, "##s": 1}},
            "added_tokens": [{"id": 0, "content": "[PAD]"}, {"id": 3, "content": "[MASK]"}]}"###;
        let (tokens, scheme) = parse(wordpiece).unwrap();
        assert_eq!(scheme, Scheme::WordPiece);
        assert_eq!(tokens, ["[PAD]", "s", " the", "[MASK]"]);

        let bpe = r#"{"model": {"type": "BPE", "vocab": {"Ġthe": 0, "s": 1}, "merges": []},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "ByteLevel"}]},
            "added_tokens": [{"id": 3, "content": "<|im_start|>"}]}"#;
        let (tokens, scheme) = parse(bpe).unwrap();
        assert_eq!(scheme, Scheme::ByteLevel);
        // Id 2 is claimed by no token: an empty row.
        assert_eq!(tokens, [" the", "s", "", "<|im_start|>"]);

        let unigram = r#"{"model": {"type": "Unigram", "vocab": [["<unk>", 0.0], ["▁the", -1.5], ["<0x0A>", 0]]}}"#;
        let (tokens, scheme) = parse(unigram).unwrap();
        assert_eq!(scheme, Scheme::SentencePiece);
        assert_eq!(tokens, ["<unk>", " the", "\n"]);

        // A Llama-2-style BPE (SentencePiece pieces, `▁` replaced by the decoder).
        let spm_bpe = r#"{"model": {"type": "BPE", "vocab": {"▁a": 0, "b": 1}},
            "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}]}}"#;
        assert_eq!(parse(spm_bpe).unwrap().1, Scheme::SentencePiece);
    }

    #[test]
    fn malformed_tokenizer_json_is_a_clear_error() {
        let good = r#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}}}"#;
        assert!(parse(good).is_ok());
        let truncated = &good[..good.len() - 5];
        assert!(matches!(problem(truncated), FileProblem::Json(_)));
        assert!(matches!(
            problem(r#"{"model": {"vocab": 3}}"#),
            FileProblem::Json(_)
        ));
        assert!(matches!(
            problem(r#"{"model": {"vocab": {"a": -1}}}"#),
            FileProblem::Json(_)
        ));
        match problem(r#"{"model": {"vocab": {"a": 0, "b": 0}}}"#) {
            FileProblem::DuplicateId { id, first, second } => {
                assert_eq!((id, first.as_str(), second.as_str()), (0, "a", "b"));
            }
            p => panic!("{p:?}"),
        }
        match problem(r#"{"model": {"vocab": {"a": 0, "b": 99999999}}}"#) {
            FileProblem::IdOutOfRange { token, id, limit } => {
                assert_eq!((token.as_str(), id), ("b", 99_999_999));
                assert!(limit < id);
            }
            p => panic!("{p:?}"),
        }
        assert!(matches!(
            problem(r#"{"model": {"vocab": {"a": 0, "a": 1}}}"#),
            FileProblem::DuplicateToken { .. }
        ));
        // An added token on a vocabulary id with other content.
        assert!(matches!(
            problem(
                r#"{"model": {"vocab": {"a": 0}}, "added_tokens": [{"id": 0, "content": "<x>"}]}"#
            ),
            FileProblem::DuplicateId { .. }
        ));
        // The error names the file and the problem.
        let e = parse(truncated).unwrap_err();
        let text = weightkin_core::testing::error_chain(&e);
        assert!(text.contains("dir/tokenizer.json"), "{text}");
    }

    #[test]
    fn byte_tokens_give_way_to_pieces() {
        let unigram = r#"{"model": {"type": "Unigram", "vocab": [["<0x21>", 0], ["!", 0], ["<0x0A>", 0], ["<0xC3>", 0], ["▁", 0]]}}"#;
        let (tokens, _) = parse(unigram).unwrap();
        // `!` is a piece, so `<0x21>` is unused; no piece is a newline or half a character.
        assert_eq!(tokens, ["<0x21>", "!", "\n", "<0xC3>", " "]);
    }

    #[test]
    fn vocab_txt_is_wordpiece_by_line() {
        let tokens = from_vocab_txt(Path::new("vocab.txt"), "[PAD]\nthe\n##s\r\n").unwrap();
        assert_eq!(tokens, ["[PAD]", " the", "s"]);
    }

    #[test]
    fn looks_beside_the_first_file_and_prefers_tokenizer_json() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model.safetensors");
        weightkin_core::testing::SafetensorsBuilder::new()
            .tensor_f32("w", &[2], &[1.0, 2.0])
            .write(&model)
            .unwrap();
        let reg = crate::registry::builtin().unwrap();
        let open = || {
            reg.open(&model, None, &weightkin_core::Limits::default())
                .unwrap()
        };
        assert_eq!(vocabulary(open().as_ref()).unwrap(), None);

        std::fs::write(dir.path().join("vocab.txt"), "[CLS]\nhello\n").unwrap();
        let v = vocabulary(open().as_ref()).unwrap().unwrap();
        assert_eq!(v.tokens, ["[CLS]", " hello"]);
        assert_eq!(v.source, "`vocab.txt` beside model.safetensors");

        std::fs::write(
            dir.path().join("tokenizer.json"),
            r#"{"model": {"type": "WordPiece", "vocab": {"hi": 0}}}"#,
        )
        .unwrap();
        let v = vocabulary(open().as_ref()).unwrap().unwrap();
        assert_eq!(v.tokens, [" hi"]);
        assert_eq!(v.source, "`tokenizer.json` beside model.safetensors");
        assert_eq!(v.scheme, Scheme::WordPiece);

        std::fs::write(dir.path().join("tokenizer.json"), "{\"model\": ").unwrap();
        assert!(matches!(
            vocabulary(open().as_ref()),
            Err(Error::ModelFile {
                problem: FileProblem::Json(_),
                ..
            })
        ));
    }
}
