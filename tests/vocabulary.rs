use weightkin_runner::align::facts::head_counts;
use weightkin_runner::align::vocab::{shared, vocabulary, Scheme, Vocabulary};

use crate::util::{fixture, open_fixture, GEMMA3, MINILM, SMOLLM2};

fn vocab(rel: &str) -> Vocabulary {
    vocabulary(open_fixture(rel).as_ref())
        .unwrap()
        .expect("a vocabulary")
}

/// The row of normalised token `text`.
fn row(v: &Vocabulary, text: &str) -> usize {
    v.tokens
        .iter()
        .position(|t| t == text)
        .unwrap_or_else(|| panic!("{text:?} not in {}", v.source))
}

#[test]
fn minilm_tokenizer_json_and_vocab_txt_agree() {
    let json = vocab(MINILM);
    assert_eq!(json.source, "`tokenizer.json` beside model.safetensors");
    assert_eq!(json.scheme, Scheme::WordPiece);
    assert_eq!(json.tokens.len(), 30522);
    // A tiny model beside a copy of `vocab.txt` alone.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.safetensors");
    weightkin_core::testing::SafetensorsBuilder::new()
        .tensor_f32("w", &[1], &[0.0])
        .write(&model)
        .unwrap();
    let txt = fixture(MINILM).with_file_name("vocab.txt");
    std::fs::copy(txt, dir.path().join("vocab.txt")).unwrap();
    let source = weightkin_runner::registry::builtin()
        .unwrap()
        .open(&model, None, &weightkin_core::Limits::default())
        .unwrap();
    let txt = vocabulary(source.as_ref()).unwrap().unwrap();
    assert_eq!(txt.source, "`vocab.txt` beside model.safetensors");
    assert_eq!(txt.tokens, json.tokens);
    // BERT's layout: [PAD] at 0, [CLS] at 101, "the" at 1996, "##s" at 2015.
    assert_eq!(json.tokens[0], "[PAD]");
    assert_eq!(json.tokens[101], "[CLS]");
    assert_eq!(json.tokens[1996], " the");
    assert_eq!(json.tokens[2015], "s");

    let heads = head_counts(open_fixture(MINILM).as_ref()).unwrap().unwrap();
    assert_eq!((heads.heads, heads.kv_heads), (12, 12));
    assert_eq!(heads.source, "`config.json` beside model.safetensors");
}

#[test]
fn smollm2_and_gemma3_carry_their_tokenizers_and_head_counts() {
    let smol = vocab(SMOLLM2);
    assert_eq!(smol.source, "GGUF metadata `tokenizer.ggml.tokens`");
    assert_eq!(smol.scheme, Scheme::ByteLevel);
    assert_eq!(smol.tokens.len(), 49152);
    assert_eq!(smol.tokens[0], "<|endoftext|>");
    let gemma = vocab(GEMMA3);
    assert_eq!(gemma.scheme, Scheme::SentencePiece);
    assert_eq!(gemma.tokens.len(), 262144);
    assert_eq!(gemma.tokens[2], "<bos>");

    let h = head_counts(open_fixture(SMOLLM2).as_ref())
        .unwrap()
        .unwrap();
    assert_eq!((h.heads, h.kv_heads), (9, 3));
    assert_eq!(h.source, "GGUF metadata `llama.attention.head_count`");
    let h = head_counts(open_fixture(GEMMA3).as_ref()).unwrap().unwrap();
    assert_eq!((h.heads, h.kv_heads), (4, 1));
    assert_eq!(h.source, "GGUF metadata `gemma3.attention.head_count`");
}

#[test]
fn shared_tokens_across_tokenizer_schemes() {
    let minilm = vocab(MINILM);
    let smol = vocab(SMOLLM2);
    let gemma = vocab(GEMMA3);
    for (a, b) in [(&smol, &gemma), (&minilm, &smol), (&minilm, &gemma)] {
        let s = shared(a, b);
        eprintln!(
            "{} × {}: {} shared rows, {} / {} duplicated tokens",
            a.tokens.len(),
            b.tokens.len(),
            s.rows.len(),
            s.duplicates_a,
            s.duplicates_b
        );
        // Most of the smaller vocabulary is ordinary words and pieces the other also has
        // (measured: SmolLM2 × Gemma 3 46 145 of 49 152, MiniLM × SmolLM2 17 307 of 30 522,
        // MiniLM × Gemma 3 22 572); a normalisation that missed a scheme's word marker would
        // share a fraction of that.
        let smaller = a.tokens.len().min(b.tokens.len());
        assert!(2 * s.rows.len() > smaller, "{} of {smaller}", s.rows.len());
        // Sorted by A's row; each row of either side used once.
        assert!(s.rows.windows(2).all(|w| w[0].0 < w[1].0));
        let mut bs: Vec<usize> = s.rows.iter().map(|r| r.1).collect();
        bs.sort_unstable();
        bs.dedup();
        assert_eq!(bs.len(), s.rows.len());
        // Every pair is the same text.
        assert!(s.rows.iter().all(|&(i, j)| a.tokens[i] == b.tokens[j]));
        // Common words in their word-initial and continuation forms are shared.
        for text in [" the", " of", " and", "ing", " model"] {
            let pair = (row(a, text), row(b, text));
            assert!(s.rows.contains(&pair), "{text:?} not shared");
        }
    }
}
