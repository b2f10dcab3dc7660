//! The sketch store: sketches as Parquet, one row per tensor (schema version
//! [`SCHEMA_VERSION`]).
//!
//! One row per tensor keeps the store flat, so DuckDB, pandas or Arrow read it without
//! unnesting (`SELECT model, class, role FROM 'sketches.parquet'`); a model's own columns
//! repeat on each of its rows and cost little because Parquet dictionary-encodes them. A model
//! without float tensors is one row whose tensor columns are null.
//!
//! | column | Arrow type | meaning |
//! |---|---|---|
//! | `schema_version` | UInt32 | [`SCHEMA_VERSION`] (also in the file's key-value metadata, `weightkin.sketch.schema_version`) |
//! | `model` | Utf8 | the model's name in the store (unique) |
//! | `path` | Utf8 | its path as given to `weightkin sketch` (what the audits open) |
//! | `format` | Utf8 | the format that opened it |
//! | `parameters` | UInt64 | elements of all its tensors |
//! | `model_dtype` | Utf8 | the float dtype holding most parameters |
//! | `bits` | Float64 | bits per parameter of `model_dtype` |
//! | `arch_key` | Utf8 | architecture key (16 hex digits; the search's blocks) |
//! | `seed` | UInt64 | seed of the coordinates |
//! | `samples` | UInt32 | values sampled per tensor (`k`) |
//! | `sketch_version` | UInt32 | [`weightkin_runner::sketch::SKETCH_VERSION`] |
//! | `files` | Utf8 | JSON array of `{path, bytes, blake3}` |
//! | `tensor` | Utf8 | name as presented (a fused part is `name#q`) |
//! | `canonical` | Utf8 | canonical name |
//! | `class` | Utf8 | canonical name, layer index → `*` |
//! | `layer` | UInt32 (null: not in a stack) | layer index |
//! | `component` | Utf8 | component |
//! | `shape` | `List<UInt64>` | shape |
//! | `dtype` | Utf8 | stored dtype |
//! | `role` | Utf8 | `evidence`, `init-prior`, `deterministic-buffer`, `generated`, `structured`, `constant` |
//! | `numel` | UInt64 | elements |
//! | `mean`, `sd` | Float64 | exact mean and s.d. of all elements |
//! | `scale` | Float32 | what the values were divided by |
//! | `values` | Binary | min(numel, samples) little-endian IEEE binary16 values |
//!
//! Bytes are deterministic: the same sketches in the same order give the same file (no
//! timestamps; `created_by` is the weightkin version; no compression codec, since f16 sample
//! values barely compress and codecs would add dependencies).
//!
//! Reading checks the metadata key first (another version, or a Parquet file that is not a
//! sketch store, is refused with the file named), then every column's type, then each value
//! (lengths, roles, sizes), so a hostile or truncated file gives an error, never a panic.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, UInt64Builder};
use arrow_array::{
    Array, ArrayRef, BinaryArray, Float32Array, Float64Array, ListArray, RecordBatch, StringArray,
    UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use weightkin_runner::sketch::{
    Sketch, SketchFile, SketchRole, TensorSketch, MAX_SAMPLES, SKETCH_VERSION,
};

use crate::error::{Error, SchemaProblem};

/// Version of the store's schema (the columns above). A change to a column's meaning or
/// type bumps it; readers refuse other versions.
pub const SCHEMA_VERSION: u32 = 1;

/// Key-value metadata key holding [`SCHEMA_VERSION`].
pub const VERSION_KEY: &str = "weightkin.sketch.schema_version";

/// Rows per record batch read or written.
const BATCH_ROWS: usize = 8192;

/// Most rows read from one store (a 7B model has ~300 tensor rows; 2²⁶ rows is ~200 000 such
/// models): a cap on what a hostile file's row count can make the reader allocate.
pub const MAX_ROWS: usize = 1 << 26;

fn schema() -> Arc<Schema> {
    let s = |name| Field::new(name, DataType::Utf8, false);
    let n = |name, t| Field::new(name, t, true);
    Arc::new(Schema::new(vec![
        Field::new("schema_version", DataType::UInt32, false),
        s("model"),
        s("path"),
        s("format"),
        Field::new("parameters", DataType::UInt64, false),
        s("model_dtype"),
        Field::new("bits", DataType::Float64, false),
        s("arch_key"),
        Field::new("seed", DataType::UInt64, false),
        Field::new("samples", DataType::UInt32, false),
        Field::new("sketch_version", DataType::UInt32, false),
        s("files"),
        n("tensor", DataType::Utf8),
        n("canonical", DataType::Utf8),
        n("class", DataType::Utf8),
        n("layer", DataType::UInt32),
        n("component", DataType::Utf8),
        n(
            "shape",
            DataType::List(Arc::new(Field::new("item", DataType::UInt64, true))),
        ),
        n("dtype", DataType::Utf8),
        n("role", DataType::Utf8),
        n("numel", DataType::UInt64),
        n("mean", DataType::Float64),
        n("sd", DataType::Float64),
        n("scale", DataType::Float32),
        n("values", DataType::Binary),
    ]))
}

/// One row: a model and one of its tensors (`None`: a model without float tensors).
type Row<'s> = (&'s Sketch, Option<&'s TensorSketch>);

fn batch(rows: &[Row<'_>]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let m = |f: &dyn Fn(&Sketch) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(s, _)| f(s)),
        ))
    };
    let t = |f: &dyn Fn(&TensorSketch) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter(rows.iter().map(|(_, t)| t.map(f))))
    };
    let mut shape = ListBuilder::new(UInt64Builder::new());
    for (_, t) in rows {
        match t {
            Some(t) => {
                shape.values().append_slice(&t.shape);
                shape.append(true);
            }
            None => shape.append(false),
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(
            rows.iter().map(|_| SCHEMA_VERSION),
        )),
        m(&|s| s.model.clone()),
        m(&|s| s.path.clone()),
        m(&|s| s.format.clone()),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|(s, _)| s.parameters),
        )),
        m(&|s| s.dtype.clone()),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|(s, _)| s.bits),
        )),
        m(&|s| s.arch_key.clone()),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|(s, _)| s.seed),
        )),
        Arc::new(UInt32Array::from_iter_values(
            rows.iter()
                .map(|(s, _)| u32::try_from(s.samples).unwrap_or(u32::MAX)),
        )),
        Arc::new(UInt32Array::from_iter_values(
            rows.iter().map(|(s, _)| s.version),
        )),
        m(&|s| serde_json::to_string(&s.files).unwrap_or_default()),
        t(&|t| t.name.clone()),
        t(&|t| t.canonical.clone()),
        t(&|t| t.class.clone()),
        Arc::new(UInt32Array::from_iter(
            rows.iter().map(|(_, t)| t.and_then(|t| t.layer)),
        )),
        t(&|t| t.component.clone()),
        Arc::new(shape.finish()),
        t(&|t| t.dtype.clone()),
        t(&|t| t.role.as_str().to_owned()),
        Arc::new(UInt64Array::from_iter(
            rows.iter().map(|(_, t)| t.map(|t| t.numel)),
        )),
        Arc::new(Float64Array::from_iter(
            rows.iter().map(|(_, t)| t.map(|t| t.mean)),
        )),
        Arc::new(Float64Array::from_iter(
            rows.iter().map(|(_, t)| t.map(|t| t.sd)),
        )),
        Arc::new(Float32Array::from_iter(
            rows.iter().map(|(_, t)| t.map(|t| t.scale)),
        )),
        Arc::new(BinaryArray::from_iter(rows.iter().map(|(_, t)| {
            t.map(|t| {
                t.values
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<u8>>()
            })
        }))),
    ];
    RecordBatch::try_new(schema(), columns)
}

