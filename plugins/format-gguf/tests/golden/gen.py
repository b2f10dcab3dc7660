#!/usr/bin/env python3
"""Regenerates the golden files of the GGUF tests with llama.cpp's own Python package.

The Rust tests (tests/gguf/*.rs) compare weightkin against these files, so that the reference
is gguf-py -- the package llama.cpp's converter writes every GGUF with -- rather than our own
code. Python is needed only to regenerate them, never to run the tests.

    pip install gguf==0.19.0 numpy
    python3 plugins/format-gguf/tests/golden/gen.py

Writes, next to this script:

* dequant_blocks.gguf -- one tensor per GGML type that gguf.quants can decode (plus F64),
  named after the type in lower case, shape 4 x 1024, filled with random blocks whose scale
  fields are valid (finite f16 / bf16 / f64 scales, E8M0 exponents that do not overflow);
* dequant_expected.gguf -- for each, an F32 tensor of the same name holding what
  gguf.quants.dequantize returns for those bytes (for F64: numpy's round-to-nearest cast);
* writer.gguf -- a small file written by GGUFWriter with metadata of every value type, a
  nested array, a custom alignment, and F32 / F16 / Q8_0 / Q4_0 tensors quantized by
  gguf.quants.quantize from a deterministic input that weightkin's test writer reproduces;
* names.tsv -- `arch <TAB> gguf name <TAB> hf name` for every tensor of the supported
  architectures, the GGUF name computed by gguf-py's TensorNameMap from the HF name.
"""

from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V

HERE = Path(__file__).parent
ROWS, COLS = 4, 1024  # 1024 is a whole number of blocks of every type


def f16_fields(rng, n):
    """n finite f16 values, of both signs, over most of the f16 range (subnormals included)."""
    mant = rng.standard_normal(n)
    exp = rng.integers(-20, 6, size=n).astype(np.float64)
    v = (mant * 2.0 ** exp).astype(np.float16)
    v[~np.isfinite(v)] = np.float16(1.0)
    return v


# Byte offsets of the f16 scale fields in each block (gguf/quants.py, ggml-common.h).
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
    T.TQ1_0: [52], T.TQ2_0: [64],
    T.IQ2_XXS: [0], T.IQ2_XS: [0], T.IQ2_S: [0], T.IQ3_XXS: [0], T.IQ3_S: [0],
    T.IQ1_S: [0], T.IQ4_NL: [0], T.IQ4_XS: [0],
}


def random_blocks(rng, qtype):
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    n = ROWS * COLS // block
    raw = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    if qtype in F16_FIELDS:
        for off in F16_FIELDS[qtype]:
            raw[:, off:off + 2] = f16_fields(rng, n).view(np.uint8).reshape(n, 2)
    elif qtype == T.IQ1_M:
        # The f16 super-scale is spread over the top nibbles of the four u16 scale words.
        d = f16_fields(rng, n).view(np.uint16)
        words = raw[:, 48:56].copy().view(np.uint16).reshape(n, 4) & np.uint16(0x0FFF)
        for i, shift in enumerate([12, 8, 4, 0]):
            words[:, i] |= ((d >> np.uint16(shift)) & np.uint16(0xF)) << np.uint16(12)
        raw[:, 48:56] = words.view(np.uint8).reshape(n, 8)
    elif qtype == T.MXFP4:
        # E8M0 exponents: the edges (subnormal halves at 0 and 1) and a range that cannot
        # overflow when multiplied by the largest code (12).
        e = rng.integers(64, 190, size=n).astype(np.uint8)
        e[:5] = [0, 1, 2, 127, 200]
        raw[:, 0] = e
    elif qtype == T.F32:
        raw = rng.standard_normal(ROWS * COLS).astype(np.float32).view(np.uint8).reshape(n, size)
    elif qtype == T.F16:
        raw = f16_fields(rng, ROWS * COLS).view(np.uint8).reshape(n, size)
    elif qtype == T.BF16:
        x = (rng.standard_normal(ROWS * COLS) * 2.0 ** rng.integers(-30, 30, ROWS * COLS)).astype(np.float32)
        raw = (x.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).reshape(n, size)
    elif qtype == T.F64:
        x = rng.standard_normal(ROWS * COLS) * 2.0 ** rng.integers(-140, 130, ROWS * COLS)
        raw = x.view(np.uint8).reshape(n, size)
    # NVFP4: any UE4M3 scale byte is valid.
    return raw


def expected(raw, qtype):
    if qtype == T.F64:
        with np.errstate(over="ignore"):  # values beyond f32 become infinities, as intended
            return raw.view(np.float64).astype(np.float32)
    return gguf.quants.dequantize(raw, qtype).astype(np.float32)


