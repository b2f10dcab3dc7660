//! Linear assignment: the minimum-cost (or maximum-score) matching of the rows of a dense
//! cost matrix to its columns.
//!
//! weightkin pairs things by content with it: tensors of one shape group (a few hundred at
//! most), and — issue 15 — hidden units, attention heads and vocabulary rows of two models,
//! where a permuted copy is recovered by matching units on the similarity of their weights.
//! Issue 15 sets the bar: a 4096 × 4096 matrix in under 10 s on the 2-core machine, within a
//! 300 MB RSS budget.
//!
//! # Algorithm
//!
//! Shortest augmenting paths with dual variables, as described by Crouse ("On implementing
//! 2D rectangular assignment algorithms", IEEE TAES 52(4), 2016) and implemented by scipy's
//! `linear_sum_assignment` — the reference the tests compare against
//! (`tests/golden/lap_scipy.json`). Two changes, neither of which changes the answer:
//!
//! - **Row reduction and a greedy start** (Jonker & Volgenant 1987, the initialisation half
//!   of LAPJV): each row's dual starts at its minimum cost and each row whose cheapest column
//!   is still free takes it. The duals stay feasible (reduced costs ≥ 0, zero on assigned
//!   pairs, zero column duals on free columns, which the rectangular problem needs), so the
//!   augmenting phase is the same algorithm started from a partial solution. On the case
//!   weightkin meets — a permuted copy, one clear optimum — almost every row is placed by
//!   the greedy start and the whole solve costs a few passes over the matrix; on uniformly
//!   random costs about 1 − 1/e of the rows are.
//! - **No copies for maximisation or f32 input**: the matrix is read through a sign and a
//!   widening conversion, so [`assign_max`] on an f32 matrix holds that matrix and O(rows +
//!   cols) working memory, nothing more. (Tall matrices, rows > cols, are solved transposed:
//!   that one case copies the matrix, in its own element type.)
//!
//! Worst case O(rows² · cols) time; working memory O(rows + cols) besides the matrix. All
//! arithmetic is f64 whatever the input type. Measured (BENCHMARKS.md, "Linear assignment"):
//! 4096² uniform random costs in 1–2.5 s, on par with scipy; the permuted-copy case in
//! 0.02–0.03 s. The cubic worst case is real on structured matrices — many identical rows
//! (every row the same: 35 s at 4096²), rank-1 costs — so callers merge identical rows
//! before solving.
//!
//! # Why not a crate
//!
//! Checked on crates.io (2026-12): `pathfinding::kuhn_munkres` (maintained) needs an `Ord`
//! weight type — no f64 without a wrapper or rounding to integers — panics when rows > cols
//! or the total overflows, and is the O(n³) Hungarian method without the shortest-path
//! speed-ups. `lapjv` 0.3 is
//! square only (a rectangular problem would need a padded copy: 4096 × 14336 f64 padded is
//! 1.6 GB), is marked maintenance "as-is", takes an `ndarray` matrix, and has `unwrap`s in
//! its solver. `lsap` 1.0 is the same algorithm as here (a translation of scipy's C++), but
//! copies the whole matrix to maximise or to transpose, has f64 input only, an error without
//! the offending cell, and pulls in `derive_more` 0.99 (syn 1) for its error type. The
//! algorithm itself is ~100 lines; owning it gives f32 input, no maximisation copy, a
//! structured error and the determinism contract below, and is tested against brute force
//! and against scipy.
//!
//! # Determinism
//!
//! The solver is sequential and its ties are broken by index: the greedy start gives a row
//! the first free column among its cheapest, rows are augmented in increasing order, and the
//! augmenting search prefers, among equally short paths, one ending at a free column, and
//! otherwise decides by its scan order, which depends on the matrix only. No floating-point
//! operation depends on threads or on the platform's SIMD width. So the same matrix gives
//! the same assignment on every run, machine and thread count. Where several assignments are optimal, which one is
//! returned is fixed but not otherwise specified; the total is the optimum either way.
//!
//! # Wide matrices
//!
//! The matrix is dense and held by the caller: 4096² f32 is 67 MB, but a 14 336-wide FFN
//! layer would need 822 MB in f32 — past the tool's RSS budget. Matching above a width is
//! the caller's job (issue 15) and this API is what it builds on: solve a rectangular
//! problem on a sample of the rows (`rows ≪ cols`, every sampled row matched, memory `rows ·
//! cols` values), infer the rest from the matched rows, and verify; or split the units into
//! candidate blocks and solve each. No such mode is implemented here.

use std::fmt;

/// A cost (or score) matrix element: `f32` or `f64`. Arithmetic is f64 either way; f32
/// halves the matrix's memory.
pub trait Cost: Copy + fmt::Display + sealed::Sealed {
    /// The value as f64 (exact for both types).
    fn to_f64(self) -> f64;
}

impl Cost for f32 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Cost for f64 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
}

