//! Phase 1: the recipe as written, in serde structs with `deny_unknown_fields` and spans (no
//! `flatten`, which would silently disable `deny_unknown_fields`).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A recipe as written, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRecipe {
    pub(super) audit: Spanned<RawAudit>,
    #[serde(default)]
    pub(super) models: BTreeMap<String, Spanned<RawModel>>,
    #[serde(default)]
    pub(super) compare: Vec<Spanned<RawCompare>>,
    #[serde(default)]
    pub(super) report: Option<RawReport>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawAudit {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawModel {
    pub(super) path: Spanned<String>,
    #[serde(default)]
    pub(super) format: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) rename: Vec<Spanned<RawRename>>,
    #[serde(default)]
    pub(super) split: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) transpose: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) heads: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) kv_heads: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawRename {
    pub(super) from: Spanned<String>,
    pub(super) to: String,
    #[serde(default)]
    pub(super) paired_by: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) candidates: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawCompare {
    #[serde(default)]
    pub(super) name: Option<String>,
    pub(super) a: Spanned<String>,
    pub(super) b: Spanned<String>,
    #[serde(default)]
    pub(super) include: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) exclude: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) metrics: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(super) params: BTreeMap<String, Spanned<toml::Table>>,
    #[serde(default)]
    pub(super) grid: Option<Spanned<RawGrid>>,
    #[serde(default)]
    pub(super) align: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) pairing: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) permutation: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) references: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) evidence: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) not_evidence: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) components: Vec<Spanned<RawComponent>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawComponent {
    pub(super) name: Spanned<String>,
    pub(super) include: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawGrid {
    #[serde(default)]
    pub(super) metric: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) classes: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawReport {
    #[serde(default)]
    pub(super) formats: Option<Vec<Spanned<String>>>,
}
