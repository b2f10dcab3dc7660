//! The portable builds of the fused kernels, one per stored dtype pair (both sides the same
//! dtype). Each is `#[inline(always)]` so that every `dispatch!`
//! instantiation is compiled for its own target features; they are the reference the AVX2
//! builds ([`super::avx2`]) are tested against bit for bit.

use super::{arr, bf16, reduce, L};
use crate::Moments;

#[inline(always)]
pub(super) fn slices(a: &[f32], b: &[f32]) -> Moments {
    let oct = |c: &[f32]| std::array::from_fn(|i| c[i]);
    let one = |c: &[f32]| c[0];
    reduce::<f32, f32, L, L, 1, 1>(a, b, oct, oct, one, one)
}

#[inline(always)]
pub(super) fn bf16s(a: &[u8], b: &[u8]) -> Moments {
    let oct = |c: &[u8]| {
        let w = u128::from_le_bytes(arr(c));
        std::array::from_fn(|i| bf16((w >> (16 * i)) as u32 & 0xffff))
    };
    let one = |c: &[u8]| bf16(u32::from(u16::from_le_bytes(arr(c))));
    reduce::<u8, u8, 16, 16, 2, 2>(a, b, oct, oct, one, one)
}

#[inline(always)]
pub(super) fn f16s(a: &[u8], b: &[u8]) -> Moments {
    let half = |c: &[u8]| crate::convert::f16_to_f32(u16::from_le_bytes(arr(c)));
    let oct = |c: &[u8]| std::array::from_fn(|i| half(&c[2 * i..2 * i + 2]));
    reduce::<u8, u8, 16, 16, 2, 2>(a, b, oct, oct, half, half)
}

#[inline(always)]
pub(super) fn f32s(a: &[u8], b: &[u8]) -> Moments {
    let oct = |c: &[u8]| std::array::from_fn(|i| f32::from_le_bytes(arr(&c[4 * i..4 * i + 4])));
    let one = |c: &[u8]| f32::from_le_bytes(arr(c));
    reduce::<u8, u8, 32, 32, 4, 4>(a, b, oct, oct, one, one)
}