mod sealed {
    /// Only the two float types implement [`super::Cost`]: the solver's exactness and
    /// finiteness arguments are made for them.
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// Why a matrix could not be solved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LapError {
    /// The slice does not hold `rows × cols` values (or that product overflows `usize`).
    #[error("cost matrix of {rows} × {cols} given {len} values")]
    Shape {
        /// Rows claimed.
        rows: usize,
        /// Columns claimed.
        cols: usize,
        /// Values in the slice.
        len: usize,
    },
    /// A cost is NaN or infinite (the first such cell in row-major order).
    #[error("cost at row {row}, column {col} is {value}; costs must be finite")]
    NotFinite {
        /// Its row.
        row: usize,
        /// Its column.
        col: usize,
        /// The value (widened to f64).
        value: f64,
    },
    /// The costs span so wide a range (near ±`f64::MAX`) that a path length overflowed
    /// during the solve. Rescale the matrix.
    #[error("cost matrix values too large: a path length overflowed while assigning row {row}")]
    Overflow {
        /// The row being assigned when it happened.
        row: usize,
    },
}

/// The solution of one assignment problem: which column each row got, and the total.
///
/// Every row of the smaller side has exactly one partner; with rows > cols, `rows − cols`
/// rows are left out (`None`), with rows < cols as many columns are.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    col_for_row: Vec<Option<usize>>,
    row_for_col: Vec<Option<usize>>,
    total: f64,
}

impl Assignment {
    /// For each row, its column (`None` only for rows left out when rows > cols).
    pub fn col_for_row(&self) -> &[Option<usize>] {
        &self.col_for_row
    }

    /// For each column, its row (`None` only for columns left out when cols > rows).
    pub fn row_for_col(&self) -> &[Option<usize>] {
        &self.row_for_col
    }

    /// The matched `(row, column)` pairs in increasing row order.
    pub fn pairs(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.col_for_row
            .iter()
            .enumerate()
            .filter_map(|(r, c)| c.map(|c| (r, c)))
    }

    /// Number of matched pairs: `min(rows, cols)`.
    pub fn len(&self) -> usize {
        self.col_for_row.len().min(self.row_for_col.len())
    }

    /// True when nothing was matched (0 rows or 0 columns).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sum of the matched cells' values, in row order, in f64: the minimal total cost for
    /// [`assign`], the maximal total score for [`assign_max`]. Infinite only if that sum
    /// overflows f64.
    pub fn total(&self) -> f64 {
        self.total
    }
}

/// Minimum-cost assignment for a dense row-major `rows × cols` cost matrix.
///
/// Rectangular both ways: every row gets a column when rows ≤ cols, every column a row when
/// rows > cols. All costs must be finite ([`LapError::NotFinite`] names the first that is
/// not). Deterministic (see the module doc). `f32` or `f64` costs.
///
/// ```
/// use weightkin_core::lap::assign;
/// // Row 0 is cheapest in column 1, row 1 too; the optimum gives row 1 column 0.
/// let cost = [4.0, 1.0, 3.0,
///             2.0, 0.0, 5.0];
/// let a = assign(&cost, 2, 3).unwrap();
/// assert_eq!(a.col_for_row(), &[Some(1), Some(0)]);
/// assert_eq!(a.row_for_col(), &[Some(1), Some(0), None]);
/// assert_eq!(a.total(), 3.0);
/// ```
pub fn assign<T: Cost>(cost: &[T], rows: usize, cols: usize) -> Result<Assignment, LapError> {
    solve(cost, rows, cols, 1.0)
}

/// Maximum-score assignment (e.g. of similarities): [`assign`] of the negated matrix,
/// without copying it. [`Assignment::total`] is the maximal total score.
///
/// ```
/// use weightkin_core::lap::assign_max;
/// let similarity: [f32; 4] = [0.1, 0.9,
///                             0.8, 0.2];
/// let a = assign_max(&similarity, 2, 2).unwrap();
/// assert_eq!(a.col_for_row(), &[Some(1), Some(0)]);
/// assert!((a.total() - 1.7).abs() < 1e-6);
/// ```
pub fn assign_max<T: Cost>(score: &[T], rows: usize, cols: usize) -> Result<Assignment, LapError> {
    solve(score, rows, cols, -1.0)
}

/// Marks "no partner" in the solver's index arrays.
const NONE: usize = usize::MAX;

/// Validates, orients the matrix so that rows ≤ cols, solves, and maps the answer back.
fn solve<T: Cost>(m: &[T], rows: usize, cols: usize, sign: f64) -> Result<Assignment, LapError> {
    if rows.checked_mul(cols) != Some(m.len()) {
        return Err(LapError::Shape {
            rows,
            cols,
            len: m.len(),
        });
    }
    if let Some(k) = m.iter().position(|x| !x.to_f64().is_finite()) {
        return Err(LapError::NotFinite {
            row: k / cols,
            col: k % cols,
            value: m[k].to_f64(),
        });
    }
    let mut col_for_row = vec![None; rows];
    let mut row_for_col = vec![None; cols];
    if rows == 0 || cols == 0 {
        // Nothing to match (and `chunks_exact(0)` would panic).
    } else if rows <= cols {
        for (r, c) in shortest_paths(m, rows, cols, sign)?.into_iter().enumerate() {
            col_for_row[r] = Some(c);
            row_for_col[c] = Some(r);
        }
    } else {
        // Tall: solve the transpose, whose rows are our columns.
        let mut t = Vec::with_capacity(m.len());
        for c in 0..cols {
            t.extend((0..rows).map(|r| m[r * cols + c]));
        }
        for (c, r) in shortest_paths(&t, cols, rows, sign)?
            .into_iter()
            .enumerate()
        {
            col_for_row[r] = Some(c);
            row_for_col[c] = Some(r);
        }
    }
    let total = col_for_row
        .iter()
        .enumerate()
        .filter_map(|(r, c)| c.map(|c| m[r * cols + c].to_f64()))
        .sum();
    Ok(Assignment {
        col_for_row,
        row_for_col,
        total,
    })
}

