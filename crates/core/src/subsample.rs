//! Subsets of whole examples of a tensor, for matrix metrics ([`crate::Needs::Tensors`]) on
//! tensors larger than their memory bound ([`crate::Metric::max_elements`]).
//!
//! A metric such as CKA treats a tensor as a matrix of examples × features. Above its bound it
//! is handed the same evenly strided subset of whole examples of both tensors
//! ([`ExampleSample`]), read without ever holding the whole tensor: kept rows are read
//! directly (runs of adjacent kept rows in one call), kept columns are copied out of the
//! tensor streamed in blocks of rows. Which examples are kept depends on the shape and the
//! bound only, never on the thread count.

use rayon::prelude::*;

use crate::{checked_numel, ExampleAxis, Result, Side};

/// Elements converted per read when kept columns are copied out of whole rows (1 MiB of f32
/// per thread), and the most elements of adjacent kept rows read in one call.
const READ_BLOCK: usize = 1 << 18;

/// Elements of kept rows read between two releases of the pages read ([`read_rows`]).
const RELEASE_WINDOW: usize = 1 << 20;

/// Elements of the tensor a window of kept rows may span ([`read_rows`]): rows strided
/// across a large tensor each map a fault-around block of pages (64 KiB) beside the row, so
/// a window bounded by the rows read alone could hold a page block per row of the whole
/// tensor (Gemma-3's 671 MB embedding: about 105 MB per side for one shift null).
const SPAN_WINDOW: usize = 1 << 23;

/// Which examples of a tensor a metric is given when the tensor is larger than the metric's
/// bound: `kept` of its `examples` examples (each of `features` elements), example `i <
/// kept` being example `⌊i · examples / kept⌋` ([`Self::index`]).
///
/// The tensor is viewed as a matrix `[shape[0], numel / shape[0]]`; a tensor of rank < 2 as
/// `[numel, 1]`, subsampled along its only axis whatever the metric's axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExampleSample {
    /// The axis examples lie along (rows for a tensor of rank < 2).
    pub axis: ExampleAxis,
    /// Examples in the tensor.
    pub examples: usize,
    /// Elements per example.
    pub features: usize,
    /// Examples kept: `⌊max_elements / features⌋`, so that `kept · features ≤ max_elements`.
    /// Zero when a single example is larger than the bound.
    pub kept: usize,
}

impl ExampleSample {
    /// The subsample a metric reading examples along `axis`, given at most `max_elements`
    /// elements per side, gets of a tensor of `shape`; `None` when the tensor fits the bound
    /// (the metric gets it whole).
    pub fn plan(shape: &[usize], axis: ExampleAxis, max_elements: usize) -> Option<ExampleSample> {
        let numel = checked_numel(shape)?;
        if numel <= max_elements {
            return None;
        }
        // numel > max_elements ≥ 0, so every dimension is non-zero.
        let (rows, cols) = match shape {
            [rows, ..] if shape.len() >= 2 => (*rows, numel / *rows),
            _ => (numel, 1),
        };
        let (axis, examples, features) = match axis {
            ExampleAxis::Columns if shape.len() >= 2 => (ExampleAxis::Columns, cols, rows),
            _ => (ExampleAxis::Rows, rows, cols),
        };
        Some(ExampleSample {
            axis,
            examples,
            features,
            kept: (max_elements / features).min(examples),
        })
    }

    /// The tensor's index (row, or column) of kept example `i`: `⌊i · examples / kept⌋`.
    /// Strictly increasing in `i`, spread evenly over the tensor, the first example always
    /// kept.
    pub fn index(&self, i: usize) -> usize {
        // u128: the product cannot overflow.
        (i as u128 * self.examples as u128 / self.kept.max(1) as u128) as usize
    }

    /// Elements of the subsample: `kept · features`.
    pub fn len(&self) -> usize {
        self.kept * self.features
    }

    /// Whether the subsample is empty (no whole example fits the bound).
    pub fn is_empty(&self) -> bool {
        self.kept == 0
    }

    /// The subsample's shape, for a tensor of `shape`: `shape` with `shape[0]` replaced by
    /// `kept` for row examples (`[kept]` for rank < 2), `[shape[0], kept]` for column
    /// examples.
    pub fn shape(&self, shape: &[usize]) -> Vec<usize> {
        match (self.axis, shape) {
            (ExampleAxis::Columns, [rows, ..]) => vec![*rows, self.kept],
            (ExampleAxis::Rows, [_, rest @ ..]) => std::iter::once(self.kept)
                .chain(rest.iter().copied())
                .collect(),
            _ => vec![self.kept],
        }
    }
}

