//! End-to-end tests of weightkin: the `weightkin` binary, every recipe in `configs/`, broken
//! recipes and model files, and real public models fetched by `scripts/fetch-fixtures.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Shared helpers: running the binary, temp dirs, fixture paths.
mod util;

/// The binary: exit codes, `demo`, `compare`, `inspect`, `plugins`, thread-count determinism,
/// the hash cache.
mod cli;

/// One insta snapshot (JSON and Markdown) per recipe in `configs/`.
mod configs;

/// Broken recipes and broken model files: the error text users see, snapshotted.
mod errors;

/// The HTML report in a real browser (headless Chromium) and its structure.
mod html;

/// Shared-library metric plugins: loading, listing, a recipe using one, the conformance kit
/// against the example and the deliberately broken plugins, and every load error.
mod plugins;

/// Real public models from PyPI wheels (all-MiniLM-L6-v2).
mod real_models;

/// ONNX models (issue 19): real exports against their PyTorch, TorchScript and safetensors
/// twins; a MatMul-exported transformer against its state dict.
mod onnx;

/// CKA layer grids (issue 17): grids from prepared sides equal every cell measured on its
/// own, on a real model and on the demo.
mod grids;

/// Automatic pairing on real files: re-exports, fresh initialisations, renamed and fused
/// copies, kept recipes, bad input.
mod correspondence;

/// `hf://` models against a hub-shaped server on 127.0.0.1: a one-component audit fetches
/// that component alone, re-runs and `--offline` read the store, the token stays private.
mod hub;

/// Unit alignment (issue 15) on real weights: MiniLM with its MLP hidden units permuted or
/// width-pruned, and the same transforms on an unrelated model of the same shape.
mod permutation;

/// The alignment stage (issue 15) through the binary: permuted, pruned, re-vocabularied and
/// rotated copies read `derived`, unrelated models aligned the same way `independent`.
mod alignment;
/// Function-preserving scrambles of real models (issue 15): permuted, pruned, re-vocabularied
/// and rotated copies of MiniLM and SmolLM2, unrelated stand-ins of the same shapes, and
/// forward passes proving each copy computes what it claims.
mod scramble;

/// Vocabularies and head counts for alignment (issue 15) on real models: MiniLM's
/// `tokenizer.json` and `vocab.txt`, the tokenizers inside the SmolLM2 and Gemma 3 GGUFs, and
/// the tokens they share.
mod vocabulary;

/// Reports as evidence (issue 18): report modes under the umask, two audits writing one
/// `--out` at once, `weightkin verify` on intact, changed and edited reports.
mod trust;
