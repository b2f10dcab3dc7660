//! GGML type ids and file types.

use weightkin_core::Dtype;

/// The dtype of GGML type id `id` (`enum ggml_type` in llama.cpp's `ggml/include/ggml.h`), or
/// `None` for ids that are unassigned or whose types were removed from GGUF files (4, 5: the
/// old Q4_2 / Q4_3; 31–33 and 36–38: the interleaved Q4_0_4_4 … IQ4_NL_8_8 layouts, which
/// llama.cpp now repacks at load time instead of storing).
pub fn dtype(id: u32) -> Option<Dtype> {
    Some(match id {
        0 => Dtype::F32,
        1 => Dtype::F16,
        2 => Dtype::Q4_0,
        3 => Dtype::Q4_1,
        6 => Dtype::Q5_0,
        7 => Dtype::Q5_1,
        8 => Dtype::Q8_0,
        9 => Dtype::Q8_1,
        10 => Dtype::Q2_K,
        11 => Dtype::Q3_K,
        12 => Dtype::Q4_K,
        13 => Dtype::Q5_K,
        14 => Dtype::Q6_K,
        15 => Dtype::Q8_K,
        16 => Dtype::IQ2_XXS,
        17 => Dtype::IQ2_XS,
        18 => Dtype::IQ3_XXS,
        19 => Dtype::IQ1_S,
        20 => Dtype::IQ4_NL,
        21 => Dtype::IQ3_S,
        22 => Dtype::IQ2_S,
        23 => Dtype::IQ4_XS,
        24 => Dtype::I8,
        25 => Dtype::I16,
        26 => Dtype::I32,
        27 => Dtype::I64,
        28 => Dtype::F64,
        29 => Dtype::IQ1_M,
        30 => Dtype::BF16,
        34 => Dtype::TQ1_0,
        35 => Dtype::TQ2_0,
        39 => Dtype::MXFP4,
        40 => Dtype::NVFP4,
        41 => Dtype::Q1_0,
        42 => Dtype::Q2_0,
        _ => return None,
    })
}

/// The GGML type id of `dtype`, if GGUF can store it.
pub fn type_id(dtype: Dtype) -> Option<u32> {
    (0..=42).find(|&id| self::dtype(id) == Some(dtype))
}

/// The name of `general.file_type` value `ftype` (`enum llama_ftype` in llama.cpp's
/// `include/llama.h`, `LlamaFileType` in gguf-py): what most tensors were quantized to.
pub fn file_type_name(ftype: u64) -> Option<&'static str> {
    Some(match ftype {
        0 => "ALL_F32",
        1 => "MOSTLY_F16",
        2 => "MOSTLY_Q4_0",
        3 => "MOSTLY_Q4_1",
        7 => "MOSTLY_Q8_0",
        8 => "MOSTLY_Q5_0",
        9 => "MOSTLY_Q5_1",
        10 => "MOSTLY_Q2_K",
        11 => "MOSTLY_Q3_K_S",
        12 => "MOSTLY_Q3_K_M",
        13 => "MOSTLY_Q3_K_L",
        14 => "MOSTLY_Q4_K_S",
        15 => "MOSTLY_Q4_K_M",
        16 => "MOSTLY_Q5_K_S",
        17 => "MOSTLY_Q5_K_M",
        18 => "MOSTLY_Q6_K",
        19 => "MOSTLY_IQ2_XXS",
        20 => "MOSTLY_IQ2_XS",
        21 => "MOSTLY_Q2_K_S",
        22 => "MOSTLY_IQ3_XS",
        23 => "MOSTLY_IQ3_XXS",
        24 => "MOSTLY_IQ1_S",
        25 => "MOSTLY_IQ4_NL",
        26 => "MOSTLY_IQ3_S",
        27 => "MOSTLY_IQ3_M",
        28 => "MOSTLY_IQ2_S",
        29 => "MOSTLY_IQ2_M",
        30 => "MOSTLY_IQ4_XS",
        31 => "MOSTLY_IQ1_M",
        32 => "MOSTLY_BF16",
        36 => "MOSTLY_TQ1_0",
        37 => "MOSTLY_TQ2_0",
        38 => "MOSTLY_MXFP4_MOE",
        39 => "MOSTLY_NVFP4",
        40 => "MOSTLY_Q1_0",
        41 => "MOSTLY_Q2_0",
        1024 => "GUESSED",
        _ => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn every_block_dtype_has_one_id_and_ids_round_trip() {
        for d in Dtype::GGML_BLOCK {
            let id = type_id(d).unwrap();
            assert_eq!(dtype(id), Some(d));
        }
        let ids: Vec<_> = (0..=64).filter(|&i| dtype(i).is_some()).collect();
        assert_eq!(ids.len(), Dtype::GGML_BLOCK.len() + 8);
    }
}