/// Writes `sketches` to `path` as one Parquet file (written to a temporary file beside it,
/// then renamed into place).
pub fn write_parquet(sketches: &[Sketch], path: &Path) -> Result<(), Error> {
    let parquet_error = |e: Box<dyn std::error::Error + Send + Sync>| Error::Parquet {
        path: path.to_owned(),
        source: e,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|source| Error::Io {
        path: path.to_owned(),
        action: "create a temporary file beside it",
        source,
    })?;
    let props = WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_created_by(format!("weightkin {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            VERSION_KEY.to_owned(),
            SCHEMA_VERSION.to_string(),
        )]))
        .build();
    let file = tmp.as_file().try_clone().map_err(|source| Error::Io {
        path: path.to_owned(),
        action: "write",
        source,
    })?;
    let mut writer =
        ArrowWriter::try_new(file, schema(), Some(props)).map_err(|e| parquet_error(e.into()))?;
    let rows: Vec<Row<'_>> = sketches
        .iter()
        .flat_map(|s| {
            let mut r: Vec<Row<'_>> = s.tensors.iter().map(|t| (s, Some(t))).collect();
            if r.is_empty() {
                r.push((s, None));
            }
            r
        })
        .collect();
    for chunk in rows.chunks(BATCH_ROWS) {
        let b = batch(chunk).map_err(|e| parquet_error(e.into()))?;
        writer.write(&b).map_err(|e| parquet_error(e.into()))?;
    }
    writer.close().map_err(|e| parquet_error(e.into()))?;
    tmp.persist(path).map_err(|e| Error::Io {
        path: path.to_owned(),
        action: "rename the written store into place",
        source: e.error,
    })?;
    Ok(())
}

