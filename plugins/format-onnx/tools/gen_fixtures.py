#!/usr/bin/env python3
"""Generates the committed ONNX fixtures in ../tests/fixtures/ (run from anywhere).

    python3 -m venv /tmp/onnxvenv && /tmp/onnxvenv/bin/pip install onnx numpy safetensors
    /tmp/onnxvenv/bin/python plugins/format-onnx/tools/gen_fixtures.py

Made with onnx 1.23.2, numpy 2.x, safetensors 0.7. Deterministic (seeded), so re-running it
reproduces the files byte for byte with the same package versions.

What it writes, and what each fixture checks:

* `minilm_like.onnx` — a 2-layer BERT-style encoder (hidden 32, 4 heads, intermediate 64)
  exported the way `torch.onnx.export` writes one: every Linear weight stored transposed
  ([in, out]) under a generated name `onnx::MatMul_<n>` and read by a MatMul node named by
  module scope (`/encoder/layer.0/attention/self/query/MatMul`), biases and LayerNorm
  parameters under their PyTorch names, the pooler as a `Gemm` with `transB = 1` reading
  `onnx::Gemm_<n>` stored [out, in], and one generated name no rule recovers
  (`onnx::Mul_<n>`, read by a Mul). `minilm_like.safetensors` holds the same weights under
  their PyTorch names and orientation ([out, in]): weightkin must pair them by name and
  find them identical.
* `external/model.onnx` + `external/weights.bin` — the same model with every tensor in one
  external data file (`onnx.save_model(..., save_as_external_data=True)`).
* `typed.onnx` — one tensor per float data type ONNX defines, each twice: in `raw_data`
  (`<type>_raw`) and in the typed field onnx.proto assigns it (`<type>_typed`: `float_data`,
  `double_data`, `int32_data` bit patterns), plus an unpacked `float_data` (one fixed32 per
  element), and integer tensors (listed, not compared). `typed.safetensors` holds, under the
  same names, the values onnx's own `numpy_helper.to_array` decodes, as F32: weightkin's
  reading of every type must be exact against it.
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures")
rng = np.random.default_rng(19)

HIDDEN, HEADS, INTER, LAYERS, VOCAB, POS = 32, 4, 64, 2, 50, 16


def rand(*shape, scale=0.1):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def transformer():
    """The graph and the PyTorch state dict it was 'exported' from."""
    state = {}  # PyTorch name -> array in PyTorch orientation
    inits, nodes = [], []
    counter = [100]

    def gen(op):
        counter[0] += 7
        return f"onnx::{op}_{counter[0]}"

    def param(name, array):
        state[name] = array
        inits.append(numpy_helper.from_array(array, name))
        return name

    def linear(scope, x, n_in, n_out):
        """A Linear exported as MatMul (weight transposed, generated name) + Add (bias)."""
        module = scope.strip("/").replace("/", ".")
        w = rand(n_out, n_in)
        state[f"{module}.weight"] = w
        stored = gen("MatMul")
        inits.append(numpy_helper.from_array(np.ascontiguousarray(w.T), stored))
        b = param(f"{module}.bias", rand(n_out))
        mm = f"{scope}/MatMul_output_0"
        nodes.append(helper.make_node("MatMul", [x, stored], [mm], name=f"{scope}/MatMul"))
        out = f"{scope}/Add_output_0"
        nodes.append(helper.make_node("Add", [b, mm], [out], name=f"{scope}/Add"))
        return out

    def layernorm(scope, x):
        module = scope.strip("/").replace("/", ".")
        g = param(f"{module}.weight", (1 + rand(HIDDEN)).astype(np.float32))
        b = param(f"{module}.bias", rand(HIDDEN))
        out = f"{scope}/LayerNormalization_output_0"
        nodes.append(
            helper.make_node(
                "LayerNormalization", [x, g, b], [out], name=f"{scope}/LayerNormalization", axis=-1
            )
        )
        return out

    we = param("embeddings.word_embeddings.weight", rand(VOCAB, HIDDEN))
    pe = param("embeddings.position_embeddings.weight", rand(POS, HIDDEN))
    nodes.append(helper.make_node("Gather", [we, "input_ids"], ["/embeddings/word_embeddings/Gather_output_0"], name="/embeddings/word_embeddings/Gather"))
    nodes.append(helper.make_node("Gather", [pe, "position_ids"], ["/embeddings/position_embeddings/Gather_output_0"], name="/embeddings/position_embeddings/Gather"))
    nodes.append(helper.make_node("Add", ["/embeddings/word_embeddings/Gather_output_0", "/embeddings/position_embeddings/Gather_output_0"], ["/embeddings/Add_output_0"], name="/embeddings/Add"))
    x = layernorm("/embeddings/LayerNorm", "/embeddings/Add_output_0")
    for i in range(LAYERS):
        s = f"/encoder/layer.{i}"
        q = linear(f"{s}/attention/self/query", x, HIDDEN, HIDDEN)
        k = linear(f"{s}/attention/self/key", x, HIDDEN, HIDDEN)
        v = linear(f"{s}/attention/self/value", x, HIDDEN, HIDDEN)
        # A stand-in for the attention arithmetic: the weights are what matters here.
        att = f"{s}/attention/self/Add_output_0"
        nodes.append(helper.make_node("Sum", [q, k, v], [att], name=f"{s}/attention/self/Sum"))
        o = linear(f"{s}/attention/output/dense", att, HIDDEN, HIDDEN)
        nodes.append(helper.make_node("Add", [o, x], [f"{s}/attention/output/Add_1_output_0"], name=f"{s}/attention/output/Add_1"))
        x = layernorm(f"{s}/attention/output/LayerNorm", f"{s}/attention/output/Add_1_output_0")
        h = linear(f"{s}/intermediate/dense", x, HIDDEN, INTER)
        nodes.append(helper.make_node("Relu", [h], [f"{s}/intermediate/Relu_output_0"], name=f"{s}/intermediate/Relu"))
        o = linear(f"{s}/output/dense", f"{s}/intermediate/Relu_output_0", INTER, HIDDEN)
        nodes.append(helper.make_node("Add", [o, x], [f"{s}/output/Add_1_output_0"], name=f"{s}/output/Add_1"))
        x = layernorm(f"{s}/output/LayerNorm", f"{s}/output/Add_1_output_0")
    # The pooler as Gemm with transB = 1: stored [out, in] under a generated name.
    nodes.append(helper.make_node("ReduceMean", [x], ["/pooler/ReduceMean_output_0"], name="/pooler/ReduceMean", axes=[1], keepdims=0))
    wp = rand(HIDDEN, HIDDEN)
    state["pooler.dense.weight"] = wp
    gp = gen("Gemm")
    inits.append(numpy_helper.from_array(wp, gp))
    bp = param("pooler.dense.bias", rand(HIDDEN))
    nodes.append(helper.make_node("Gemm", ["/pooler/ReduceMean_output_0", gp, bp], ["/pooler/dense/Gemm_output_0"], name="/pooler/dense/Gemm", transB=1))
    # A generated name no rule recovers (a scale read by Mul): kept, reported unrecovered.
    scale = gen("Mul")
    inits.append(numpy_helper.from_array(np.full([HIDDEN], 0.5, np.float32), scale))
    nodes.append(helper.make_node("Mul", ["/pooler/dense/Gemm_output_0", scale], ["pooled"], name="/pooler/Mul"))

    graph = helper.make_graph(
        nodes,
        "main_graph",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", HIDDEN])],
        initializer=inits,
    )
    model = helper.make_model(graph, producer_name="pytorch", producer_version="2.5.0", opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, state


def typed():
    """One tensor per float type, raw and typed, and the values onnx decodes them to."""
    inits, expected = [], {}
    base = (rng.standard_normal(24) * 2).astype(np.float32)
    types = [
        ("float", TensorProto.FLOAT),
        ("float16", TensorProto.FLOAT16),
        ("bfloat16", TensorProto.BFLOAT16),
        ("double", TensorProto.DOUBLE),
        ("float8e4m3fn", TensorProto.FLOAT8E4M3FN),
        ("float8e4m3fnuz", TensorProto.FLOAT8E4M3FNUZ),
        ("float8e5m2", TensorProto.FLOAT8E5M2),
        ("float8e5m2fnuz", TensorProto.FLOAT8E5M2FNUZ),
        ("float4e2m1", TensorProto.FLOAT4E2M1),
        ("float6e2m3", TensorProto.FLOAT6E2M3),
        ("float6e3m2", TensorProto.FLOAT6E3M2),
    ]
    for name, dt in types:
        vals = base / 4 if name.startswith(("float4", "float6")) else base
        typed_t = helper.make_tensor(f"{name}_typed", dt, [4, 6], vals.tolist())
        raw_t = numpy_helper.from_array(numpy_helper.to_array(typed_t), f"{name}_raw")
        assert raw_t.HasField("raw_data") and raw_t.data_type == dt
        for t in (raw_t, typed_t):
            inits.append(t)
            expected[t.name] = numpy_helper.to_array(t).astype(np.float32)
    # float_data written unpacked: one fixed32 field per element (protobuf parsers must
    # accept both encodings of a repeated scalar). Built from raw protobuf bytes.
    t = helper.make_tensor("float_unpacked", TensorProto.FLOAT, [3], [1.5, -2.25, 3.0])
    t.ClearField("float_data")
    unpacked = t.SerializeToString() + b"".join(
        b"\x25" + np.float32(v).tobytes() for v in [1.5, -2.25, 3.0]
    )
    t = TensorProto()
    t.ParseFromString(unpacked)  # parses into float_data; re-serialised packed below, so
    inits.append(t)  # the unpacked form is spliced into the file after serialisation.
    expected["float_unpacked"] = np.array([1.5, -2.25, 3.0], np.float32)
    inits.append(helper.make_tensor("int64_typed", TensorProto.INT64, [3], [1, -2, 3]))
    inits.append(numpy_helper.from_array(np.array([1, -2], np.int8), "int8_raw"))
    graph = helper.make_graph([], "typed", [], [], initializer=inits)
    model = helper.make_model(graph, producer_name="gen_fixtures.py", opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    data = model.SerializeToString()
    # Splice: replace the packed float_unpacked tensor's bytes with the unpacked encoding.
    packed = [x for x in model.graph.initializer if x.name == "float_unpacked"][0].SerializeToString()
    assert data.count(packed) == 1
    new_init = unpacked
    old_field = b"\x2a" + encode_varint(len(packed)) + packed
    new_field = b"\x2a" + encode_varint(len(new_init)) + new_init
    graph_bytes = model.graph.SerializeToString()
    assert graph_bytes.count(old_field) == 1
    new_graph = graph_bytes.replace(old_field, new_field)
    old_g = b"\x3a" + encode_varint(len(graph_bytes)) + graph_bytes
    new_g = b"\x3a" + encode_varint(len(new_graph)) + new_graph
    assert data.count(old_g) == 1
    data = data.replace(old_g, new_g)
    check = onnx.load_from_string(data)
    got = [x for x in check.graph.initializer if x.name == "float_unpacked"][0]
    assert list(got.float_data) == [1.5, -2.25, 3.0]
    return data, expected


def encode_varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def main():
    os.makedirs(os.path.join(OUT, "external"), exist_ok=True)
    model, state = transformer()
    onnx.save_model(model, os.path.join(OUT, "minilm_like.onnx"))
    save_file(state, os.path.join(OUT, "minilm_like.safetensors"))
    ext = os.path.join(OUT, "external", "model.onnx")
    if os.path.exists(os.path.join(OUT, "external", "weights.bin")):
        os.remove(os.path.join(OUT, "external", "weights.bin"))
    onnx.save_model(
        model,
        ext,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    data, expected = typed()
    with open(os.path.join(OUT, "typed.onnx"), "wb") as f:
        f.write(data)
    save_file(expected, os.path.join(OUT, "typed.safetensors"))
    for name in sorted(os.listdir(OUT)):
        p = os.path.join(OUT, name)
        if os.path.isfile(p):
            print(name, os.path.getsize(p))


if __name__ == "__main__":
    main()
