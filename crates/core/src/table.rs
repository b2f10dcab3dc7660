//! [`TensorTable`]: what an opened model says about itself before any tensor is read.
//!
//! Every format ends its header parsing the same way: tensors sorted by name, a name seen
//! twice refused, lookups by name and index, the checks a read starts with. That is written
//! once, here, so that a format implements only what differs — parsing its header into a
//! table, and reading bytes ([`WeightSource::read_f32`], [`WeightSource::raw`]) — and every
//! other [`WeightSource`] accessor is a provided method over [`WeightSource::table`].
//!
//! A format keeps, for each tensor, where its bytes are (a byte range, a storage layout). The
//! table does not know that type: [`TensorTable::build`] takes each tensor with its locator
//! as a [`Located`] and hands the locators back in the table's order, so a format indexes
//! them with the same index as [`TensorTable::tensors`].

use std::collections::BTreeMap;
use std::path::PathBuf;

#[cfg(doc)]
use crate::WeightSource;
use crate::{Error, FileInfo, Result, TensorInfo, Transform};

/// One tensor as a format found it, with `at`, where the format will find its bytes.
#[derive(Debug, Clone)]
pub struct Located<L> {
    /// The tensor's metadata.
    pub info: TensorInfo,
    /// Where its bytes are, in the format's own terms.
    pub at: L,
}

/// An opened model's files and tensors (sorted by name, names unique), with the format's
/// metadata and transforms. See the module documentation.
#[derive(Debug, Clone)]
pub struct TensorTable {
    format: &'static str,
    files: Vec<FileInfo>,
    tensors: Vec<TensorInfo>,
    metadata: BTreeMap<String, String>,
    transforms: Vec<Transform>,
}

/// A table and its tensors' locators, parallel to [`TensorTable::tensors`].
#[derive(Debug)]
pub struct Sorted<L> {
    /// The table.
    pub table: TensorTable,
    /// `locators[i]` is where tensor `i` of the table is.
    pub locators: Vec<L>,
}

impl TensorTable {
    /// Builds the table of a model opened by format `format` from `files`: sorts `tensors` by
    /// name and refuses a name that appears twice ([`Error::DuplicateTensor`], naming the
    /// files of both; the sort is stable, so `first` is the earlier of the two in `tensors`).
    /// Metadata and transforms start empty ([`TensorTable::with_metadata`],
    /// [`TensorTable::with_transforms`]).
    pub fn build<L>(
        format: &'static str,
        files: Vec<FileInfo>,
        mut tensors: Vec<Located<L>>,
    ) -> Result<Sorted<L>> {
        sort_unique(
            &mut tensors,
            |t| &t.info.name,
            |t| {
                files
                    .get(t.info.file)
                    .map(|f| f.path.clone())
                    .unwrap_or_default()
            },
        )?;
        let (tensors, locators) = tensors.into_iter().map(|t| (t.info, t.at)).unzip();
        Ok(Sorted {
            table: TensorTable {
                format,
                files,
                tensors,
                metadata: BTreeMap::new(),
                transforms: Vec::new(),
            },
            locators,
        })
    }

    /// The table with the format-level metadata `metadata` ([`WeightSource::metadata`]).
    pub fn with_metadata(mut self, metadata: BTreeMap<String, String>) -> TensorTable {
        self.metadata = metadata;
        self
    }

    /// The table with the transforms the format applied ([`WeightSource::transforms`]).
    pub fn with_transforms(mut self, transforms: Vec<Transform>) -> TensorTable {
        self.transforms = transforms;
        self
    }