/// Typed access to a batch's columns, each checked once.
struct Columns<'b> {
    batch: &'b RecordBatch,
}

impl<'b> Columns<'b> {
    fn get<T: Array + 'static>(
        &self,
        column: &'static str,
        expected: &'static str,
    ) -> Result<&'b T, SchemaProblem> {
        self.batch
            .column_by_name(column)
            .and_then(|c| c.as_any().downcast_ref::<T>())
            .ok_or(SchemaProblem::Column { column, expected })
    }
}

/// Reads every sketch in the Parquet file at `path`.
pub fn read_parquet(path: &Path) -> Result<Vec<Sketch>, Error> {
    let parquet_error = |e: Box<dyn std::error::Error + Send + Sync>| Error::Parquet {
        path: path.to_owned(),
        source: e,
    };
    let schema_error = |problem| Error::Schema {
        path: path.to_owned(),
        problem,
    };
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        action: "open",
        source,
    })?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(e.into()))?;
    let meta = builder.metadata().file_metadata();
    let version = meta
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == VERSION_KEY))
        .and_then(|k| k.value.clone())
        .ok_or_else(|| schema_error(SchemaProblem::NotASketch))?;
    if version != SCHEMA_VERSION.to_string() {
        return Err(schema_error(SchemaProblem::Version {
            found: version,
            expected: SCHEMA_VERSION,
        }));
    }
    if usize::try_from(meta.num_rows()).map_or(true, |n| n > MAX_ROWS) {
        return Err(schema_error(SchemaProblem::Value {
            row: 0,
            model: String::new(),
            what: format!(
                "the file claims {} rows, more than the {MAX_ROWS} read",
                meta.num_rows()
            ),
        }));
    }
    let reader = builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| parquet_error(e.into()))?;
    let mut sketches: Vec<Sketch> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut row0 = 0usize;
    for b in reader {
        let b = b.map_err(|e| parquet_error(e.into()))?;
        read_batch(&b, row0, &mut sketches, &mut index).map_err(schema_error)?;
        row0 += b.num_rows();
    }
    Ok(sketches)
}

