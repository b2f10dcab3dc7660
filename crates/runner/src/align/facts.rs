//! Facts about a model's architecture that its tensors do not state, for alignment: how many
//! attention heads it has, and how many key/value heads (grouped-query attention). A
//! `q_proj` of 576 rows could be 9 heads of 64 or 3 of 192; matching heads as units needs the
//! count, and matching them as GQA groups needs the key/value count too (issue 15).
//!
//! Read from what ships with the weights: GGUF metadata
//! (`{general.architecture}.attention.head_count` and `.head_count_kv`, llama.cpp's
//! `LLM_KV_ATTENTION_HEAD_COUNT{,_KV}`), else the Hugging Face `config.json` beside the
//! model's first file (`num_attention_heads` / `num_key_value_heads`, or the `n_head`,
//! `n_heads`, `num_heads` and `n_head_kv`, `num_kv_heads`, `n_kv_heads` spellings older
//! architectures use; a multimodal config's `text_config` when the top level has none). A
//! missing key/value count means as many as heads (multi-head attention), as both llama.cpp
//! and `transformers` default it. GGUF may store a count per layer; equal per-layer counts
//! are that count, differing ones are refused (no single head count describes the model).

use std::path::Path;

use weightkin_core::WeightSource;

use crate::align::beside::{self, FileProblem};
use crate::Error;

/// Most heads accepted: 65 536, far above any published model (Llama 3.1 405B has 128), so
/// that a hostile count cannot size an allocation.
pub const MAX_HEADS: u64 = 1 << 16;

/// `config.json` keys for the number of attention heads, in the order tried.
const HEAD_KEYS: [&str; 4] = ["num_attention_heads", "n_head", "n_heads", "num_heads"];

/// `config.json` keys for the number of key/value heads, in the order tried.
const KV_KEYS: [&str; 4] = [
    "num_key_value_heads",
    "n_head_kv",
    "num_kv_heads",
    "n_kv_heads",
];

/// A model's attention head counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadCounts {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (equal to `heads` without grouped-query attention; divides it).
    pub kv_heads: usize,
    /// Where they came from, e.g. "GGUF metadata `llama.attention.head_count`" or
    /// "`config.json` beside model.safetensors".
    pub source: String,
}

/// The head counts of a model: from GGUF metadata, else `config.json` beside its first file
/// (see the module documentation). `Ok(None)` when unknown; `Err` ([`Error::ModelFile`]) when
/// a present configuration is malformed or inconsistent (no heads, key/value heads 0, heads
/// not a multiple of key/value heads).
pub fn head_counts(source: &dyn WeightSource) -> Result<Option<HeadCounts>, Error> {
    if let Some(found) = from_gguf(source)? {
        return Ok(Some(found));
    }
    let Some((dir, first)) = beside::first_file(source) else {
        return Ok(None);
    };
    let path = dir.join("config.json");
    let Some(text) = beside::read_text(&path)? else {
        return Ok(None);
    };
    let Some((heads, kv_heads)) = from_config_json(&path, &text)? else {
        return Ok(None);
    };
    Ok(Some(HeadCounts {
        heads,
        kv_heads,
        source: format!("`config.json` beside {first}"),
    }))
}

/// The counts in GGUF metadata, when the source has an architecture and a head count.
fn from_gguf(source: &dyn WeightSource) -> Result<Option<HeadCounts>, Error> {
    let meta = source.metadata();
    let Some(arch) = meta.get("general.architecture") else {
        return Ok(None);
    };
    let arch = arch
        .strip_prefix('"')
        .and_then(|a| a.strip_suffix('"'))
        .unwrap_or(arch);
    let key = format!("{arch}.attention.head_count");
    let Some(heads_text) = meta.get(&key) else {
        return Ok(None);
    };
    let path = source
        .files()
        .first()
        .map(|f| f.path.clone())
        .unwrap_or_default();
    let fail = |key: &str| {
        beside::error(
            &path,
            FileProblem::BadValue {
                key: key.to_owned(),
                expected: "a head count (or one per layer, all equal)",
            },
        )
    };
    let heads = gguf_count(heads_text).ok_or_else(|| fail(&key))?;
    let kv_key = format!("{key}_kv");
    let kv_heads = match meta.get(&kv_key) {
        Some(t) => gguf_count(t).ok_or_else(|| fail(&kv_key))?,
        None => heads,
    };
    let (heads, kv_heads) = checked(&path, heads, kv_heads)?;
    Ok(Some(HeadCounts {
        heads,
        kv_heads,
        source: format!("GGUF metadata `{key}`"),
    }))
}

