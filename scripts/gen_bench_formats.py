#!/usr/bin/env python3
"""Every format of the compare-throughput benchmark pair (BENCHMARKS.md, "Every format").

Reads the BF16 pair that `gen_bench_models.py small DIR` wrote (DIR/a.safetensors,
DIR/b.safetensors) and writes, for X in a, b:

* `X.f32.safetensors`, `X.f16.safetensors`  - the same tensors widened / rounded
* `X.f32.gguf`, `X.f16.gguf`, `X.q8_0.gguf` - llama-architecture GGUF files written with
  llama.cpp's gguf-py (`pip install gguf`), q/k rows permuted as convert_hf_to_gguf.py does,
  so weightkin's RoPE un-permutation gives back the original rows (the f32 file is an exact
  copy of the BF16 values)
* `X.pt` - a `torch.save` zip archive (BF16 storages, 64-byte aligned members, as torch
  writes them), made with Python's pickle and stand-ins for torch's pickled names; torch is
  not needed (see plugins/format-pytorch/tests/fixtures/gen.py for the same technique)

Files that exist are kept. Nothing here is committed. Needs numpy and gguf.

Usage: gen_bench_formats.py DIR
"""

import collections
import io
import json
import os
import pickle
import struct
import sys
import types
import zipfile

import numpy as np


def read_bf16(path):
    """name -> (shape, uint16 array) of a BF16 safetensors file, in file order."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        data = np.memmap(path, dtype="<u2", mode="r", offset=base)
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "BF16", name
        s, e = t["data_offsets"]
        out[name] = (tuple(t["shape"]), data[s // 2 : e // 2])
    return out


def widen(bits):
    return (bits.astype("<u4") << np.uint32(16)).view("<f4")


def write_safetensors(path, tensors, dtype):
    code, np_dtype = {"F32": ("F32", "<f4"), "F16": ("F16", "<f2")}[dtype]
    header, offset = {}, 0
    for name, (shape, bits) in tensors.items():
        size = int(np.prod(shape)) * np.dtype(np_dtype).itemsize
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for name, (shape, bits) in tensors.items():
            f.write(widen(bits).astype(np_dtype).tobytes())
    os.replace(path + ".tmp", path)


GGUF_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")
    layer, rest = parts[2], ".".join(parts[3:-1])
    return f"blk.{layer}.{GGUF_NAMES[rest]}.weight"


def permute(w, heads):
    """convert_hf_to_gguf.py's LlamaModel.permute."""
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path, tensors, kind):
    import gguf

    hidden = tensors["model.embed_tokens.weight"][0][1]
    layers = 1 + max(int(n.split(".")[2]) for n in tensors if n.startswith("model.layers."))
    mlp = tensors["model.layers.0.mlp.up_proj.weight"][0][0]
    heads = hidden // 64
    w = gguf.GGUFWriter(path + ".tmp", "llama")
    w.add_block_count(layers)
    w.add_context_length(2048)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(mlp)
    w.add_head_count(heads)
    w.add_head_count_kv(heads)
    w.add_layer_norm_rms_eps(1e-5)
    qtype = {
        "f32": gguf.GGMLQuantizationType.F32,
        "f16": gguf.GGMLQuantizationType.F16,
        "q8_0": gguf.GGMLQuantizationType.Q8_0,
    }[kind]
    for name, (shape, bits) in tensors.items():
        x = widen(bits).reshape(shape)
        if name.endswith(("q_proj.weight", "k_proj.weight")):
            x = permute(x, heads)
        t = qtype if len(shape) == 2 else gguf.GGMLQuantizationType.F32
        if t == gguf.GGMLQuantizationType.F32:
            data = np.ascontiguousarray(x, dtype=np.float32)
        elif t == gguf.GGMLQuantizationType.F16:
            data = x.astype(np.float16)
        else:
            data = gguf.quants.quantize(x, t)
        w.add_tensor(gguf_name(name), data, raw_dtype=t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(path + ".tmp", path)


# --- torch.save, without torch -------------------------------------------------------------

def _stand_in(module, name, kind):
    mod = sys.modules.get(module)
    if mod is None:
        mod = types.ModuleType(module)
        sys.modules[module] = mod
    if kind == "class":
        obj = type(name, (), {"__module__": module})
    else:
        def obj():
            pass
        obj.__module__, obj.__name__, obj.__qualname__ = module, name, name
    setattr(mod, name, obj)
    return obj


REBUILD = _stand_in("torch._utils", "_rebuild_tensor_v2", "function")
BF16_STORAGE = _stand_in("torch", "BFloat16Storage", "class")


class _Storage:
    def __init__(self, key, bits):
        self.key, self.bits = key, bits


class _Tensor:
    def __init__(self, storage, shape):
        self.storage, self.shape = storage, tuple(shape)

    def __reduce_ex__(self, protocol):
        stride, acc = [], 1
        for d in reversed(self.shape):
            stride.insert(0, acc)
            acc *= d
        return (REBUILD, (self.storage, 0, self.shape, tuple(stride), False,
                          collections.OrderedDict()))


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", BF16_STORAGE, obj.key, "cpu", int(obj.bits.size))
        return None


def write_pt(path, tensors):
    state = collections.OrderedDict()
    storages = []
    for i, (name, (shape, bits)) in enumerate(tensors.items()):
        s = _Storage(str(i), bits)
        storages.append(s)
        state[name] = _Tensor(s, shape)
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(state)
    prefix = "a"
    with zipfile.ZipFile(path + ".tmp", "w", zipfile.ZIP_STORED) as z:
        def put(member, payload):
            info = zipfile.ZipInfo(f"{prefix}/{member}", date_time=(1980, 1, 1, 0, 0, 0))
            # torch pads each member's local header with an extra field so the data starts
            # on a 64-byte boundary (caffe2's PyTorchStreamWriter, kFieldAlignment).
            name_len = len(info.filename.encode())
            start = z.fp.tell() + 30 + name_len + 4
            pad = -start % 64
            info.extra = struct.pack("<HH", 0x5346, pad) + b"Z" * pad
            z.writestr(info, payload)

        put("data.pkl", buf.getvalue())
        put("byteorder", b"little")
        for s in storages:
            put(f"data/{s.key}", s.bits.tobytes())
        put("version", b"3\n")
    os.replace(path + ".tmp", path)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    for x in ("a", "b"):
        tensors = read_bf16(os.path.join(d, f"{x}.safetensors"))
        jobs = [
            (f"{x}.f32.safetensors", lambda p: write_safetensors(p, tensors, "F32")),
            (f"{x}.f16.safetensors", lambda p: write_safetensors(p, tensors, "F16")),
            (f"{x}.f32.gguf", lambda p: write_gguf(p, tensors, "f32")),
            (f"{x}.f16.gguf", lambda p: write_gguf(p, tensors, "f16")),
            (f"{x}.q8_0.gguf", lambda p: write_gguf(p, tensors, "q8_0")),
            (f"{x}.pt", lambda p: write_pt(p, tensors)),
        ]
        for name, job in jobs:
            path = os.path.join(d, name)
            if not os.path.exists(path):
                job(path)
            print(f"{path}: {os.path.getsize(path) / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
