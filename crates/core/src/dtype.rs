//! Element types of stored tensors.

use std::fmt;

use serde::Serialize;

/// The element type of a stored tensor.
///
/// Covers every dtype the safetensors format defines ([`Dtype::ALL`]) and the block-quantized
/// types of GGML, the tensor library behind llama.cpp and GGUF files ([`Dtype::GGML_BLOCK`]).
/// Safetensors names print as safetensors spells them (`BF16`, `F8_E4M3`, …); GGML types as
/// llama.cpp's `gguf` Python package spells them (`Q4_K`, `IQ2_XXS`, `MXFP4`, …). Further
/// formats may add variants, hence `non_exhaustive`.
///
/// A GGML block type stores a fixed number of elements ([`Dtype::block`]) in a fixed number of
/// bytes: scales plus packed codes. Its elements can only be decoded block by block; the layout
/// of every block type is defined by `ggml/src/ggml-common.h` in llama.cpp, and the GGUF format
/// plugin holds the decoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[non_exhaustive]
#[allow(non_camel_case_types)]
pub enum Dtype {
    /// Boolean, one byte.
    BOOL,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 16-bit integer.
    U16,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 32-bit integer.
    U32,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 64-bit integer.
    U64,
    /// IEEE 754 binary16.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary64.
    F64,
    /// OCP FP8 E4M3 ("fn" variant: no infinities, NaN = S.1111.111).
    F8_E4M3,
    /// OCP FP8 E5M2 (IEEE-like, with infinities and NaNs).
    F8_E5M2,
    /// FP8 E4M3, finite-only, unsigned zero, NaN = 0x80, exponent bias 8.
    F8_E4M3FNUZ,
    /// FP8 E5M2, finite-only, unsigned zero, NaN = 0x80, exponent bias 16.
    F8_E5M2FNUZ,
    /// OCP MX scale type: 8-bit exponent, no sign, no mantissa, NaN = 0xFF.
    F8_E8M0,
    /// OCP MX FP6 E2M3, packed 4 values in 3 bytes.
    F6_E2M3,
    /// OCP MX FP6 E3M2, packed 4 values in 3 bytes.
    F6_E3M2,
    /// OCP MX FP4 E2M1, packed 2 values per byte.
    F4,
    /// Complex number with two f32 parts.
    C64,

