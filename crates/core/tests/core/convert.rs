//! `to_f32` against independent references: `half` (F16, BF16), `float8` (OCP FP8), and a
//! golden table from ml_dtypes (`golden/gen_small_floats.py`) for every small float dtype.

use weightkin_core::testing::{pack_f4, pack_f6};
use weightkin_core::{to_f32, Dtype};

/// Equal bits, or both NaN (payloads are not part of the contract).
fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn assert_all_same(dtype: Dtype, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            same(g, w),
            "{dtype} element {i}: got {g:e} ({:#010x}), want {w:e} ({:#010x})",
            g.to_bits(),
            w.to_bits()
        );
    }
}

fn convert(dtype: Dtype, data: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![f32::from_bits(0xdead_beef); n];
    to_f32(dtype, data, 0, &mut out).expect("in range");
    out
}

#[test]
fn f16_and_bf16_exhaustive() {
    let bytes: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
    let f16: Vec<f32> = (0..=u16::MAX)
        .map(|b| half::f16::from_bits(b).to_f32())
        .collect();
    let bf16: Vec<f32> = (0..=u16::MAX)
        .map(|b| half::bf16::from_bits(b).to_f32())
        .collect();
    assert_all_same(Dtype::F16, &convert(Dtype::F16, &bytes, 1 << 16), &f16);
    assert_all_same(Dtype::BF16, &convert(Dtype::BF16, &bytes, 1 << 16), &bf16);
}

#[test]
fn fp8_exhaustive_against_float8() {
    let bytes: Vec<u8> = (0..=u8::MAX).collect();
    let e4m3: Vec<f32> = bytes
        .iter()
        .map(|&b| float8::F8E4M3::from_bits(b).to_f32())
        .collect();
    let e5m2: Vec<f32> = bytes
        .iter()
        .map(|&b| float8::F8E5M2::from_bits(b).to_f32())
        .collect();
    assert_all_same(Dtype::F8_E4M3, &convert(Dtype::F8_E4M3, &bytes, 256), &e4m3);
    assert_all_same(Dtype::F8_E5M2, &convert(Dtype::F8_E5M2, &bytes, 256), &e5m2);
}

/// The golden table: for each dtype, the f32 value of every code (index = code).
fn golden() -> Vec<(Dtype, Vec<f32>)> {
    let text = include_str!("../golden/small_floats.txt");
    let mut tables: Vec<(Dtype, Vec<f32>)> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let [name, code, bits] = line.split(' ').collect::<Vec<_>>()[..] else {
            panic!("bad golden line {line:?}");
        };
        let dtype = Dtype::parse(name).unwrap();
        let value = match bits {
            "nan" => f32::NAN,
            hex => f32::from_bits(u32::from_str_radix(hex, 16).unwrap()),
        };
        if tables.last().is_none_or(|(d, _)| *d != dtype) {
            tables.push((dtype, Vec::new()));
        }
        let table = &mut tables.last_mut().unwrap().1;
        assert_eq!(
            usize::from_str_radix(code, 16).unwrap(),
            table.len(),
            "{line}"
        );
        table.push(value);
    }
    tables
}

#[test]
fn small_floats_match_ml_dtypes() {
    let tables = golden();
    let names: Vec<Dtype> = tables.iter().map(|(d, _)| *d).collect();
    assert_eq!(
        names,
        [
            Dtype::F8_E4M3,
            Dtype::F8_E5M2,
            Dtype::F8_E4M3FNUZ,
            Dtype::F8_E5M2FNUZ,
            Dtype::F8_E8M0,
            Dtype::F6_E2M3,
            Dtype::F6_E3M2,
            Dtype::F4
        ]
    );
    for (dtype, want) in &tables {
        let codes: Vec<u8> = (0..want.len()).map(|c| c as u8).collect();
        let bytes = match dtype {
            Dtype::F4 => pack_f4(&codes),
            Dtype::F6_E2M3 | Dtype::F6_E3M2 => pack_f6(&codes),
            _ => codes,
        };
        assert_all_same(*dtype, &convert(*dtype, &bytes, want.len()), want);
    }
}