def gen_dequant():
    rng = np.random.default_rng(20260128)
    types = [T.F32, T.F16, T.BF16, T.F64] + sorted(
        (t for t in gguf.quants._type_traits if t != T.BF16), key=int)
    blocks = gguf.GGUFWriter(HERE / "dequant_blocks.gguf", "weightkin-golden")
    want = gguf.GGUFWriter(HERE / "dequant_expected.gguf", "weightkin-golden")
    for qtype in types:
        raw = random_blocks(rng, qtype)
        _, size = gguf.GGML_QUANT_SIZES[qtype]
        block = gguf.GGML_QUANT_SIZES[qtype][0]
        raw = raw.reshape(ROWS, COLS // block * size)
        values = expected(raw, qtype).reshape(ROWS, COLS)
        name = qtype.name.lower()
        blocks.add_tensor(name, raw, raw_dtype=qtype)
        want.add_tensor(name, values)
    for w in (blocks, want):
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()


def deterministic(n, seed):
    """Values every language computes identically: small integers over a power of two, with
    exact ties for the rounding rules and an all-zero block."""
    i = np.arange(n, dtype=np.int64)
    v = (((i * 7919 + seed * 104729) % 2001) - 1000).astype(np.float32) / np.float32(256)
    if n >= 96:
        v[32:64] = 0  # a zero block: d = 0
        v[64:96] = np.float32(0.5) * (np.arange(32) - 16).astype(np.float32)  # ties
    return v


def gen_writer():
    w = gguf.GGUFWriter(HERE / "writer.gguf", "weightkin-test")
    w.add_custom_alignment(64)
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("t.f32", 0.15625)
    w.add_bool("t.bool", True)
    w.add_string("t.string", "héllo\nworld")
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -(2**62))
    w.add_float64("t.f64", -2.5e-300)
    w.add_array("t.array_i32", [1, 2, 3])  # python ints are written as INT32
    w.add_key_value("t.array_f32", [0.5, -1.0], V.ARRAY, sub_type=V.FLOAT32)
    w.add_array("t.array_str", ["a", "bc", ""])
    w.add_key_value("t.nested", [[1, 2], [3]], V.ARRAY)
    w.add_tensor("f32", deterministic(2 * 40, 1).reshape(2, 40))
    w.add_tensor("f16", deterministic(3, 2).astype(np.float16))
    w.add_tensor("q8_0", gguf.quants.quantize(deterministic(3 * 64 * 2, 3).reshape(6, 64), T.Q8_0),
                 raw_dtype=T.Q8_0)
    w.add_tensor("q4_0", gguf.quants.quantize(deterministic(3 * 64 * 2, 4).reshape(6, 64), T.Q4_0),
                 raw_dtype=T.Q4_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# Hugging Face tensor names per architecture, as the reference transformers checkpoints
# spell them; gguf-py maps each forward to its GGUF name.
LAYER = ["input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
         "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
         "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"]
GLOBAL = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]
QKV_BIAS = ["self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"]
QK_NORM = ["self_attn.q_norm.weight", "self_attn.k_norm.weight"]
GEMMA2 = ["input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
          "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
          "pre_feedforward_layernorm.weight", "post_feedforward_layernorm.weight",
          "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"]
ARCHS = {
    "llama": (GLOBAL, "model.layers.", LAYER + QKV_BIAS + ["block_sparse_moe.gate.weight"]),
    "qwen2": (GLOBAL, "model.layers.", LAYER + QKV_BIAS),
    "qwen2vl": (GLOBAL, "model.layers.", LAYER + QKV_BIAS),
    "qwen3": (GLOBAL, "model.layers.", LAYER + QK_NORM),
    "gemma": (GLOBAL[:2], "model.layers.", LAYER),
    "gemma2": (GLOBAL[:2], "model.layers.", GEMMA2),
    "gemma3": (GLOBAL, "model.layers.", GEMMA2 + QK_NORM),
    "phi3": (GLOBAL, "model.layers.", ["input_layernorm.weight", "self_attn.qkv_proj.weight",
                                       "self_attn.o_proj.weight", "post_attention_layernorm.weight",
                                       "mlp.gate_up_proj.weight", "mlp.down_proj.weight"]),
    "bert": (["embeddings.word_embeddings.weight", "embeddings.token_type_embeddings.weight",
              "embeddings.position_embeddings.weight", "embeddings.LayerNorm.weight",
              "embeddings.LayerNorm.bias"],
             "encoder.layer.",
             [f"{p}.{s}" for p in ["attention.self.query", "attention.self.key",
                                    "attention.self.value", "attention.output.dense",
                                    "attention.output.LayerNorm", "intermediate.dense",
                                    "output.dense", "output.LayerNorm"]
              for s in ["weight", "bias"]]),
}


def gen_names():
    by_name = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}
    lines = []
    for arch, (globals_, prefix, layer) in ARCHS.items():
        model_arch = by_name[arch]
        tmap = gguf.get_tensor_name_map(model_arch, 3)
        allowed = {gguf.TENSOR_NAMES[t] for t in gguf.MODEL_TENSORS[model_arch]}
        hf_names = globals_ + [f"{prefix}{n}.{t}" for n in (0, 2) for t in layer]
        for hf in hf_names:
            g = tmap.get_name(hf, try_suffixes=(".weight", ".bias"))
            if g is None:
                raise SystemExit(f"{arch}: gguf-py maps no GGUF name to {hf}")
            base = g.rsplit(".", 1)[0]
            generic = base if not base.startswith("blk.") else "blk.{bid}." + base.split(".", 2)[2]
            if generic not in allowed:
                raise SystemExit(f"{arch}: {g} is not a tensor of the architecture")
            lines.append(f"{arch}\t{g}\t{hf}")
    (HERE / "names.tsv").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    gen_dequant()
    gen_writer()
    gen_names()