/// A GGUF count as the metadata printer writes it: `9`, or a per-layer array `[9, 9, 9]`
/// whose elements are all equal (longer arrays are only summarised, so unreadable here).
fn gguf_count(text: &str) -> Option<u64> {
    match text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        None => text.trim().parse().ok(),
        Some(list) => {
            let mut values = list.split(',').map(|v| v.trim().parse::<u64>());
            let first = values.next()?.ok()?;
            values.all(|v| v.ok() == Some(first)).then_some(first)
        }
    }
}

/// Heads and key/value heads from a `config.json` (already read from `path` as `text`);
/// `None` when it names no head count.
fn from_config_json(path: &Path, text: &str) -> Result<Option<(usize, usize)>, Error> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| beside::error(path, FileProblem::Json(e)))?;
    let Some(top) = value.as_object() else {
        return Err(beside::error(
            path,
            FileProblem::BadValue {
                key: "(top level)".to_owned(),
                expected: "a JSON object",
            },
        ));
    };
    // A multimodal model (Gemma 3, Llava, …) keeps its language model's settings here.
    let text_config = top.get("text_config").and_then(|v| v.as_object());
    let levels: Vec<(&serde_json::Map<String, serde_json::Value>, &str)> =
        std::iter::once((top, ""))
            .chain(text_config.map(|t| (t, "text_config.")))
            .collect();
    for (level, prefix) in levels {
        let find = |keys: &[&str]| -> Result<Option<u64>, Error> {
            for key in keys {
                match level.get(*key) {
                    None | Some(serde_json::Value::Null) => continue,
                    Some(v) => {
                        return v.as_u64().map(Some).ok_or_else(|| {
                            beside::error(
                                path,
                                FileProblem::BadValue {
                                    key: format!("{prefix}{key}"),
                                    expected: "a non-negative integer",
                                },
                            )
                        })
                    }
                }
            }
            Ok(None)
        };
        let heads = find(&HEAD_KEYS)?;
        let kv = find(&KV_KEYS)?;
        match (heads, kv) {
            (Some(h), kv) => return checked(path, h, kv.unwrap_or(h)).map(Some),
            (None, Some(_)) => {
                return Err(beside::error(
                    path,
                    FileProblem::BadValue {
                        key: format!("{prefix}num_attention_heads"),
                        expected: "a head count beside the key/value head count",
                    },
                ))
            }
            (None, None) => {}
        }
    }
    Ok(None)
}

