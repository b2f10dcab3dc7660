//! `read_examples`: the kept rows or columns of a tensor, read without the whole tensor,
//! equal to selecting them from the whole tensor.

use weightkin_core::safetensors::FORMAT;
use weightkin_core::testing::SafetensorsBuilder;
use weightkin_core::{
    read_examples, read_tensor, ExampleAxis, ExampleSample, Format, Limits, Side,
};

fn values(n: usize, seed: u64) -> Vec<f32> {
    weightkin_core::conformance::synthetic(n, seed, 0.0)
}

/// The kept examples picked out of the whole tensor by hand.
fn by_hand(whole: &[f32], shape: &[usize], s: &ExampleSample) -> Vec<f32> {
    let rows = if shape.len() >= 2 {
        shape[0]
    } else {
        whole.len()
    };
    let cols = whole.len() / rows;
    let kept: Vec<usize> = (0..s.kept).map(|i| s.index(i)).collect();
    match s.axis {
        ExampleAxis::Rows => kept
            .iter()
            .flat_map(|&r| whole[r * cols..(r + 1) * cols].iter().copied())
            .collect(),
        ExampleAxis::Columns => (0..rows)
            .flat_map(|r| kept.iter().map(move |&c| whole[r * cols + c]))
            .collect(),
    }
}

#[test]
fn kept_rows_and_columns_equal_a_selection_from_the_whole_tensor() {
    // Shapes for every read path: short rows (runs of adjacent rows), rank 3, rank 1, and a
    // row longer than the read block (columns copied out of segments of one row).
    let cases: &[(&[usize], usize)] = &[
        (&[64, 48], 1024),
        (&[1000, 3], 2000),
        (&[6, 5, 4], 50),
        (&[5000], 3000),
        (&[3, 300_000], 600_000),
        (&[7, 70_000], 150_000),
        // More kept rows than one release window (1 Mi elements): several windows.
        (&[5000, 300], 1_200_000),
    ];
    let dir = tempfile::tempdir().unwrap();
    for &(shape, cap) in cases {
        let numel: usize = shape.iter().product();
        let data = values(numel, numel as u64);
        for bf16 in [false, true] {
            let path = dir.path().join("m.safetensors");
            let builder = SafetensorsBuilder::new();
            let builder = if bf16 {
                builder.tensor_bf16("w", shape, &data)
            } else {
                builder.tensor_f32("w", shape, &data)
            };
            builder.write(&path).unwrap();
            let source = FORMAT.open(&path, &Limits::default()).unwrap();
            let w = Side::new(source.as_ref(), 0);
            let whole = read_tensor(w, numel).unwrap();
            for axis in [ExampleAxis::Rows, ExampleAxis::Columns] {
                let s = ExampleSample::plan(shape, axis, cap).unwrap();
                assert!(
                    s.kept > 1 && s.kept < s.examples,
                    "{shape:?} {axis:?}: {s:?}"
                );
                assert!(s.len() <= cap);
                let got = read_examples(w, &s).unwrap();
                assert_eq!(got.len(), s.shape(shape).iter().product::<usize>());
                let want = by_hand(&whole, shape, &s);
                assert!(
                    got.iter()
                        .map(|v| v.to_bits())
                        .eq(want.iter().map(|v| v.to_bits())),
                    "{shape:?} {axis:?} bf16={bf16}"
                );
            }
            drop(source);
        }
    }
}