    /// Name of the format that opened the model.
    pub fn format(&self) -> &'static str {
        self.format
    }

    /// The model's files, in the order the format gave them.
    pub fn files(&self) -> &[FileInfo] {
        &self.files
    }

    /// All tensors, sorted by name, names unique.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Format-level metadata, as text.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Transforms the format applied to present the tensors.
    pub fn transforms(&self) -> &[Transform] {
        &self.transforms
    }

    /// The index of the tensor named `name` (binary search over the sorted names).
    pub fn find(&self, name: &str) -> Option<usize> {
        self.tensors
            .binary_search_by(|t| t.name.as_str().cmp(name))
            .ok()
    }

    /// The checks every [`WeightSource::read_f32`] starts with, in one place: tensor `index`
    /// exists, its dtype converts to f32, and elements `start .. start + len` lie inside it
    /// (checked arithmetic). Returns the tensor's metadata.
    pub fn checked_read(&self, index: usize, start: usize, len: usize) -> Result<&TensorInfo> {
        let info = self.tensors.get(index).ok_or(Error::NoSuchTensor {
            index,
            count: self.tensors.len(),
        })?;
        if !info.dtype.is_float() {
            return Err(Error::NotConvertible {
                tensor: info.name.clone(),
                dtype: info.dtype,
            });
        }
        if start.checked_add(len).is_none_or(|end| end > info.numel) {
            return Err(info.out_of_range(start, len));
        }
        Ok(info)
    }
}

/// Sorts `items` by the tensor name `name` gives each (stable: items of one name keep their
/// order) and refuses a name that appears twice: [`Error::DuplicateTensor`], naming the files
/// `file` gives for the first two items of that name. The one name-sorting step of every
/// format: [`TensorTable::build`] uses it, and so does a format that must refuse a duplicate
/// before it validates entries in name order.
pub(crate) fn sort_unique<T>(
    items: &mut [T],
    name: impl Fn(&T) -> &str,
    file: impl Fn(&T) -> PathBuf,
) -> Result<()> {
    items.sort_by(|a, b| name(a).cmp(name(b)));
    match items
        .windows(2)
        .find(|w| matches!(w, [a, b] if name(a) == name(b)))
    {
        Some([a, b]) => Err(Error::DuplicateTensor {
            tensor: name(a).to_owned(),
            first: file(a),
            second: file(b),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::Dtype;

    fn located(name: &str, file: usize, at: u32) -> Located<u32> {
        let mut info = TensorInfo::new(name.to_owned(), vec![2], Dtype::F32).unwrap();
        info.file = file;
        Located { info, at }
    }

    fn files(n: usize) -> Vec<FileInfo> {
        (0..n)
            .map(|i| FileInfo {
                path: PathBuf::from(format!("f{i}")),
                size: 8,
            })
            .collect()
    }

    #[test]
    fn sorts_by_name_and_carries_locators() {
        let sorted = TensorTable::build(
            "t",
            files(1),
            vec![located("b", 0, 1), located("a", 0, 2), located("c", 0, 3)],
        )
        .unwrap();
        let names: Vec<_> = sorted.table.tensors().iter().map(|t| &t.name).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(sorted.locators, [2, 1, 3]);
        assert_eq!(sorted.table.find("c"), Some(2));
        assert_eq!(sorted.table.find("d"), None);
        assert_eq!(sorted.table.format(), "t");
    }

    #[test]
    fn duplicate_names_the_files_in_input_order() {
        let err = TensorTable::build(
            "t",
            files(3),
            vec![located("x", 2, 0), located("a", 0, 0), located("x", 1, 0)],
        )
        .unwrap_err();
        let (f1, f2) = (PathBuf::from("f1"), PathBuf::from("f2"));
        assert!(
            matches!(&err, Error::DuplicateTensor { tensor, first, second }
                if tensor == "x" && *first == f2 && *second == f1),
            "{err}"
        );
    }

    #[test]
    fn checked_read_refuses_missing_tensors_and_ranges() {
        let mut int = located("i", 0, 0);
        int.info.dtype = Dtype::I32;
        let table = TensorTable::build("t", files(1), vec![located("f", 0, 0), int])
            .unwrap()
            .table;
        assert!(table.checked_read(0, 0, 2).is_ok());
        assert!(matches!(
            table.checked_read(0, 1, 2),
            Err(Error::ReadOutOfRange { .. })
        ));
        assert!(matches!(
            table.checked_read(0, usize::MAX, 2),
            Err(Error::ReadOutOfRange { .. })
        ));
        assert!(matches!(
            table.checked_read(1, 0, 1),
            Err(Error::NotConvertible { .. })
        ));
        assert!(matches!(
            table.checked_read(2, 0, 1),
            Err(Error::NoSuchTensor { index: 2, count: 2 })
        ));
    }
}
