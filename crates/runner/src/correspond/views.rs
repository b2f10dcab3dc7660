//! [`Views`]: a model as the correspondence presents it to the plan and measure stages — its
//! own tensors, plus the parts of fused tensors (q, k and v of a `qkv` projection) and
//! reshaped or transposed views of tensors whose partner stores the same values in another
//! layout. A view never copies a tensor it can read in place: parts along rows read a
//! contiguous element range of their parent; reshapes are the parent's elements under another
//! shape; only column parts and transposes materialise their parent, once, and only up to
//! [`MATERIALISE_MAX`] elements.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use weightkin_core::{
    FetchProgress, FileInfo, Located, RawTensor, Result, StoredRange, StoredRows, TensorInfo,
    TensorTable, Transform, WeightSource,
};

/// The most elements a view materialises (column parts and transposes): 64 MiB of f32.
pub const MATERIALISE_MAX: usize = 1 << 24;

/// Where a view's elements come from.
#[derive(Debug, Clone)]
pub enum Loc {
    /// The parent tensor itself, unchanged.
    Base(usize),
    /// The parent's elements under another shape (equal after dropping dimensions of size
    /// one).
    Reshape(usize),
    /// Rows `start .. start + len` of a parent of `row_len` elements per row.
    Rows {
        /// Parent tensor index.
        parent: usize,
        /// First row.
        start: usize,
        /// Elements per row.
        row_len: usize,
    },
    /// Columns `start .. start + len` of a `rows × cols` parent (materialised).
    Cols {
        /// Parent tensor index.
        parent: usize,
        /// First column.
        start: usize,
        /// Columns kept.
        len: usize,
        /// Parent's columns.
        cols: usize,
    },
    /// The parent's rows (or columns) `index`, in that order: a unit axis reordered to
    /// another model's unit order, or cut to the units it kept ([`crate::align::units`]).
    /// Read row by row, one parent row at a time.
    Gather {
        /// Parent tensor index.
        parent: usize,
        /// Parent's rows (1 for a vector).
        rows: usize,
        /// Parent's columns.
        cols: usize,
        /// Which axis `index` reorders.
        axis: GatherAxis,
        /// The parent's rows (or columns), in the view's order.
        index: std::sync::Arc<Vec<usize>>,
        /// A factor (±1) per gathered row (or column), in the view's order: a residual basis
        /// recovered as a signed permutation ([`crate::align::residual`]).
        sign: Option<std::sync::Arc<Vec<f32>>>,
    },
    /// `left · (parent · diag(scale)) · right` for a `rows × cols` parent (a vector is
    /// `rows × 1`), computed when first read and kept while it is among the most recently
    /// used ([`LINEAR_CACHE_BYTES`]):
    /// a residual stream presented in another model's basis (a rotation, or a projection
    /// between widths) with norm gains folded in ([`crate::align::residual`]).
    Linear {
        /// Parent tensor index.
        parent: usize,
        /// Parent's rows.
        rows: usize,
        /// Parent's columns.
        cols: usize,
        /// A factor per parent column, applied first.
        scale: Option<std::sync::Arc<Vec<f32>>>,
        /// Multiplies from the left (`out_rows × rows`).
        left: Option<std::sync::Arc<Matrix>>,
        /// Multiplies from the right (`cols × out_cols`).
        right: Option<std::sync::Arc<Matrix>>,
    },
    /// The transpose of a `rows × cols` parent (materialised).
    Transpose {
        /// Parent tensor index.
        parent: usize,
        /// Parent's rows.
        rows: usize,
        /// Parent's columns.
        cols: usize,
    },
}

/// A dense row-major f32 matrix (a [`Loc::Linear`] factor).
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// `rows × cols` values, row-major.
    pub data: Vec<f32>,
}

impl Matrix {
    fn as_ref(&self) -> faer::MatRef<'_, f32> {
        faer::MatRef::from_row_major_slice(&self.data, self.rows, self.cols)
    }
}

/// The axis a [`Loc::Gather`] reorders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatherAxis {
    /// Rows (of a matrix, or the elements of a vector).
    Rows,
    /// Columns.
    Cols,
}

impl Loc {
    fn parent(&self) -> usize {
        match *self {
            Loc::Base(p) | Loc::Reshape(p) => p,
            Loc::Rows { parent, .. }
            | Loc::Cols { parent, .. }
            | Loc::Gather { parent, .. }
            | Loc::Linear { parent, .. }
            | Loc::Transpose { parent, .. } => parent,
        }
    }

