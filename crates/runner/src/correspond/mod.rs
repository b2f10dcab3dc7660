//! Correspondence: which tensor of B corresponds to which of A, under any naming convention,
//! export or fusion (issue 14).

pub mod names;
