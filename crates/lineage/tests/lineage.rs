//! The whole lineage path on a ~100-model simulated hub (sketch → Parquet → search → audits
//! → graph), scored against the truth; the store's round trip, determinism and hostile files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use arrow_array::{RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use weightkin_lineage::error::{Error, SchemaProblem};
use weightkin_lineage::graph;
use weightkin_lineage::search::{self, SearchOptions};
use weightkin_lineage::simhub::{self, Manifest};
use weightkin_lineage::store;
use weightkin_runner::sketch::{sketch_model, Sketch, SketchOptions};
use weightkin_runner::RunOptions;

fn sketch_hub(dir: &std::path::Path, manifest: &Manifest) -> Vec<Sketch> {
    let registry = weightkin_runner::registry::builtin().unwrap();
    manifest
        .models
        .iter()
        .map(|m| {
            sketch_model(
                &Manifest::path_of(dir, m),
                &m.name,
                &registry,
                &SketchOptions::default(),
                &RunOptions::default(),
            )
            .unwrap()
        })
        .collect()
}

#[test]
fn a_simulated_hub_is_recovered_through_the_whole_path() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = simhub::generate(tmp.path(), 100, 7).unwrap();
    assert!(manifest.models.len() >= 100);
    let sketches = sketch_hub(tmp.path(), &manifest);

    // Store round trip, byte-deterministic.
    let (p1, p2) = (tmp.path().join("a.parquet"), tmp.path().join("b.parquet"));
    store::write_parquet(&sketches, &p1).unwrap();
    let back = store::read_store(&p1).unwrap();
    assert_eq!(back, sketches);
    store::write_parquet(&back, &p2).unwrap();
    assert_eq!(std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap());

    let registry = weightkin_runner::registry::builtin().unwrap();
    let found = search::search(&back, &SearchOptions::default()).unwrap();
    let audited =
        graph::audit_candidates(&back, &found, &registry, &RunOptions::default()).unwrap();
    let g = graph::graph(&back, &found, &audited);
    let scores = simhub::score(&manifest, &g);
    eprintln!("{}", serde_json::to_string_pretty(&scores).unwrap());
    assert!(scores.detectable_pairs > 50, "{scores:?}");
    assert!(scores.precision >= 0.99, "precision {}", scores.precision);
    assert!(scores.recall >= 0.99, "recall {}", scores.recall);
    assert!(
        scores.family_accuracy >= 0.9,
        "families {}",
        scores.family_accuracy
    );
    // Far fewer audits than pairs.
    assert!((found.candidates.len() as u64) * 4 < found.stats.pairs_searched);

    let out = tmp.path().join("graph");
    let written = g.write(&out).unwrap();
    assert_eq!(written.len(), 2);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("graph.json")).unwrap()).unwrap();
    assert_eq!(json["schema_version"], 1);
    let html = std::fs::read_to_string(out.join("graph.html")).unwrap();
    assert!(html.contains("<svg") && !html.contains("<script"));
}

#[test]
fn the_search_finds_nothing_among_unrelated_models() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = weightkin_runner::registry::builtin().unwrap();
    let arch = simhub::architectures()[0].1;
    let mut sketches = Vec::new();
    for seed in 0..40u64 {
        let path = tmp.path().join(format!("m{seed}.safetensors"));
        weightkin_runner::demo::synth::Model::init(&arch, 1000 + seed)
            .write(&path, weightkin_runner::demo::synth::Store::F32)
            .unwrap();
        sketches.push(
            sketch_model(
                &path,
                &format!("m{seed}"),
                &registry,
                &SketchOptions::default(),
                &RunOptions::default(),
            )
            .unwrap(),
        );
    }
    let found = search::search(&sketches, &SearchOptions::default()).unwrap();
    assert_eq!(found.stats.pairs_searched, 40 * 39 / 2);
    assert!(found.candidates.is_empty(), "{:?}", found.candidates);
}

fn valid_store(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("m.safetensors");
    let arch = simhub::architectures()[0].1;
    weightkin_runner::demo::synth::Model::init(&arch, 1)
        .write(&path, weightkin_runner::demo::synth::Store::F32)
        .unwrap();
    let registry = weightkin_runner::registry::builtin().unwrap();
    let s = sketch_model(
        &path,
        "m",
        &registry,
        &SketchOptions::default(),
        &RunOptions::default(),
    )
    .unwrap();
    let out = dir.join("s.parquet");
    store::write_parquet(&[s], &out).unwrap();
    out
}

#[test]
fn a_truncated_store_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = valid_store(tmp.path());
    let bytes = std::fs::read(&path).unwrap();
    for cut in [bytes.len() - 1, bytes.len() / 2, 10, 0] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let e = store::read_store(&path).unwrap_err();
        assert!(matches!(e, Error::Parquet { .. }), "{e:?}");
        assert!(e.to_string().contains("s.parquet"), "{e}");
    }
}

fn parquet_with(path: &std::path::Path, version: Option<&str>) {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "schema_version",
        DataType::UInt32,
        false,
    )]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(UInt32Array::from(vec![9u32]))],
    )
    .unwrap();
    let props = WriterProperties::builder()
        .set_key_value_metadata(
            version.map(|v| vec![KeyValue::new(store::VERSION_KEY.to_owned(), v.to_owned())]),
        )
        .build();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn another_schema_version_or_another_parquet_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("x.parquet");
    parquet_with(&path, Some("999"));
    let e = store::read_store(&path).unwrap_err();
    assert!(
        matches!(&e, Error::Schema { problem: SchemaProblem::Version { found, .. }, .. } if found == "999"),
        "{e:?}"
    );
    assert!(e.to_string().contains("x.parquet"), "{e}");
    parquet_with(&path, None);
    let e = store::read_store(&path).unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Schema {
                problem: SchemaProblem::NotASketch,
                ..
            }
        ),
        "{e:?}"
    );
    // Right version, wrong columns.
    parquet_with(&path, Some("1"));
    let e = store::read_store(&path).unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Schema {
                problem: SchemaProblem::Column { .. },
                ..
            }
        ),
        "{e:?}"
    );
}
