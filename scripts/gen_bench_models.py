#!/usr/bin/env python3
"""Synthetic BF16 safetensors checkpoints for the compare-throughput benchmark.

Writes two models into OUT_DIR: `a.safetensors`, a Llama-shaped decoder with random weights,
and `b.safetensors`, the same weights plus small noise (what a fine-tune looks like), so that
`weightkin compare` does the full work of a real audit (every tensor paired, cross-layer
nulls, a `derived` verdict). Nothing here is committed: point OUT_DIR at a cache directory.

Sizes (BF16, 2 bytes per parameter):

* `small`: 24 layers, hidden 1024, MLP 2816, vocab 16384  -> about 0.65 GB per model
* `large`: 24 layers, hidden 2048, MLP 5632, vocab 16384  -> about 2.5 GB per model
* `7b`: 32 layers, hidden 4096, MLP 11008, vocab 32000 (Llama-2-7B's shapes) -> 13.5 GB per
  model (the cold-read benchmark, `scripts/bench-cold.sh`)

The file is written tensor by tensor (header first), so memory stays at one tensor. Needs
numpy only (safetensors' numpy API has no bfloat16, so the header is written by hand, as the
format spec describes: <https://github.com/huggingface/safetensors#format>).

Usage: gen_bench_models.py {small,large,7b} OUT_DIR
"""

import json
import os
import struct
import sys

import numpy as np

SIZES = {
    "small": dict(layers=24, hidden=1024, mlp=2816, vocab=16384),
    "large": dict(layers=24, hidden=2048, mlp=5632, vocab=16384),
    "7b": dict(layers=32, hidden=4096, mlp=11008, vocab=32000),
}


def shapes(layers, hidden, mlp, vocab):
    out = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(layers):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (hidden,)),
            (p + "self_attn.q_proj.weight", (hidden, hidden)),
            (p + "self_attn.k_proj.weight", (hidden, hidden)),
            (p + "self_attn.v_proj.weight", (hidden, hidden)),
            (p + "self_attn.o_proj.weight", (hidden, hidden)),
            (p + "post_attention_layernorm.weight", (hidden,)),
            (p + "mlp.gate_proj.weight", (mlp, hidden)),
            (p + "mlp.up_proj.weight", (mlp, hidden)),
            (p + "mlp.down_proj.weight", (hidden, mlp)),
        ]
    out.append(("model.norm.weight", (hidden,)))
    out.append(("lm_head.weight", (vocab, hidden)))
    return sorted(out)


def to_bf16(x):
    """f32 -> bf16 bits, round to nearest even (as torch does)."""
    bits = x.view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return (rounded >> np.uint32(16)).astype("<u2")


def tensor(name, shape, seed, derived):
    n = int(np.prod(shape))
    rng = np.random.default_rng(seed)
    if "norm" in name:
        x = 1.0 + 0.02 * rng.standard_normal(n, dtype=np.float32)
    else:
        x = (1.0 / np.sqrt(shape[-1])) * rng.standard_normal(n, dtype=np.float32)
    if derived:
        # A fine-tune: the same weights plus noise at 10 % of their spread.
        noise = np.random.default_rng(seed + 1_000_003).standard_normal(n, dtype=np.float32)
        x = x + np.float32(0.1 * float(x.std())) * noise
    return to_bf16(x.astype(np.float32))


def write(path, specs, derived):
    header, offset = {}, 0
    for name, shape in specs:
        nbytes = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for seed, (name, shape) in enumerate(specs):
            f.write(tensor(name, shape, seed, derived).tobytes())
    os.replace(tmp, path)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in SIZES:
        sys.exit(__doc__)
    size, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    specs = shapes(**SIZES[size])
    for model, derived in (("a", False), ("b", True)):
        path = os.path.join(out, f"{model}.safetensors")
        if not os.path.exists(path):
            write(path, specs, derived)
        print(f"{path}: {os.path.getsize(path) / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
