//! Every recipe in `configs/` runs against the demo family (generated into a temporary
//! directory beside a copy of the recipe) and its JSON and Markdown reports are snapshotted.

use weightkin_runner::{audit_file, registry, ReportFormat, RunOptions};

#[test]
fn every_config_recipe() {
    insta::glob!("../configs", "*.toml", |path| {
        let dir = tempfile::tempdir().unwrap();
        weightkin_runner::demo::generate(dir.path()).unwrap();
        let recipe = dir.path().join(path.file_name().unwrap());
        std::fs::copy(path, &recipe).unwrap();
        let reg = registry::builtin().unwrap();
        let (_, report) = audit_file(&recipe, &reg, &RunOptions::default()).unwrap();
        insta::assert_snapshot!("json", ReportFormat::Json.render(&report));
        insta::assert_snapshot!("md", ReportFormat::Markdown.render(&report));
        // The HTML renders the same model; its structure is snapshotted in `html.rs`.
    });
}
