use weightkin_core::Dtype;

use crate::{assert_same, fixture, open};

#[test]
fn matmul_transformer_presented_under_pytorch_names_and_orientation() {
    let onnx = open(&fixture("minilm_like.onnx"));
    let st = open(&fixture("minilm_like.safetensors"));
    // Every one of the 38 PyTorch tensors is there, same name, shape and bits.
    assert_eq!(assert_same(&*onnx, &*st, ""), 38);
    let q = onnx
        .find("encoder.layer.0.attention.self.query.weight")
        .unwrap();
    let q = &onnx.tensors()[q];
    assert!(q
        .stored_name
        .as_deref()
        .unwrap()
        .starts_with("onnx::MatMul_"));
    let up = onnx
        .find("encoder.layer.1.intermediate.dense.weight")
        .unwrap();
    assert_eq!(onnx.tensors()[up].shape, [64, 32]); // [out, in]; stored [32, 64]
                                                    // Gemm with transB = 1: renamed, not transposed.
    let p = onnx.find("pooler.dense.weight").unwrap();
    assert!(onnx.tensors()[p]
        .stored_name
        .as_deref()
        .unwrap()
        .starts_with("onnx::Gemm_"));
    // The one generated name no rule recovers keeps its name and is reported.
    let mul = onnx
        .tensors()
        .iter()
        .find(|t| t.name.starts_with("onnx::Mul_"))
        .unwrap();
    assert!(mul.stored_name.is_none());
    let unrecovered = &onnx.metadata()["onnx.names_unrecovered"];
    assert!(
        unrecovered.starts_with("1: onnx::Mul_") && unrecovered.contains("Mul"),
        "{unrecovered}"
    );
    let transforms: Vec<_> = onnx
        .transforms()
        .iter()
        .map(|t| (t.name.as_str(), t.tensors))
        .collect();
    assert_eq!(
        transforms,
        [
            ("onnx-recover-names", 13),
            ("onnx-untranspose", 12),
            ("onnx-names-unrecovered", 1)
        ]
    );
    // Transposed views are not raw bytes; tensors as stored are.
    let q = onnx
        .find("encoder.layer.0.attention.self.query.weight")
        .unwrap();
    assert!(onnx.raw(q).is_none());
    let b = onnx
        .find("encoder.layer.0.attention.self.query.bias")
        .unwrap();
    assert_eq!(onnx.raw(b).unwrap().bytes.len(), 32 * 4);
    assert_eq!(onnx.metadata()["onnx.producer"], "pytorch 2.5.0");
    assert_eq!(onnx.metadata()["onnx.opset_import"], "ai.onnx 17");
}

#[test]
fn external_data_beside_the_model() {
    let onnx = open(&fixture("external/model.onnx"));
    let st = open(&fixture("minilm_like.safetensors"));
    assert_eq!(assert_same(&*onnx, &*st, ""), 38);
    assert_eq!(onnx.files().len(), 2);
    assert!(onnx.files()[1].path.ends_with("weights.bin"));
    let q = onnx.find("embeddings.word_embeddings.weight").unwrap();
    assert_eq!(onnx.tensors()[q].file, 1);
    let r = onnx.stored_range(q).unwrap();
    assert_eq!((r.file, r.end - r.start), (1, 50 * 32 * 4));
}

#[test]
fn every_float_type_in_raw_and_typed_fields_matches_onnx() {
    let onnx = open(&fixture("typed.onnx"));
    let want = open(&fixture("typed.safetensors"));
    // 11 types × raw/typed + unpacked float_data.
    assert_eq!(assert_same(&*onnx, &*want, ""), 23);
    let dtype = |n: &str| onnx.tensors()[onnx.find(n).unwrap()].dtype;
    assert_eq!(dtype("bfloat16_typed"), Dtype::BF16);
    assert_eq!(dtype("float8e5m2fnuz_raw"), Dtype::F8_E5M2FNUZ);
    assert_eq!(dtype("float4e2m1_typed"), Dtype::F4);
    // Integer tensors are listed, not compared.
    assert_eq!(dtype("int64_typed"), Dtype::I64);
    assert_eq!(dtype("int8_raw"), Dtype::I8);
    let i = onnx.find("int64_typed").unwrap();
    assert!(onnx.read_f32(i, 0, &mut [0.0; 3]).is_err());
}