/// Reads the examples `sample` keeps of tensor `side` as f32, row-major in the
/// subsample's shape ([`ExampleSample::shape`]). Memory: the result, plus one block of
/// 2¹⁸ elements (1 MiB) per thread for column examples. Pages of the tensor read through
/// its memory map are handed back as they are done with ([`crate::MappedFile::release`]).
pub fn read_examples(side: Side<'_>, sample: &ExampleSample) -> Result<Vec<f32>> {
    let mut out = vec![0f32; sample.len()];
    if out.is_empty() {
        return Ok(out);
    }
    match sample.axis {
        ExampleAxis::Rows => read_rows(side, sample, &mut out)?,
        ExampleAxis::Columns => read_columns(side, sample, &mut out)?,
    }
    Ok(out)
}

/// Kept rows, each run of adjacent kept rows (at most [`READ_BLOCK`] elements, or one row)
/// read straight into its place in `out`. Runs are read in windows of about
/// [`RELEASE_WINDOW`] elements, in parallel within a window; after each window the tensor's
/// pages up to the next window are handed back, including those the kernel mapped around
/// the rows read (fault-around) — which would otherwise add up to the whole tensor.
fn read_rows(side: Side<'_>, s: &ExampleSample, out: &mut [f32]) -> Result<()> {
    let p = s.features;
    let run_rows = (READ_BLOCK / p).max(1);
    // Windows of runs: (first source row, destination) per run, in output order.
    let mut windows: Vec<Vec<(usize, &mut [f32])>> = Vec::new();
    let mut held = RELEASE_WINDOW;
    let mut window_row = 0;
    let mut rest = out;
    let mut i = 0;
    while i < s.kept {
        let first = s.index(i);
        let mut n = 1;
        while i + n < s.kept && n < run_rows && s.index(i + n) == first + n {
            n += 1;
        }
        let (dst, tail) = rest
            .split_at_mut_checked(n * p)
            .ok_or_else(|| out_of_range(side, first * p, n * p))?;
        if held >= RELEASE_WINDOW
            || first.saturating_sub(window_row).saturating_mul(p) >= SPAN_WINDOW
        {
            windows.push(Vec::new());
            held = 0;
            window_row = first;
        }
        held += dst.len();
        if let Some(w) = windows.last_mut() {
            w.push((first, dst));
        }
        rest = tail;
        i += n;
    }
    // Where each window's release ends: where the next window starts, or the tensor's end.
    let numel = s.examples * s.features;
    let ends: Vec<usize> = windows
        .iter()
        .skip(1)
        .map(|w| w.first().map_or(numel, |(row, _)| row * p))
        .chain(std::iter::once(numel))
        .collect();
    let mut released = 0;
    for (window, end) in windows.into_iter().zip(ends) {
        window
            .into_par_iter()
            .try_for_each(|(first, dst)| side.read_f32(first * p, dst))?;
        release(side, released, end - released);
        released = end;
    }
    Ok(())
}

/// Kept columns, copied out of the tensor read in blocks of whole rows (a row larger than
/// [`READ_BLOCK`] in segments, skipping those without a kept column), each block's pages
/// handed back once it is copied.
fn read_columns(side: Side<'_>, s: &ExampleSample, out: &mut [f32]) -> Result<()> {
    let (cols, k) = (s.examples, s.kept);
    let kept: Vec<usize> = (0..k).map(|i| s.index(i)).collect();
    let block_rows = (READ_BLOCK / cols).max(1);
    let read = out
        .par_chunks_mut(block_rows * k)
        .enumerate()
        .try_for_each_init(Vec::new, |buf: &mut Vec<f32>, (b, dst)| {
            let first = b * block_rows * cols;
            if cols <= READ_BLOCK {
                buf.resize(dst.len() / k * cols, 0.0);
                side.read_f32(first, buf)?;
                for (d, row) in dst.chunks_mut(k).zip(buf.chunks(cols)) {
                    for (x, &c) in d.iter_mut().zip(&kept) {
                        *x = row.get(c).copied().unwrap_or_default();
                    }
                }
                release(side, first, buf.len());
                return Ok(());
            }
            // One row (block_rows = 1), in segments of READ_BLOCK columns.
            let mut j = 0;
            for c0 in (0..cols).step_by(READ_BLOCK) {
                let c1 = cols.min(c0 + READ_BLOCK);
                let end = j + kept.get(j..).map_or(0, |r| r.partition_point(|&c| c < c1));
                if end > j {
                    buf.resize(c1 - c0, 0.0);
                    side.read_f32(first + c0, buf)?;
                    for (x, &c) in dst.iter_mut().skip(j).zip(&kept[j..end]) {
                        *x = buf.get(c - c0).copied().unwrap_or_default();
                    }
                    release(side, first + c0, buf.len());
                }
                j = end;
            }
            Ok(())
        });
    // Blocks hand their pages back as they finish; what the kernel mapped around a block
    // whose neighbour had already finished is handed back here.
    release(side, 0, s.examples * s.features);
    read
}

