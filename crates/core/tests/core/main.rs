//! Integration tests of `weightkin-core`: one test binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod convert;
mod lap;
mod safetensors;
mod subsample;
