#!/usr/bin/env python3
"""The baseline people use today: per-tensor cosine and Pearson of two safetensors models
with numpy (tensor loaded, upcast to f32, `np.dot`/`np.linalg.norm` for cosine,
`np.corrcoef` for Pearson). Reads BF16 by widening the bits, as torch's `.float()` does.
Memory-maps the files (as `safetensors.safe_open` does), so it is not slowed by disk.

Usage: bench_numpy_compare.py A.safetensors B.safetensors  -> prints seconds and a checksum
"""

import json
import struct
import sys
import time

import numpy as np


def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    raw = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    return header, raw


def as_f32(info, raw):
    lo, hi = info["data_offsets"]
    if info["dtype"] == "BF16":
        bits = raw[lo:hi].view("<u2").astype(np.uint32) << 16
        return bits.view(np.float32)
    return raw[lo:hi].view({"F32": "<f4", "F16": "<f2"}[info["dtype"]]).astype(np.float32)


def main():
    t = time.perf_counter()
    ha, ra = tensors(sys.argv[1])
    hb, rb = tensors(sys.argv[2])
    total = 0.0
    for name in sorted(ha):
        if name not in hb:
            continue
        a, b = as_f32(ha[name], ra), as_f32(hb[name], rb)
        cos = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
        pearson = float(np.corrcoef(a, b)[0, 1])
        total += cos + pearson
    print(f"numpy_seconds={time.perf_counter() - t:.3f}")
    print(f"checksum={total:.6f}")


if __name__ == "__main__":
    main()