    // GGML block-quantized types. Each doc gives elements per block / bytes per block, as in
    // `GGML_QUANT_SIZES` of gguf-py (`gguf/constants.py`) and the structs of `ggml-common.h`.
    /// GGML Q4_0: 32 / 18. An f16 scale `d` and 32 4-bit codes `q`; value `d·(q − 8)`.
    Q4_0,
    /// GGML Q4_1: 32 / 20. f16 scale `d` and minimum `m`, 32 4-bit codes; value `d·q + m`.
    Q4_1,
    /// GGML Q5_0: 32 / 22. f16 scale, 32 5-bit codes (4 low bits packed, high bits in a
    /// 32-bit mask); value `d·(q − 16)`.
    Q5_0,
    /// GGML Q5_1: 32 / 24. f16 scale and minimum, 32 5-bit codes; value `d·q + m`.
    Q5_1,
    /// GGML Q8_0: 32 / 34. f16 scale, 32 signed 8-bit codes; value `d·q`.
    Q8_0,
    /// GGML Q8_1: 32 / 36. f16 scale, f16 `d·Σq`, 32 signed 8-bit codes; value `d·q`. An
    /// activation type of llama.cpp's dot products, not written to files by its tools.
    Q8_1,
    /// GGML Q2_K: 256 / 84. 16 groups of 16 with 4-bit scales and mins under f16 super-scales,
    /// 2-bit codes.
    Q2_K,
    /// GGML Q3_K: 256 / 110. 16 groups of 16 with 6-bit scales under an f16 super-scale,
    /// 3-bit codes (2 low bits plus a high-bit mask).
    Q3_K,
    /// GGML Q4_K: 256 / 144. 8 groups of 32 with 6-bit scales and mins under f16
    /// super-scales, 4-bit codes.
    Q4_K,
    /// GGML Q5_K: 256 / 176. Like Q4_K with a fifth bit per code.
    Q5_K,
    /// GGML Q6_K: 256 / 210. 16 groups of 16 with signed 8-bit scales under an f16
    /// super-scale, 6-bit codes.
    Q6_K,
    /// GGML Q8_K: 256 / 292. f32 scale, 256 signed 8-bit codes, 16 partial sums. An
    /// activation type of llama.cpp's K-quant dot products.
    Q8_K,
    /// GGML IQ2_XXS: 256 / 66. 2.06 bits per weight: indices into a 256-entry grid of 8
    /// magnitudes, sign patterns, 4-bit scales.
    IQ2_XXS,
    /// GGML IQ2_XS: 256 / 74. Indices into a 512-entry grid, per-16 4-bit scales.
    IQ2_XS,
    /// GGML IQ3_XXS: 256 / 98. Indices into a 256-entry grid of 4 magnitudes.
    IQ3_XXS,
    /// GGML IQ1_S: 256 / 50. Indices into a 2048-entry ternary grid, a ±1/8 shift per group.
    IQ1_S,
    /// GGML IQ4_NL: 32 / 18. f16 scale, 4-bit indices into a fixed non-linear 16-value table.
    IQ4_NL,
    /// GGML IQ3_S: 256 / 110. Indices into a 512-entry grid of 4 magnitudes, explicit signs.
    IQ3_S,
    /// GGML IQ2_S: 256 / 82. Indices into a 1024-entry grid of 8 magnitudes, explicit signs.
    IQ2_S,
    /// GGML IQ4_XS: 256 / 136. IQ4_NL codes with 6-bit scales per 32 under an f16
    /// super-scale.
    IQ4_XS,
    /// GGML IQ1_M: 256 / 56. Like IQ1_S with 3-bit scales per 16 and the f16 super-scale
    /// spread over the scale bits.
    IQ1_M,
    /// GGML TQ1_0: 256 / 54. Ternary codes packed five per byte in base 3, f16 scale.
    TQ1_0,
    /// GGML TQ2_0: 256 / 66. Ternary codes in 2 bits each, f16 scale.
    TQ2_0,
    /// GGML MXFP4: 32 / 17. OCP microscaling FP4: an E8M0 scale and 32 E2M1 codes.
    MXFP4,
    /// GGML NVFP4: 64 / 36. NVIDIA FP4: four UE4M3 scales, one per 16 E2M1 codes.
    NVFP4,
    /// GGML Q1_0: 128 / 18. f16 scale `d` and one bit per element; value `±d`.
    Q1_0,
    /// GGML Q2_0: 64 / 18. f16 scale `d` and 2-bit codes `q`; value `d·(q − 1)`.
    Q2_0,
}

impl Dtype {
    /// Size of one element in bits.
    ///
    /// For GGML block types an element has no size of its own; this is the bits of one block
    /// divided by its elements, rounded up (Q4_0's 4.5 bits per weight give 5), for display
    /// only. Exact sizes come from [`Dtype::block`] and [`Dtype::byte_len`].
    pub const fn bits(self) -> u64 {
        if let Some((elements, bytes)) = self.block() {
            return (bytes * 8).div_ceil(elements);
        }
        match self {
            Dtype::F4 => 4,
            Dtype::F6_E2M3 | Dtype::F6_E3M2 => 6,
            Dtype::BOOL
            | Dtype::U8
            | Dtype::I8
            | Dtype::F8_E4M3
            | Dtype::F8_E5M2
            | Dtype::F8_E4M3FNUZ
            | Dtype::F8_E5M2FNUZ
            | Dtype::F8_E8M0 => 8,
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => 16,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 32,
            Dtype::I64 | Dtype::U64 | Dtype::F64 | Dtype::C64 => 64,
            // Block types returned above.
            _ => 0,
        }
    }

    /// For a GGML block-quantized type, `(elements per block, bytes per block)`; `None` for
    /// every safetensors dtype, whose elements are stored one by one.
    ///
    /// Sizes are those of `GGML_QUANT_SIZES` in gguf-py (`gguf/constants.py`) and of the block
    /// structs in llama.cpp's `ggml/src/ggml-common.h` (Q1_0, Q2_0).
    pub const fn block(self) -> Option<(u64, u64)> {
        Some(match self {
            Dtype::Q4_0 => (32, 18),
            Dtype::Q4_1 => (32, 20),
            Dtype::Q5_0 => (32, 22),
            Dtype::Q5_1 => (32, 24),
            Dtype::Q8_0 => (32, 34),
            Dtype::Q8_1 => (32, 36),
            Dtype::Q2_K => (256, 84),
            Dtype::Q3_K => (256, 110),
            Dtype::Q4_K => (256, 144),
            Dtype::Q5_K => (256, 176),
            Dtype::Q6_K => (256, 210),
            Dtype::Q8_K => (256, 292),
            Dtype::IQ2_XXS => (256, 66),
            Dtype::IQ2_XS => (256, 74),
            Dtype::IQ3_XXS => (256, 98),
            Dtype::IQ1_S => (256, 50),
            Dtype::IQ4_NL => (32, 18),
            Dtype::IQ3_S => (256, 110),
            Dtype::IQ2_S => (256, 82),
            Dtype::IQ4_XS => (256, 136),
            Dtype::IQ1_M => (256, 56),
            Dtype::TQ1_0 => (256, 54),
            Dtype::TQ2_0 => (256, 66),
            Dtype::MXFP4 => (32, 17),
            Dtype::NVFP4 => (64, 36),
            Dtype::Q1_0 => (128, 18),
            Dtype::Q2_0 => (64, 18),
            _ => return None,
        })
    }