/// The column of each row minimising `Σ sign · c[r][col(r)]`, for `nr ≤ nc`, `c.len() = nr ·
/// nc`, all values finite.
///
/// Crouse's shortest augmenting path algorithm (scipy's `linear_sum_assignment`) after a row
/// reduction and greedy start. Invariants between augmentations: the reduced cost `sign ·
/// c[i][j] − u[i] − v[j]` is ≥ 0 everywhere and 0 on assigned pairs, and `v[j] = 0` on free
/// columns — the optimality conditions of the rectangular problem once every row is assigned.
fn shortest_paths<T: Cost>(
    c: &[T],
    nr: usize,
    nc: usize,
    sign: f64,
) -> Result<Vec<usize>, LapError> {
    let mut u = vec![0.0f64; nr];
    let mut v = vec![0.0f64; nc];
    let mut col4row = vec![NONE; nr];
    let mut row4col = vec![NONE; nc];

    // Row reduction and greedy start: u[i] = min_j c[i][j] (v = 0 keeps every reduced cost
    // ≥ 0), and row i takes the first free column attaining it.
    for (i, row) in c.chunks_exact(nc).enumerate() {
        let min = row
            .iter()
            .map(|x| sign * x.to_f64())
            .fold(f64::INFINITY, f64::min);
        u[i] = min;
        if let Some(j) = (0..nc).find(|&j| row4col[j] == NONE && sign * row[j].to_f64() == min) {
            col4row[i] = j;
            row4col[j] = i;
        }
    }

    // Scratch of the augmenting search, reused across rows.
    let mut spc = vec![f64::INFINITY; nc]; // shortest path cost to each column
    let mut path = vec![NONE; nc]; // the row before each column on its shortest path
    let mut remaining: Vec<usize> = Vec::with_capacity(nc); // columns not yet scanned
    let mut scanned_rows: Vec<usize> = Vec::new();
    let mut scanned_cols: Vec<usize> = Vec::new();

    for cur in 0..nr {
        if col4row[cur] != NONE {
            continue;
        }
        // Dijkstra from row `cur` over reduced costs until a free column is reached.
        remaining.clear();
        // Reverse order as in scipy (its issue 11602: a constant matrix then gives the
        // identity); `swap_remove` below changes the order the same way on every run.
        remaining.extend((0..nc).rev());
        spc.fill(f64::INFINITY);
        scanned_rows.clear();
        scanned_cols.clear();
        let mut min_val = 0.0f64;
        let mut i = cur;
        let sink = loop {
            scanned_rows.push(i);
            let row = &c[i * nc..(i + 1) * nc];
            let base = min_val - u[i];
            let mut lowest = f64::INFINITY;
            let mut index = NONE;
            for (it, &j) in remaining.iter().enumerate() {
                let r = base + sign * row[j].to_f64() - v[j];
                if r < spc[j] {
                    path[j] = i;
                    spc[j] = r;
                }
                // Among equally short paths prefer one that ends at a free column: it ends
                // the search (scipy does the same; it matters for integer costs).
                if spc[j] < lowest || (spc[j] == lowest && row4col[j] == NONE) {
                    lowest = spc[j];
                    index = it;
                }
            }
            // Finite costs give finite path lengths unless the arithmetic overflowed; with
            // rows ≤ cols a column always remains, so `index` is set.
            if !lowest.is_finite() || index == NONE {
                return Err(LapError::Overflow { row: cur });
            }
            min_val = lowest;
            let j = remaining.swap_remove(index);
            scanned_cols.push(j);
            if row4col[j] == NONE {
                break j;
            }
            i = row4col[j];
        };

        // Update the duals: keeps reduced costs ≥ 0 and makes them 0 along the path.
        u[cur] += min_val;
        for &i in &scanned_rows[1..] {
            u[i] += min_val - spc[col4row[i]];
        }
        for &j in &scanned_cols {
            v[j] -= min_val - spc[j];
        }

        // Augment: flip the path back from the sink to `cur`.
        let mut j = sink;
        loop {
            let i = path[j];
            row4col[j] = i;
            std::mem::swap(&mut col4row[i], &mut j);
            if i == cur {
                break;
            }
        }
    }
    Ok(col4row)
}