    /// Elements the location provides from a parent of `numel` elements; 0 when it does not
    /// fit the parent.
    fn provides(&self, numel: usize) -> usize {
        match self {
            Loc::Base(_) | Loc::Reshape(_) | Loc::Transpose { .. } => numel,
            Loc::Rows { start, row_len, .. } => {
                let rows = numel.checked_div(*row_len).unwrap_or(0);
                rows.saturating_sub(*start).saturating_mul(*row_len)
            }
            Loc::Cols {
                start, len, cols, ..
            } => {
                let rows = numel.checked_div(*cols).unwrap_or(0);
                if start.saturating_add(*len) <= *cols {
                    rows.saturating_mul(*len)
                } else {
                    0
                }
            }
            Loc::Gather {
                rows,
                cols,
                axis,
                index,
                ..
            } => {
                let (bound, other) = match axis {
                    GatherAxis::Rows => (*rows, *cols),
                    GatherAxis::Cols => (*cols, *rows),
                };
                let fits =
                    rows.checked_mul(*cols) == Some(numel) && index.iter().all(|&i| i < bound);
                if fits {
                    index.len().saturating_mul(other)
                } else {
                    0
                }
            }
            Loc::Linear {
                rows,
                cols,
                scale,
                left,
                right,
                ..
            } => {
                let fits = rows.checked_mul(*cols) == Some(numel)
                    && scale.as_ref().is_none_or(|s| s.len() == *cols)
                    && left.as_ref().is_none_or(|m| m.cols == *rows)
                    && right.as_ref().is_none_or(|m| m.rows == *cols);
                let out_rows = left.as_ref().map_or(*rows, |m| m.rows);
                let out_cols = right.as_ref().map_or(*cols, |m| m.cols);
                if fits {
                    out_rows.saturating_mul(out_cols)
                } else {
                    0
                }
            }
        }
    }
}

/// A new tensor to present: its name, shape and where its elements come from.
#[derive(Debug, Clone)]
pub struct View {
    /// Name the view is presented under.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its elements.
    pub loc: Loc,
}

/// A view as a table entry: its metadata derived from its parent's (dtype, file, stored
/// name), refused when its element count differs from what its location provides.
fn located_view(base: &dyn WeightSource, v: View) -> Result<Located<Loc>> {
    let parent = base
        .tensors()
        .get(v.loc.parent())
        .ok_or(weightkin_core::Error::NoSuchTensor {
            index: v.loc.parent(),
            count: base.tensors().len(),
        })?;
    let mut info = TensorInfo::new(v.name, v.shape, parent.dtype).map_err(|problem| {
        weightkin_core::Error::InvalidTensor {
            path: base
                .files()
                .get(parent.file)
                .map(|f| f.path.clone())
                .unwrap_or_default(),
            tensor: parent.name.clone(),
            problem,
        }
    })?;
    info.file = parent.file;
    info.stored_name = parent.stored_name.clone();
    if info.name != parent.name {
        info.stored_name = Some(parent.stored_name.clone().unwrap_or(parent.name.clone()));
    }
    let provided = v.loc.provides(parent.numel);
    let fits = match v.loc {
        Loc::Rows { .. } => info.numel <= provided && info.numel > 0,
        _ => info.numel == provided,
    };
    if !fits {
        return Err(info.out_of_range(0, provided));
    }
    Ok(Located { info, at: v.loc })
}

/// A model with views added (see the module documentation).
pub struct Views<'a> {
    base: &'a dyn WeightSource,
    table: TensorTable,
    locs: Vec<Loc>,
    materialised: Vec<OnceLock<std::result::Result<Vec<f32>, String>>>,
    /// [`Loc::Linear`] results, most recently used last, at most [`LINEAR_CACHE_BYTES`].
    computed: Mutex<Vec<(usize, Arc<Vec<f32>>)>>,
}

/// Bytes of computed [`Loc::Linear`] results a [`Views`] keeps for re-reading (the unit
/// alignment reads each layer's tensors several times: its own alignment and the null's).
pub const LINEAR_CACHE_BYTES: usize = 64 << 20;

impl<'a> Views<'a> {
    /// `base` with `views` added. A view whose name a tensor of `base` already has, or whose
    /// element count differs from what its location provides, is refused.
    pub fn new(base: &'a dyn WeightSource, views: Vec<View>) -> Result<Views<'a>> {
        Views::build(base, views, BTreeMap::new())
    }

    /// `base` with some of its tensors replaced in place by views of themselves (same
    /// name, same index; `replacements` maps a tensor index to its view). What the unit
    /// alignment presents: a tensor in another model's unit order.
    pub fn replacing(
        base: &'a dyn WeightSource,
        replacements: BTreeMap<usize, View>,
    ) -> Result<Views<'a>> {
        Views::build(base, Vec::new(), replacements)
    }

