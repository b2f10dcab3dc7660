//! `weightkin_core::lap` against brute force (every small shape), against scipy's
//! `linear_sum_assignment` (golden file, `golden/gen_lap_scipy.py`), on degenerate input, and
//! on the case it exists for: recovering a permutation of units from a similarity matrix.

use weightkin_core::lap::{assign, assign_max, Assignment, Cost, LapError};
use weightkin_core::rng::Rng;

/// Checks that `a` is a valid assignment of a `rows × cols` matrix: `min(rows, cols)` pairs,
/// no row or column used twice, the two directions agreeing, and `total` the sum of the
/// matched cells.
fn check_valid<T: Cost>(m: &[T], rows: usize, cols: usize, a: &Assignment) {
    assert_eq!(a.col_for_row().len(), rows);
    assert_eq!(a.row_for_col().len(), cols);
    assert_eq!(a.len(), rows.min(cols));
    assert_eq!(a.pairs().count(), rows.min(cols));
    let mut col_used = vec![false; cols];
    for (r, c) in a.pairs() {
        assert!(!col_used[c], "column {c} used twice");
        col_used[c] = true;
        assert_eq!(a.row_for_col()[c], Some(r));
    }
    for (c, r) in a.row_for_col().iter().enumerate() {
        if let Some(r) = r {
            assert_eq!(a.col_for_row()[*r], Some(c));
        }
    }
    let total: f64 = a.pairs().map(|(r, c)| m[r * cols + c].to_f64()).sum();
    assert_eq!(a.total(), total);
}

/// The optimum by enumeration of every injection of the smaller side into the larger.
fn brute_force(m: &[f64], rows: usize, cols: usize, maximize: bool) -> f64 {
    let (small, large) = (rows.min(cols), rows.max(cols));
    let at = |s: usize, l: usize| {
        if rows <= cols {
            m[s * cols + l]
        } else {
            m[l * cols + s]
        }
    };
    fn go(
        s: usize,
        small: usize,
        large: usize,
        used: &mut Vec<bool>,
        at: &dyn Fn(usize, usize) -> f64,
        maximize: bool,
    ) -> f64 {
        if s == small {
            return 0.0;
        }
        let mut best = if maximize {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
        for l in 0..large {
            if !used[l] {
                used[l] = true;
                let v = at(s, l) + go(s + 1, small, large, used, at, maximize);
                used[l] = false;
                best = if maximize { best.max(v) } else { best.min(v) };
            }
        }
        best
    }
    go(0, small, large, &mut vec![false; large], &at, maximize)
}

#[test]
fn lap_matches_brute_force_on_every_small_shape() {
    let mut rng = Rng::new(15);
    for rows in 1..=7 {
        for cols in 1..=7 {
            let trials = if rows.max(cols) == 7 && rows.min(cols) >= 6 {
                6
            } else {
                25
            };
            for _ in 0..trials {
                // Integer costs: exact sums, so the optimal total is unambiguous; the range
                // gives many ties.
                let m: Vec<f64> = (0..rows * cols).map(|_| rng.below(10) as f64).collect();
                let a = assign(&m, rows, cols).unwrap();
                check_valid(&m, rows, cols, &a);
                assert_eq!(
                    a.total(),
                    brute_force(&m, rows, cols, false),
                    "{rows}×{cols} {m:?}"
                );
                let a = assign_max(&m, rows, cols).unwrap();
                check_valid(&m, rows, cols, &a);
                assert_eq!(
                    a.total(),
                    brute_force(&m, rows, cols, true),
                    "{rows}×{cols} {m:?}"
                );
                // The same matrix as f32 (exact): the same totals.
                let m32: Vec<f32> = m.iter().map(|&x| x as f32).collect();
                let a32 = assign(&m32, rows, cols).unwrap();
                check_valid(&m32, rows, cols, &a32);
                assert_eq!(a32.total(), brute_force(&m, rows, cols, false));
            }
        }
    }
}

#[test]
fn lap_matches_brute_force_on_continuous_costs() {
    // Continuous costs (negative ones included): the optimum is unique, so the totals agree
    // to rounding.
    let mut rng = Rng::new(16);
    for rows in 1..=6 {
        for cols in 1..=6 {
            for _ in 0..10 {
                let m: Vec<f64> = (0..rows * cols).map(|_| rng.normal()).collect();
                let a = assign(&m, rows, cols).unwrap();
                check_valid(&m, rows, cols, &a);
                let want = brute_force(&m, rows, cols, false);
                assert!(
                    (a.total() - want).abs() <= 1e-12 * (1.0 + want.abs()),
                    "{m:?}"
                );
            }
        }
    }
}

/// The case's matrix, regenerated from the seed exactly as `gen_lap_scipy.py` draws it.
fn golden_matrix(seed: u64, rows: usize, cols: usize, kind: &str) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..rows * cols)
        .map(|_| match kind {
            "uniform" => rng.uniform(),
            "int10" => rng.below(10) as f64,
            other => panic!("unknown kind {other}"),
        })
        .collect()
}

