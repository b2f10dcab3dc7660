//! weightkin-format-gguf (being written).