    /// Whether values of this dtype are real floating-point numbers that weightkin converts to
    /// f32 and compares. Integer, boolean and complex tensors are listed but not compared.
    /// Every GGML block type is: its blocks decode to f32 (by the format that reads them;
    /// [`crate::to_f32`] converts the safetensors dtypes only).
    pub const fn is_float(self) -> bool {
        self.block().is_some()
            || matches!(
                self,
                Dtype::F16
                    | Dtype::BF16
                    | Dtype::F32
                    | Dtype::F64
                    | Dtype::F8_E4M3
                    | Dtype::F8_E5M2
                    | Dtype::F8_E4M3FNUZ
                    | Dtype::F8_E5M2FNUZ
                    | Dtype::F8_E8M0
                    | Dtype::F6_E2M3
                    | Dtype::F6_E3M2
                    | Dtype::F4
            )
    }

    /// The name as safetensors writes it; for GGML block types, as gguf-py's
    /// `GGMLQuantizationType` spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Dtype::BOOL => "BOOL",
            Dtype::U8 => "U8",
            Dtype::I8 => "I8",
            Dtype::I16 => "I16",
            Dtype::U16 => "U16",
            Dtype::I32 => "I32",
            Dtype::U32 => "U32",
            Dtype::I64 => "I64",
            Dtype::U64 => "U64",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::F32 => "F32",
            Dtype::F64 => "F64",
            Dtype::F8_E4M3 => "F8_E4M3",
            Dtype::F8_E5M2 => "F8_E5M2",
            Dtype::F8_E4M3FNUZ => "F8_E4M3FNUZ",
            Dtype::F8_E5M2FNUZ => "F8_E5M2FNUZ",
            Dtype::F8_E8M0 => "F8_E8M0",
            Dtype::F6_E2M3 => "F6_E2M3",
            Dtype::F6_E3M2 => "F6_E3M2",
            Dtype::F4 => "F4",
            Dtype::C64 => "C64",
            Dtype::Q4_0 => "Q4_0",
            Dtype::Q4_1 => "Q4_1",
            Dtype::Q5_0 => "Q5_0",
            Dtype::Q5_1 => "Q5_1",
            Dtype::Q8_0 => "Q8_0",
            Dtype::Q8_1 => "Q8_1",
            Dtype::Q2_K => "Q2_K",
            Dtype::Q3_K => "Q3_K",
            Dtype::Q4_K => "Q4_K",
            Dtype::Q5_K => "Q5_K",
            Dtype::Q6_K => "Q6_K",
            Dtype::Q8_K => "Q8_K",
            Dtype::IQ2_XXS => "IQ2_XXS",
            Dtype::IQ2_XS => "IQ2_XS",
            Dtype::IQ3_XXS => "IQ3_XXS",
            Dtype::IQ1_S => "IQ1_S",
            Dtype::IQ4_NL => "IQ4_NL",
            Dtype::IQ3_S => "IQ3_S",
            Dtype::IQ2_S => "IQ2_S",
            Dtype::IQ4_XS => "IQ4_XS",
            Dtype::IQ1_M => "IQ1_M",
            Dtype::TQ1_0 => "TQ1_0",
            Dtype::TQ2_0 => "TQ2_0",
            Dtype::MXFP4 => "MXFP4",
            Dtype::NVFP4 => "NVFP4",
            Dtype::Q1_0 => "Q1_0",
            Dtype::Q2_0 => "Q2_0",
        }
    }

    /// Every dtype safetensors defines, in declaration order: exactly the names
    /// [`Dtype::parse`] accepts. The GGML block types are in [`Dtype::GGML_BLOCK`].
    pub const ALL: [Dtype; 22] = [
        Dtype::BOOL,
        Dtype::U8,
        Dtype::I8,
        Dtype::I16,
        Dtype::U16,
        Dtype::I32,
        Dtype::U32,
        Dtype::I64,
        Dtype::U64,
        Dtype::F16,
        Dtype::BF16,
        Dtype::F32,
        Dtype::F64,
        Dtype::F8_E4M3,
        Dtype::F8_E5M2,
        Dtype::F8_E4M3FNUZ,
        Dtype::F8_E5M2FNUZ,
        Dtype::F8_E8M0,
        Dtype::F6_E2M3,
        Dtype::F6_E3M2,
        Dtype::F4,
        Dtype::C64,
    ];

    /// Every GGML block-quantized dtype, in GGML type-id order (`enum ggml_type` in
    /// llama.cpp's `ggml/include/ggml.h`). None of these is a safetensors dtype, so
    /// [`Dtype::parse`] rejects their names.
    pub const GGML_BLOCK: [Dtype; 27] = [
        Dtype::Q4_0,
        Dtype::Q4_1,
        Dtype::Q5_0,
        Dtype::Q5_1,
        Dtype::Q8_0,
        Dtype::Q8_1,
        Dtype::Q2_K,
        Dtype::Q3_K,
        Dtype::Q4_K,
        Dtype::Q5_K,
        Dtype::Q6_K,
        Dtype::Q8_K,
        Dtype::IQ2_XXS,
        Dtype::IQ2_XS,
        Dtype::IQ3_XXS,
        Dtype::IQ1_S,
        Dtype::IQ4_NL,
        Dtype::IQ3_S,
        Dtype::IQ2_S,
        Dtype::IQ4_XS,
        Dtype::IQ1_M,
        Dtype::TQ1_0,
        Dtype::TQ2_0,
        Dtype::MXFP4,
        Dtype::NVFP4,
        Dtype::Q1_0,
        Dtype::Q2_0,
    ];

    /// Parses a safetensors dtype name (one of [`Dtype::ALL`]).
    pub fn parse(name: &str) -> Option<Dtype> {
        Dtype::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// Bytes needed for `numel` elements, rounded up to whole bytes; `None` on overflow.
    ///
    /// For a GGML block type, `numel` must be a whole number of blocks (GGML stores no partial
    /// block); `None` otherwise.
    pub fn byte_len(self, numel: u64) -> Option<u64> {
        if let Some((elements, bytes)) = self.block() {
            return if numel.is_multiple_of(elements) {
                (numel / elements).checked_mul(bytes)
            } else {
                None
            };
        }
        numel.checked_mul(self.bits()).map(|b| b.div_ceil(8))
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for d in Dtype::ALL {
            assert_eq!(Dtype::parse(d.as_str()), Some(d));
        }
        let mut names: Vec<_> = Dtype::ALL.iter().map(|d| d.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Dtype::ALL.len());
    }

    #[test]
    fn byte_len_rounds_up_and_checks_overflow() {
        assert_eq!(Dtype::F4.byte_len(3), Some(2));
        assert_eq!(Dtype::F6_E2M3.byte_len(4), Some(3));
        assert_eq!(Dtype::BF16.byte_len(10), Some(20));
        assert_eq!(Dtype::F64.byte_len(u64::MAX), None);
    }

    #[test]
    fn ggml_block_types_are_sized_by_block_and_never_parsed() {
        assert_eq!(Dtype::Q4_0.byte_len(64), Some(36));
        assert_eq!(Dtype::Q4_K.byte_len(512), Some(288));
        assert_eq!(Dtype::Q4_0.byte_len(33), None);
        assert_eq!(Dtype::Q8_K.byte_len(u64::MAX / 256 * 256), None);
        assert_eq!(Dtype::Q4_0.bits(), 5);
        assert_eq!(Dtype::Q4_1.bits(), 5);
        assert_eq!(Dtype::Q2_K.bits(), 3);
        for d in Dtype::GGML_BLOCK {
            assert!(d.is_float(), "{d}");
            assert_eq!(Dtype::parse(d.as_str()), None, "{d}");
            assert!(!Dtype::ALL.contains(&d), "{d}");
        }
        for d in Dtype::ALL {
            assert_eq!(d.block(), None, "{d}");
        }
        let mut names: Vec<_> = Dtype::ALL
            .iter()
            .chain(&Dtype::GGML_BLOCK)
            .map(|d| d.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Dtype::ALL.len() + Dtype::GGML_BLOCK.len());
    }
}