#[test]
fn lap_matches_scipy() {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("../golden/lap_scipy.json")).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 10);
    for case in cases {
        let seed = case["seed"].as_u64().unwrap();
        let rows = case["rows"].as_u64().unwrap() as usize;
        let cols = case["cols"].as_u64().unwrap() as usize;
        let kind = case["kind"].as_str().unwrap();
        let maximize = case["maximize"].as_bool().unwrap();
        let want = case["total"].as_f64().unwrap();
        let m = golden_matrix(seed, rows, cols, kind);
        let a = if maximize {
            assign_max(&m, rows, cols)
        } else {
            assign(&m, rows, cols)
        };
        let a = a.unwrap();
        check_valid(&m, rows, cols, &a);
        // scipy sums pairwise, we sum in row order: equal to rounding.
        assert!(
            (a.total() - want).abs() <= 1e-12 * want.abs().max(1.0),
            "seed {seed}: {} against scipy's {want}",
            a.total()
        );
        if let Some(cols_want) = case.get("col_for_row") {
            let cols_want: Vec<Option<usize>> = cols_want
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().map(|c| c as usize))
                .collect();
            assert_eq!(a.col_for_row(), cols_want.as_slice(), "seed {seed}");
        }
    }
}

#[test]
fn lap_empty_sides() {
    let a = assign::<f64>(&[], 0, 0).unwrap();
    assert!(a.is_empty() && a.total() == 0.0);
    let a = assign::<f64>(&[], 0, 5).unwrap();
    assert_eq!(a.row_for_col(), &[None; 5]);
    assert!(a.col_for_row().is_empty() && a.total() == 0.0);
    let a = assign_max::<f32>(&[], 3, 0).unwrap();
    assert_eq!(a.col_for_row(), &[None; 3]);
    assert!(a.row_for_col().is_empty() && a.total() == 0.0);
}

#[test]
fn lap_wrong_shape_is_an_error() {
    assert_eq!(
        assign(&[1.0f64; 5], 2, 3),
        Err(LapError::Shape {
            rows: 2,
            cols: 3,
            len: 5
        })
    );
    assert!(matches!(
        assign(&[1.0f64; 4], usize::MAX, 2),
        Err(LapError::Shape { len: 4, .. })
    ));
    assert!(assign::<f64>(&[], 1, 0).is_ok());
    assert!(matches!(
        assign::<f64>(&[], 1, 1),
        Err(LapError::Shape { .. })
    ));
}

#[test]
fn lap_non_finite_cost_names_the_first_bad_cell() {
    let mut m = vec![1.0f64; 12];
    m[7] = f64::NAN; // row 1, column 3 of 3 × 4
    m[9] = f64::INFINITY;
    match assign(&m, 3, 4) {
        Err(LapError::NotFinite {
            row: 1,
            col: 3,
            value,
        }) => assert!(value.is_nan()),
        other => panic!("{other:?}"),
    }
    m[7] = 0.0;
    assert_eq!(
        assign_max(&m, 3, 4),
        Err(LapError::NotFinite {
            row: 2,
            col: 1,
            value: f64::INFINITY
        })
    );
    // Tall (solved transposed): still named in the caller's orientation.
    let mut m = vec![0.5f32; 8];
    m[5] = f32::NEG_INFINITY; // row 2, column 1 of 4 × 2
    assert_eq!(
        assign(&m, 4, 2),
        Err(LapError::NotFinite {
            row: 2,
            col: 1,
            value: f64::NEG_INFINITY
        })
    );
    let e = assign(&m, 4, 2).unwrap_err().to_string();
    assert!(e.contains("row 2, column 1"), "{e}");
}

#[test]
fn lap_path_overflow_is_an_error() {
    // Finite costs whose reduced costs overflow f64 on the augmenting path.
    let (lo, hi) = (-1e308, 1e308);
    let m = [lo, hi, hi, lo, hi, hi, lo, hi, hi];
    assert!(matches!(assign(&m, 3, 3), Err(LapError::Overflow { .. })));
    // The same structure rescaled solves.
    let m: Vec<f64> = m.iter().map(|x| x * 1e-300).collect();
    let a = assign(&m, 3, 3).unwrap();
    check_valid(&m, 3, 3, &a);
    assert_eq!(a.total(), 1e8);
}

#[test]
fn lap_all_equal_costs_give_the_identity() {
    // Ties are broken by index (module doc): row i takes the first free column.
    for (rows, cols) in [(5, 5), (3, 7), (7, 3), (1, 1)] {
        let m = vec![2.5f64; rows * cols];
        for a in [
            assign(&m, rows, cols).unwrap(),
            assign_max(&m, rows, cols).unwrap(),
        ] {
            check_valid(&m, rows, cols, &a);
            assert_eq!(a.total(), 2.5 * rows.min(cols) as f64);
            assert!(a.pairs().all(|(r, c)| r == c), "{rows}×{cols}: {a:?}");
        }
    }
}