    fn build(
        base: &'a dyn WeightSource,
        views: Vec<View>,
        mut replacements: BTreeMap<usize, View>,
    ) -> Result<Views<'a>> {
        let mut located = Vec::new();
        for (i, t) in base.tensors().iter().enumerate() {
            match replacements.remove(&i) {
                Some(v) if v.name == t.name && v.loc.parent() == i => {
                    located.push(located_view(base, v)?)
                }
                Some(v) => return Err(base.tensors()[i].out_of_range(0, v.shape.len())),
                None => located.push(Located {
                    info: t.clone(),
                    at: Loc::Base(i),
                }),
            }
        }
        for v in views {
            located.push(located_view(base, v)?);
        }
        let sorted = TensorTable::build(base.format(), base.files().to_vec(), located)?;
        let table = sorted
            .table
            .with_metadata(base.metadata().clone())
            .with_transforms(base.transforms().to_vec());
        let materialised = sorted.locators.iter().map(|_| OnceLock::new()).collect();
        let computed = Mutex::new(Vec::new());
        Ok(Views {
            base,
            table,
            locs: sorted.locators,
            materialised,
            computed,
        })
    }

    /// Where view `index` comes from.
    pub fn loc(&self, index: usize) -> Option<&Loc> {
        self.locs.get(index)
    }

    /// The index in this view of the base model's tensor `base_index`.
    pub fn of_base(&self, base_index: usize) -> Option<usize> {
        let name = &self.base.tensors().get(base_index)?.name;
        self.table.find(name)
    }

    fn parent_values(&self, index: usize, parent: usize) -> Result<&[f32]> {
        let cell = &self.materialised[index];
        let got = cell.get_or_init(|| {
            let info = &self.base.tensors()[parent];
            if info.numel > MATERIALISE_MAX {
                return Err(format!(
                    "{} has {} elements: more than the {} a transposed or column view reads \
                     into memory",
                    info.name, info.numel, MATERIALISE_MAX
                ));
            }
            let mut v = vec![0f32; info.numel];
            self.base
                .read_f32(parent, 0, &mut v)
                .map_err(|e| e.to_string())?;
            Ok(v)
        });
        got.as_deref().map_err(|msg| weightkin_core::Error::Io {
            path: self
                .base
                .files()
                .first()
                .map(|f| f.path.clone())
                .unwrap_or_default(),
            action: "read a tensor view",
            source: std::io::Error::other(msg.clone()),
        })
    }
}

impl Views<'_> {
    /// A [`Loc::Linear`] view's values: computed on first read, kept until its last element
    /// has been read.
    fn linear_values(&self, index: usize) -> Result<Arc<Vec<f32>>> {
        let Loc::Linear {
            parent,
            rows,
            cols,
            ref scale,
            ref left,
            ref right,
        } = self.locs[index]
        else {
            return Err(weightkin_core::Error::NoSuchTensor {
                index,
                count: self.locs.len(),
            });
        };
        {
            let mut cache = self
                .computed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(k) = cache.iter().position(|(i, _)| *i == index) {
                let hit = cache.remove(k);
                let v = Arc::clone(&hit.1);
                cache.push(hit);
                return Ok(v);
            }
        }
        let info = &self.base.tensors()[parent];
        if info.numel > MATERIALISE_MAX {
            return Err(info.out_of_range(0, MATERIALISE_MAX));
        }
        let mut x = vec![0f32; info.numel];
        self.base.read_f32(parent, 0, &mut x)?;
        // Read whole and converted: its mapped pages can go (a memory hint only).
        if let Some(raw) = self.base.raw(parent) {
            raw.file.release(raw.bytes);
        }
        if let Some(s) = scale {
            for row in x.chunks_exact_mut(cols.max(1)) {
                row.iter_mut().zip(s.iter()).for_each(|(v, f)| *v *= f);
            }
        }
        let mut cur = Matrix {
            rows,
            cols,
            data: x,
        };
        if let Some(r) = right {
            cur = product(&cur, r);
        }
        if let Some(l) = left {
            cur = product(l, &cur);
        }
        let v = Arc::new(cur.data);
        let mut cache = self
            .computed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !cache.iter().any(|(i, _)| *i == index) {
            cache.push((index, Arc::clone(&v)));
        }
        let bytes =
            |c: &[(usize, Arc<Vec<f32>>)]| c.iter().map(|(_, v)| v.len() * 4).sum::<usize>();
        while cache.len() > 1 && bytes(&cache) > LINEAR_CACHE_BYTES {
            cache.remove(0);
        }
        Ok(v)
    }
}

