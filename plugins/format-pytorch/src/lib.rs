//! weightkin-format-pytorch (being written).
