#!/usr/bin/env python3
"""A GGUF file's exact f32 dequantisation, for the exact-copy benchmark (BENCHMARKS.md).

Reads SRC with llama.cpp's gguf-py (`pip install gguf`), dequantises every tensor with
gguf-py's reference dequantisers, and writes DST: the same metadata (every key/value but the
writer's own), the same tensor names, every float tensor as F32. Integer tensors are copied
as they are. Nothing here is committed.

Usage: gen_dequant_gguf.py SRC.gguf DST.gguf
"""

import os
import sys

import numpy as np


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    import gguf

    src, dst = sys.argv[1], sys.argv[2]
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst + ".tmp", arch)
    skip = {"general.architecture", "GGUF.version", "GGUF.tensor_count", "GGUF.kv_count"}
    for name, field in r.fields.items():
        if name in skip:
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_key_value(name, field.contents(), vtype, sub_type=field.types[-1])
        else:
            w.add_key_value(name, field.contents(), vtype)
    for t in r.tensors:
        shape = tuple(int(d) for d in reversed(t.shape))
        if t.tensor_type in (gguf.GGMLQuantizationType.I8, gguf.GGMLQuantizationType.I16,
                             gguf.GGMLQuantizationType.I32, gguf.GGMLQuantizationType.I64):
            w.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
            continue
        x = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        w.add_tensor(t.name, x, raw_dtype=gguf.GGMLQuantizationType.F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(dst + ".tmp", dst)
    print(f"{dst}: {os.path.getsize(dst) / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