/// `x · y`, computed on one thread (a fixed order of operations, so the same bits on every
/// run and for any thread count).
pub fn product(x: &Matrix, y: &Matrix) -> Matrix {
    let mut data = vec![0f32; x.rows * y.cols];
    faer::linalg::matmul::matmul(
        faer::MatMut::from_row_major_slice_mut(&mut data, x.rows, y.cols),
        faer::Accum::Replace,
        x.as_ref(),
        y.as_ref(),
        1.0f32,
        faer::Par::Seq,
    );
    Matrix {
        rows: x.rows,
        cols: y.cols,
        data,
    }
}

impl WeightSource for Views<'_> {
    fn table(&self) -> &TensorTable {
        &self.table
    }

    fn files(&self) -> &[FileInfo] {
        self.base.files()
    }

    fn transforms(&self) -> &[Transform] {
        self.table.transforms()
    }

    /// The base's: views rearrange tensors, never the tokenizer.
    fn vocabulary(&self) -> Option<&[String]> {
        self.base.vocabulary()
    }

    fn read_f32(&self, index: usize, start: usize, out: &mut [f32]) -> Result<()> {
        self.table.checked_read(index, start, out.len())?;
        match self.locs[index] {
            Loc::Base(p) | Loc::Reshape(p) => self.base.read_f32(p, start, out),
            Loc::Rows {
                parent,
                start: row,
                row_len,
            } => {
                let offset = row.saturating_mul(row_len);
                self.base
                    .read_f32(parent, offset.saturating_add(start), out)
            }
            Loc::Cols {
                parent,
                start: col,
                len,
                cols,
            } => {
                let values = self.parent_values(index, parent)?;
                for (k, o) in out.iter_mut().enumerate() {
                    let e = start + k;
                    let (r, c) = (e / len, e % len);
                    *o = values[r * cols + col + c];
                }
                Ok(())
            }
            Loc::Gather {
                parent,
                cols,
                axis,
                index: ref order,
                ref sign,
                ..
            } => {
                let n = order.len();
                let (mut e, mut done) = (start, 0);
                let mut row = Vec::new();
                while done < out.len() {
                    let take = match axis {
                        GatherAxis::Rows => {
                            let (r, c) = (e / cols, e % cols);
                            let take = (cols - c).min(out.len() - done);
                            self.base.read_f32(
                                parent,
                                order[r] * cols + c,
                                &mut out[done..done + take],
                            )?;
                            take
                        }
                        GatherAxis::Cols => {
                            let (r, c) = (e / n, e % n);
                            row.resize(cols, 0f32);
                            self.base.read_f32(parent, r * cols, &mut row)?;
                            let take = (n - c).min(out.len() - done);
                            for (o, &k) in out[done..done + take].iter_mut().zip(&order[c..]) {
                                *o = row[k];
                            }
                            take
                        }
                    };
                    if let Some(sign) = sign {
                        let n = order.len();
                        for (k, o) in out[done..done + take].iter_mut().enumerate() {
                            let at = e + k;
                            let unit = match axis {
                                GatherAxis::Rows => at / cols,
                                GatherAxis::Cols => at % n,
                            };
                            *o *= sign[unit];
                        }
                    }
                    done += take;
                    e += take;
                }
                // A gathered read touches its parent out of order, so the pass cannot hand
                // back its pages chunk by chunk: the read that ends the tensor hands back all
                // of them (a memory hint: a chunk still being read faults its pages back in).
                if start + out.len() == self.table.tensors()[index].numel {
                    if let Some(raw) = self.base.raw(parent) {
                        raw.file.release(raw.bytes);
                    }
                }
                Ok(())
            }
            Loc::Linear { .. } => {
                let values = self.linear_values(index)?;
                out.copy_from_slice(&values[start..start + out.len()]);
                Ok(())
            }
            Loc::Transpose { parent, rows, .. } => {
                let values = self.parent_values(index, parent)?;
                let cols = values.len() / rows.max(1);
                for (k, o) in out.iter_mut().enumerate() {
                    let e = start + k;
                    // View element (i, j) of [cols, rows] is parent (j, i).
                    let (i, j) = (e / rows, e % rows);
                    *o = values[j * cols + i];
                }
                Ok(())
            }
        }
    }

    fn raw(&self, index: usize) -> Option<RawTensor<'_>> {
        match self.locs.get(index)? {
            Loc::Base(p) => self.base.raw(*p),
            _ => None,
        }
    }

    fn blocks(&self, index: usize) -> Option<RawTensor<'_>> {
        match self.locs.get(index)? {
            Loc::Base(p) => self.base.blocks(*p),
            _ => None,
        }
    }

    fn stored_rows(&self, index: usize) -> Option<StoredRows<'_>> {
        match self.locs.get(index)? {
            Loc::Base(p) => self.base.stored_rows(*p),
            _ => None,
        }
    }

    /// The parent's elements, where the view reads them in order (the whole tensor, a reshape,
    /// a run of rows); gathered, transposed and computed views hand back their pages when
    /// their last element is read.
    fn release(&self, index: usize, start: usize, end: usize) {
        match self.locs.get(index) {
            Some(Loc::Base(p) | Loc::Reshape(p)) => self.base.release(*p, start, end),
            Some(Loc::Rows {
                parent,
                start: row,
                row_len,
            }) => {
                let offset = row.saturating_mul(*row_len);
                self.base.release(
                    *parent,
                    offset.saturating_add(start),
                    offset.saturating_add(end),
                );
            }
            _ => {}
        }
    }

    fn stored_range(&self, index: usize) -> Option<StoredRange> {
        // A view's elements lie within its parent's bytes.
        self.base.stored_range(self.locs.get(index)?.parent())
    }

    fn prefetch(&self, tensors: &[usize], progress: &dyn FetchProgress) -> Result<()> {
        let mut parents: Vec<usize> = tensors
            .iter()
            .filter_map(|&i| self.locs.get(i).map(Loc::parent))
            .collect();
        parents.sort_unstable();
        parents.dedup();
        self.base.prefetch(&parents, progress)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use weightkin_core::testing::SafetensorsBuilder;

    #[test]
    fn parts_reshapes_and_transposes_read_the_right_elements() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let m: Vec<f32> = (0..12).map(|i| i as f32).collect(); // [4, 3]
        SafetensorsBuilder::new()
            .tensor_f32("m", &[4, 3], &m)
            .tensor_f32("v", &[1, 3, 1], &[7.0, 8.0, 9.0])
            .write(&path)
            .unwrap();
        let registry = crate::registry::builtin().unwrap();
        let base = registry
            .open(&path, None, &weightkin_core::Limits::default())
            .unwrap();
        let views = Views::new(
            base.as_ref(),
            vec![
                View {
                    name: "m#b".into(),
                    shape: vec![2, 3],
                    loc: Loc::Rows {
                        parent: 0,
                        start: 2,
                        row_len: 3,
                    },
                },
                View {
                    name: "m#c1".into(),
                    shape: vec![4, 2],
                    loc: Loc::Cols {
                        parent: 0,
                        start: 1,
                        len: 2,
                        cols: 3,
                    },
                },
                View {
                    name: "m.T".into(),
                    shape: vec![3, 4],
                    loc: Loc::Transpose {
                        parent: 0,
                        rows: 4,
                        cols: 3,
                    },
                },
                View {
                    name: "v2".into(),
                    shape: vec![3],
                    loc: Loc::Reshape(1),
                },
            ],
        )
        .unwrap();
        let read = |name: &str| {
            let i = views.find(name).unwrap();
            let mut out = vec![0f32; views.tensors()[i].numel];
            views.read_f32(i, 0, &mut out).unwrap();
            out
        };
        assert_eq!(read("m#b"), vec![6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
        assert_eq!(read("m#c1"), vec![1.0, 2.0, 4.0, 5.0, 7.0, 8.0, 10.0, 11.0]);
        assert_eq!(
            read("m.T"),
            vec![0.0, 3.0, 6.0, 9.0, 1.0, 4.0, 7.0, 10.0, 2.0, 5.0, 8.0, 11.0]
        );
        assert_eq!(read("v2"), vec![7.0, 8.0, 9.0]);
        assert_eq!(read("m"), m);
        // A part past its parent's end is refused.
        let err = Views::new(
            base.as_ref(),
            vec![View {
                name: "m#x".into(),
                shape: vec![3, 3],
                loc: Loc::Rows {
                    parent: 0,
                    start: 2,
                    row_len: 3,
                },
            }],
        );
        assert!(err.is_err());
    }
}