/// Checks that `heads` and `kv_heads` describe an attention layer: both at least 1, at most
/// [`MAX_HEADS`], and `kv_heads` dividing `heads`.
fn checked(path: &Path, heads: u64, kv_heads: u64) -> Result<(usize, usize), Error> {
    let ok = (1..=MAX_HEADS).contains(&heads)
        && (1..=MAX_HEADS).contains(&kv_heads)
        && heads.is_multiple_of(kv_heads);
    if !ok {
        return Err(beside::error(
            path,
            FileProblem::InconsistentHeads { heads, kv_heads },
        ));
    }
    // Both at most MAX_HEADS.
    Ok((heads as usize, kv_heads as usize))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn config(json: &str) -> Result<Option<(usize, usize)>, Error> {
        from_config_json(Path::new("m/config.json"), json)
    }

    fn problem(json: &str) -> FileProblem {
        match config(json) {
            Err(Error::ModelFile { path, problem }) => {
                assert_eq!(path, Path::new("m/config.json"));
                problem
            }
            other => panic!("expected a file problem, got {other:?}"),
        }
    }

    #[test]
    fn reads_each_spelling() {
        let c = |j| config(j).unwrap();
        assert_eq!(
            c(r#"{"num_attention_heads": 9, "num_key_value_heads": 3}"#),
            Some((9, 3))
        );
        assert_eq!(c(r#"{"num_attention_heads": 12}"#), Some((12, 12)));
        assert_eq!(c(r#"{"n_head": 16, "n_head_kv": 1}"#), Some((16, 1)));
        assert_eq!(c(r#"{"n_heads": 8, "n_kv_heads": 2}"#), Some((8, 2)));
        assert_eq!(c(r#"{"num_heads": 6, "num_kv_heads": null}"#), Some((6, 6)));
        assert_eq!(
            c(
                r#"{"model_type": "gemma3", "text_config": {"num_attention_heads": 4, "num_key_value_heads": 1}}"#
            ),
            Some((4, 1))
        );
        assert_eq!(c(r#"{"hidden_size": 64}"#), None);
    }

    #[test]
    fn refuses_inconsistent_or_malformed_configs() {
        assert!(matches!(
            problem(r#"{"num_attention_heads": 9, "num_key_value_heads": 0}"#),
            FileProblem::InconsistentHeads {
                heads: 9,
                kv_heads: 0
            }
        ));
        assert!(matches!(
            problem(r#"{"num_attention_heads": 9, "num_key_value_heads": 2}"#),
            FileProblem::InconsistentHeads { .. }
        ));
        assert!(matches!(
            problem(r#"{"num_attention_heads": 0}"#),
            FileProblem::InconsistentHeads { .. }
        ));
        assert!(matches!(
            problem(r#"{"num_attention_heads": "nine"}"#),
            FileProblem::BadValue { .. }
        ));
        assert!(matches!(
            problem(r#"{"num_key_value_heads": 3}"#),
            FileProblem::BadValue { .. }
        ));
        assert!(matches!(
            problem(r#"{"num_attention"#),
            FileProblem::Json(_)
        ));
        assert!(matches!(problem("[1]"), FileProblem::BadValue { .. }));
    }

    #[test]
    fn gguf_counts_scalar_or_equal_per_layer() {
        assert_eq!(gguf_count("9"), Some(9));
        assert_eq!(gguf_count("[4, 4, 4]"), Some(4));
        assert_eq!(gguf_count("[4, 4, 2]"), None);
        assert_eq!(gguf_count("array of 40 u32 values"), None);
        assert_eq!(gguf_count("-1"), None);
    }

    #[test]
    fn reads_gguf_metadata_and_config_beside() {
        use weightkin_format_gguf::testing::{GgufBuilder, Meta};
        let dir = tempfile::tempdir().unwrap();
        let reg = crate::registry::builtin().unwrap();
        let open = |p: &Path| {
            reg.open(p, None, &weightkin_core::Limits::default())
                .unwrap()
        };
        let gguf = dir.path().join("m.gguf");
        GgufBuilder::new("llama")
            .kv("llama.attention.head_count", Meta::U32(9))
            .kv("llama.attention.head_count_kv", Meta::U32(3))
            .tensor_f32("token_embd.weight", &[4, 2], &[0.0; 8])
            .write(&gguf)
            .unwrap();
        let h = head_counts(open(&gguf).as_ref()).unwrap().unwrap();
        assert_eq!((h.heads, h.kv_heads), (9, 3));
        assert_eq!(h.source, "GGUF metadata `llama.attention.head_count`");

        let bad = dir.path().join("bad.gguf");
        GgufBuilder::new("llama")
            .kv("llama.attention.head_count", Meta::U32(9))
            .kv("llama.attention.head_count_kv", Meta::U32(2))
            .write(&bad)
            .unwrap();
        assert!(matches!(
            head_counts(open(&bad).as_ref()),
            Err(Error::ModelFile {
                problem: FileProblem::InconsistentHeads { .. },
                ..
            })
        ));

        let st = dir.path().join("model.safetensors");
        weightkin_core::testing::SafetensorsBuilder::new()
            .tensor_f32("w", &[2], &[1.0, 2.0])
            .write(&st)
            .unwrap();
        assert_eq!(head_counts(open(&st).as_ref()).unwrap(), None);
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"num_attention_heads": 12}"#,
        )
        .unwrap();
        let h = head_counts(open(&st).as_ref()).unwrap().unwrap();
        assert_eq!((h.heads, h.kv_heads), (12, 12));
        assert_eq!(h.source, "`config.json` beside model.safetensors");
    }
}