fn out_of_range(side: Side<'_>, start: usize, len: usize) -> crate::Error {
    let (tensor, numel) = side
        .source
        .tensors()
        .get(side.index)
        .map_or_else(|| (String::new(), 0), |t| (t.name.clone(), t.numel));
    crate::Error::ReadOutOfRange {
        tensor,
        start,
        len,
        numel,
    }
}

/// Hands back the pages holding elements `start .. start + len` of tensor `side`, when the
/// source reads it from a memory map.
fn release(side: Side<'_>, start: usize, len: usize) {
    let Some(raw) = side.raw() else {
        return;
    };
    let bits = raw.dtype.bits() as usize;
    let (Some(from), Some(to)) = (
        start.checked_mul(bits).map(|b| b / 8),
        start
            .checked_add(len)
            .and_then(|e| e.checked_mul(bits))
            .map(|b| b.div_ceil(8)),
    ) else {
        return;
    };
    if let Some(part) = raw.bytes.get(from..to) {
        raw.file.release(part);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn plans() {
        // Fits: whole.
        assert_eq!(ExampleSample::plan(&[4, 4], ExampleAxis::Rows, 16), None);
        let s = ExampleSample::plan(&[10, 3], ExampleAxis::Rows, 16).unwrap();
        assert_eq!((s.examples, s.features, s.kept), (10, 3, 5));
        assert_eq!(
            (0..5).map(|i| s.index(i)).collect::<Vec<_>>(),
            [0, 2, 4, 6, 8]
        );
        assert_eq!(s.shape(&[10, 3]), [5, 3]);
        let s = ExampleSample::plan(&[3, 10], ExampleAxis::Columns, 16).unwrap();
        assert_eq!((s.examples, s.features, s.kept), (10, 3, 5));
        assert_eq!(s.shape(&[3, 10]), [3, 5]);
        // Rank > 2: rows are shape[0], columns the rest flattened.
        let s = ExampleSample::plan(&[6, 2, 2], ExampleAxis::Rows, 12).unwrap();
        assert_eq!((s.kept, s.shape(&[6, 2, 2])), (3, vec![3, 2, 2]));
        let s = ExampleSample::plan(&[2, 3, 2], ExampleAxis::Columns, 8).unwrap();
        assert_eq!(
            (s.examples, s.kept, s.shape(&[2, 3, 2])),
            (6, 4, vec![2, 4])
        );
        // Rank 1: along the only axis.
        let s = ExampleSample::plan(&[100], ExampleAxis::Columns, 30).unwrap();
        assert_eq!(
            (s.axis, s.kept, s.shape(&[100])),
            (ExampleAxis::Rows, 30, vec![30])
        );
        // One example larger than the bound.
        let s = ExampleSample::plan(&[2, 100], ExampleAxis::Rows, 50).unwrap();
        assert!(s.is_empty());
    }

    #[test]
    fn indices_are_strictly_increasing_and_in_range() {
        for (n, k) in [(7usize, 3usize), (152_064, 2048), (100, 99), (5, 1)] {
            let s = ExampleSample {
                axis: ExampleAxis::Rows,
                examples: n,
                features: 1,
                kept: k,
            };
            let idx: Vec<usize> = (0..k).map(|i| s.index(i)).collect();
            assert_eq!(idx[0], 0);
            assert!(idx.windows(2).all(|w| w[0] < w[1]), "{n} {k}");
            assert!(idx[k - 1] < n);
        }
    }
}
