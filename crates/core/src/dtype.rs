//! Element types of stored tensors.

use std::fmt;

use serde::Serialize;

/// The element type of a stored tensor.
///
/// Covers every dtype the safetensors format defines. Names print as safetensors spells them
/// (`BF16`, `F8_E4M3`, …). Formats with block-quantized types extend this enum in later
/// versions, hence `non_exhaustive`.
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
}

impl Dtype {
    /// Size of one element in bits.
    pub const fn bits(self) -> u64 {
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
        }
    }

    /// Whether values of this dtype are real floating-point numbers that weightkin converts to
    /// f32 and compares. Integer, boolean and complex tensors are listed but not compared.
    pub const fn is_float(self) -> bool {
        matches!(
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

    /// The name as safetensors writes it.
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
        }
    }

    /// Every dtype, in declaration order.
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

    /// Parses a safetensors dtype name.
    pub fn parse(name: &str) -> Option<Dtype> {
        Dtype::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// Bytes needed for `numel` elements, rounded up to whole bytes; `None` on overflow.
    pub fn byte_len(self, numel: u64) -> Option<u64> {
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
}