#[test]
fn lap_duplicated_rows() {
    let mut rng = Rng::new(17);
    // Every row the same: every assignment costs the same row sum.
    let row: Vec<f64> = (0..6).map(|_| rng.below(100) as f64).collect();
    let m: Vec<f64> = (0..6).flat_map(|_| row.iter().copied()).collect();
    let a = assign(&m, 6, 6).unwrap();
    check_valid(&m, 6, 6, &a);
    assert_eq!(a.total(), row.iter().sum::<f64>());
    // Each row of a random matrix twice (and a tall version): brute force agrees.
    for (rows, cols) in [(6, 7), (6, 4)] {
        let half: Vec<f64> = (0..rows / 2 * cols).map(|_| rng.below(10) as f64).collect();
        let m: Vec<f64> = half.iter().chain(&half).copied().collect();
        let a = assign(&m, rows, cols).unwrap();
        check_valid(&m, rows, cols, &a);
        assert_eq!(a.total(), brute_force(&m, rows, cols, false));
    }
}

#[test]
fn lap_is_deterministic() {
    // Integer costs with many ties: the same assignment every time, whatever thread asks.
    let mut rng = Rng::new(18);
    let m: Vec<f64> = (0..60 * 80).map(|_| rng.below(4) as f64).collect();
    let first = assign(&m, 60, 80).unwrap();
    let others: Vec<Assignment> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| assign(&m, 60, 80).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(others.iter().all(|a| *a == first));
}

/// Pearson correlation of every row of `a` with every row of `b` (`d` features each), row
/// major `a.len() / d × b.len() / d`.
fn correlations(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let standardise = |m: &[f64]| -> Vec<f64> {
        m.chunks(d)
            .flat_map(|row| {
                let mean = row.iter().sum::<f64>() / d as f64;
                let norm = row.iter().map(|x| (x - mean).powi(2)).sum::<f64>().sqrt();
                row.iter()
                    .map(move |x| (x - mean) / norm)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let (a, b) = (standardise(a), standardise(b));
    a.chunks(d)
        .flat_map(|x| {
            b.chunks(d)
                .map(|y| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>())
        })
        .collect()
}

#[test]
fn lap_recovers_a_permutation_of_units() {
    // Model A has `n` units of `d` weights; B has A's units permuted, plus noise (correlation
    // ≈ 0.9 between a unit and its copy, ≈ 0 ± 0.14 otherwise). assign_max on the
    // correlation matrix must find exactly the permutation.
    let (n, d) = (300, 48);
    let mut rng = Rng::new(19);
    let a: Vec<f64> = (0..n * d).map(|_| rng.normal()).collect();
    let perm = rng.permutation(n); // B's unit k is A's unit perm[k]
    let b: Vec<f64> = perm
        .iter()
        .flat_map(|&i| a[i * d..(i + 1) * d].to_vec())
        .map(|x| x + 0.5 * rng.normal())
        .collect();
    let s = correlations(&a, &b, d);
    let mut want = vec![None; n];
    for (k, &i) in perm.iter().enumerate() {
        want[i] = Some(k);
    }
    let got = assign_max(&s, n, n).unwrap();
    assert_eq!(got.col_for_row(), want.as_slice());
    // Same from the f32 matrix, and from the cost form 1 − corr with assign.
    let s32: Vec<f32> = s.iter().map(|&x| x as f32).collect();
    assert_eq!(
        assign_max(&s32, n, n).unwrap().col_for_row(),
        want.as_slice()
    );
    let cost: Vec<f64> = s.iter().map(|x| 1.0 - x).collect();
    assert_eq!(assign(&cost, n, n).unwrap().col_for_row(), want.as_slice());

    // Width-pruned: B keeps 200 of A's units (permuted). Rows are A's units (tall, 300 × 200)
    // and the other way round (wide): the kept units are matched, the pruned ones left out.
    let kept = 200;
    let sb = correlations(&a, &b[..kept * d], d);
    let tall = assign_max(&sb, n, kept).unwrap();
    let mut want_tall = vec![None; n];
    for (k, &i) in perm[..kept].iter().enumerate() {
        want_tall[i] = Some(k);
    }
    assert_eq!(tall.col_for_row(), want_tall.as_slice());
    let sw = correlations(&b[..kept * d], &a, d);
    let wide = assign_max(&sw, kept, n).unwrap();
    let want_wide: Vec<Option<usize>> = perm[..kept].iter().map(|&i| Some(i)).collect();
    assert_eq!(wide.col_for_row(), want_wide.as_slice());
}