fn read_batch(
    b: &RecordBatch,
    row0: usize,
    sketches: &mut Vec<Sketch>,
    index: &mut BTreeMap<String, usize>,
) -> Result<(), SchemaProblem> {
    let c = Columns { batch: b };
    let utf8 = "Utf8";
    let version = c.get::<UInt32Array>("schema_version", "UInt32")?;
    let model = c.get::<StringArray>("model", utf8)?;
    let path = c.get::<StringArray>("path", utf8)?;
    let format = c.get::<StringArray>("format", utf8)?;
    let parameters = c.get::<UInt64Array>("parameters", "UInt64")?;
    let model_dtype = c.get::<StringArray>("model_dtype", utf8)?;
    let bits = c.get::<Float64Array>("bits", "Float64")?;
    let arch_key = c.get::<StringArray>("arch_key", utf8)?;
    let seed = c.get::<UInt64Array>("seed", "UInt64")?;
    let samples = c.get::<UInt32Array>("samples", "UInt32")?;
    let sketch_version = c.get::<UInt32Array>("sketch_version", "UInt32")?;
    let files = c.get::<StringArray>("files", utf8)?;
    let tensor = c.get::<StringArray>("tensor", utf8)?;
    let canonical = c.get::<StringArray>("canonical", utf8)?;
    let class = c.get::<StringArray>("class", utf8)?;
    let layer = c.get::<UInt32Array>("layer", "UInt32")?;
    let component = c.get::<StringArray>("component", utf8)?;
    let shape = c.get::<ListArray>("shape", "List<UInt64>")?;
    let dtype = c.get::<StringArray>("dtype", utf8)?;
    let role = c.get::<StringArray>("role", utf8)?;
    let numel = c.get::<UInt64Array>("numel", "UInt64")?;
    let mean = c.get::<Float64Array>("mean", "Float64")?;
    let sd = c.get::<Float64Array>("sd", "Float64")?;
    let scale = c.get::<Float32Array>("scale", "Float32")?;
    let values = c.get::<BinaryArray>("values", "Binary")?;
    let required = [
        version.null_count(),
        model.null_count(),
        path.null_count(),
        arch_key.null_count(),
        seed.null_count(),
        samples.null_count(),
        sketch_version.null_count(),
        files.null_count(),
        parameters.null_count(),
        bits.null_count(),
        format.null_count(),
        model_dtype.null_count(),
    ];
    if required.iter().any(|&n| n > 0) {
        return Err(SchemaProblem::Value {
            row: row0,
            model: String::new(),
            what: "a model column holds a null".to_owned(),
        });
    }
    for r in 0..b.num_rows() {
        let name = model.value(r);
        let bad = |what: String| SchemaProblem::Value {
            row: row0 + r,
            model: name.to_owned(),
            what,
        };
        if version.value(r) != SCHEMA_VERSION {
            return Err(bad(format!("schema_version {}", version.value(r))));
        }
        if sketch_version.value(r) != SKETCH_VERSION {
            return Err(bad(format!(
                "sketch version {}, this weightkin compares version {SKETCH_VERSION}",
                sketch_version.value(r)
            )));
        }
        let k = samples.value(r) as usize;
        if k == 0 || k > MAX_SAMPLES {
            return Err(bad(format!("samples {k} outside 1..={MAX_SAMPLES}")));
        }
        let at = match index.get(name) {
            Some(&i) => i,
            None => {
                let files: Vec<FileRow> = serde_json::from_str(files.value(r))
                    .map_err(|e| bad(format!("`files` is not the JSON expected: {e}")))?;
                index.insert(name.to_owned(), sketches.len());
                sketches.push(Sketch {
                    version: sketch_version.value(r),
                    model: name.to_owned(),
                    path: path.value(r).to_owned(),
                    format: format.value(r).to_owned(),
                    parameters: parameters.value(r),
                    dtype: model_dtype.value(r).to_owned(),
                    bits: bits.value(r),
                    arch_key: arch_key.value(r).to_owned(),
                    seed: seed.value(r),
                    samples: k,
                    files: files
                        .into_iter()
                        .map(|f| SketchFile {
                            path: f.path,
                            bytes: f.bytes,
                            blake3: f.blake3,
                        })
                        .collect(),
                    tensors: Vec::new(),
                });
                sketches.len() - 1
            }
        };
        if tensor.is_null(r) {
            continue;
        }
        let str_of = |a: &StringArray, col: &str| {
            if a.is_null(r) {
                Err(bad(format!("`{col}` is null in a tensor row")))
            } else {
                Ok(a.value(r).to_owned())
            }
        };
        let numel_v = if numel.is_null(r) {
            return Err(bad("`numel` is null in a tensor row".to_owned()));
        } else {
            numel.value(r)
        };
        let shape_v: Vec<u64> = if shape.is_null(r) {
            return Err(bad("`shape` is null in a tensor row".to_owned()));
        } else {
            let v = shape.value(r);
            let Some(v) = v.as_any().downcast_ref::<UInt64Array>() else {
                return Err(SchemaProblem::Column {
                    column: "shape",
                    expected: "List<UInt64>",
                });
            };
            v.iter().map(|x| x.unwrap_or(0)).collect()
        };
        let product = shape_v
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| bad("shape overflows".to_owned()))?;
        if product != numel_v {
            return Err(bad(format!(
                "shape {shape_v:?} has {product} elements, `numel` says {numel_v}"
            )));
        }
        let role_s = str_of(role, "role")?;
        let role_v = SketchRole::parse(&role_s).ok_or_else(|| bad(format!("role {role_s:?}")))?;
        let raw = if values.is_null(r) {
            return Err(bad("`values` is null in a tensor row".to_owned()));
        } else {
            values.value(r)
        };
        let expected = usize::try_from(numel_v).unwrap_or(usize::MAX).min(k);
        if raw.len() != expected * 2 {
            return Err(bad(format!(
                "`values` holds {} bytes, expected {} (min(numel, samples) binary16 values)",
                raw.len(),
                expected * 2
            )));
        }
        let scale_v = if scale.is_null(r) {
            f32::NAN
        } else {
            scale.value(r)
        };
        if !(scale_v.is_finite() && scale_v > 0.0) {
            return Err(bad(format!("scale {scale_v} is not a positive number")));
        }
        let t = TensorSketch {
            name: str_of(tensor, "tensor")?,
            canonical: str_of(canonical, "canonical")?,
            class: str_of(class, "class")?,
            layer: (!layer.is_null(r)).then(|| layer.value(r)),
            component: str_of(component, "component")?,
            shape: shape_v,
            dtype: str_of(dtype, "dtype")?,
            role: role_v,
            numel: numel_v,
            mean: if mean.is_null(r) {
                f64::NAN
            } else {
                mean.value(r)
            },
            sd: if sd.is_null(r) { f64::NAN } else { sd.value(r) },
            scale: scale_v,
            values: raw
                .chunks_exact(2)
                .map(|p| u16::from_le_bytes([p[0], p[1]]))
                .collect(),
        };
        let s = &mut sketches[at];
        if s.arch_key != arch_key.value(r) || s.path != path.value(r) {
            return Err(bad(
                "the model's rows disagree on its own columns (path, arch_key)".to_owned(),
            ));
        }
        s.tensors.push(t);
    }
    Ok(())
}

/// A `files` entry as stored.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRow {
    path: String,
    bytes: u64,
    blake3: String,
}

/// Reads a store: one Parquet file, or every `*.parquet` file of a directory (in name order).
/// A model name found twice is an error naming both files.
pub fn read_store(path: &Path) -> Result<Vec<Sketch>, Error> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|source| Error::Io {
                path: path.to_owned(),
                action: "list the directory",
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_owned()]
    };
    let mut out: Vec<Sketch> = Vec::new();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for f in files {
        for s in read_parquet(&f)? {
            if let Some(first) = seen.get(&s.model) {
                return Err(Error::DuplicateModel {
                    model: s.model,
                    first: first.clone(),
                    second: f,
                });
            }
            seen.insert(s.model.clone(), f.clone());
            out.push(s);
        }
    }
    Ok(out)
}