#[test]
fn packed_bit_order_is_as_documented() {
    // F4: element 2i in the low nibble. 0x71 = [code 1, code 7] = [0.5, 6.0].
    assert_eq!(convert(Dtype::F4, &[0x71], 2), [0.5, 6.0]);
    // F6: least significant bit first; codes [1, 2, 3, 4] are 1 | 2 << 6 | 3 << 12 | 4 << 18.
    let word: u32 = 1 | 2 << 6 | 3 << 12 | 4 << 18;
    let bytes = &word.to_le_bytes()[..3];
    assert_eq!(bytes, [0x81, 0x30, 0x10]);
    // E2M3 (bias 1, 3 mantissa bits): codes 1..=4 are subnormals k/8.
    assert_eq!(convert(Dtype::F6_E2M3, bytes, 4), [0.125, 0.25, 0.375, 0.5]);
    assert_eq!(pack_f6(&[1, 2, 3, 4]), bytes);
    assert_eq!(pack_f4(&[1, 7]), [0x71]);
}

#[test]
fn packed_types_at_every_offset_and_length() {
    let tables = golden();
    for (dtype, table) in tables.iter().filter(|(d, _)| d.bits() < 8) {
        // 41 elements: not a multiple of 2 or 4, so partial bytes/groups at both ends.
        let codes: Vec<u8> = (0..41).map(|i| (i * 7 % table.len()) as u8).collect();
        let bytes = if *dtype == Dtype::F4 {
            pack_f4(&codes)
        } else {
            pack_f6(&codes)
        };
        let want: Vec<f32> = codes.iter().map(|&c| table[usize::from(c)]).collect();
        for start in 0..=codes.len() {
            for len in 0..=codes.len() - start {
                let mut out = vec![f32::NAN; len];
                to_f32(*dtype, &bytes, start, &mut out).unwrap();
                assert_all_same(*dtype, &out, &want[start..start + len]);
            }
        }
        // Past the last whole byte.
        let elements_in_bytes = bytes.len() * 8 / dtype.bits() as usize;
        assert_eq!(to_f32(*dtype, &bytes, elements_in_bytes, &mut [0.0]), None);
        assert_eq!(
            to_f32(*dtype, &bytes, 0, &mut vec![0.0; elements_in_bytes + 1]),
            None
        );
    }
}

#[test]
fn whole_byte_types_at_offsets() {
    let values = [1.5f32, -0.0, f32::INFINITY, 3.25e-39, -7.0, 65504.0, 1e-8];
    let f32_bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let f64_bytes: Vec<u8> = values
        .iter()
        .flat_map(|&v| f64::from(v).to_le_bytes())
        .collect();
    for (dtype, bytes) in [(Dtype::F32, &f32_bytes), (Dtype::F64, &f64_bytes)] {
        for start in 0..=values.len() {
            for len in 0..=values.len() - start {
                let mut out = vec![f32::NAN; len];
                to_f32(dtype, bytes, start, &mut out).unwrap();
                assert_all_same(dtype, &out, &values[start..start + len]);
            }
        }
        let mut one = [0.0];
        assert_eq!(to_f32(dtype, bytes, values.len(), &mut one), None);
        assert_eq!(to_f32(dtype, &bytes[1..], values.len() - 1, &mut one), None);
    }
}

#[test]
fn f64_rounds_to_nearest_even() {
    let ulp = 2f64.powi(-23);
    let cases = [
        (1.0 + ulp / 2.0, 1.0),                    // tie, rounds to even
        (1.0 + 1.5 * ulp, 1.0 + 2.0 * ulp as f32), // tie, rounds up to even
        (1.0 + 0.75 * ulp, 1.0 + ulp as f32),
        (f64::MAX, f32::INFINITY),
        (1e-50, 0.0),
    ];
    for (input, want) in cases {
        let got = convert(Dtype::F64, &input.to_le_bytes(), 1);
        assert_eq!(got[0].to_bits(), want.to_bits(), "{input:e}");
    }
}

#[test]
fn non_float_dtypes_and_overflowing_ranges_are_none() {
    let data = [0u8; 64];
    let mut out = [0.0f32; 4];
    for dtype in Dtype::ALL {
        if dtype.is_float() {
            assert_eq!(to_f32(dtype, &data, usize::MAX, &mut out), None, "{dtype}");
            assert_eq!(
                to_f32(dtype, &data, usize::MAX / 2, &mut out),
                None,
                "{dtype}"
            );
            assert!(to_f32(dtype, &data, 0, &mut out).is_some(), "{dtype}");
        } else {
            assert_eq!(to_f32(dtype, &data, 0, &mut out), None, "{dtype}");
        }
    }
}
