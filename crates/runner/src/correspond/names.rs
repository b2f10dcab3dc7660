//! TEMPORARY stub, replaced by the names helper's table.

/// A tensor name read under a known convention.
pub struct Normalised {
    /// Canonical name.
    pub canonical: String,
    /// Convention.
    pub convention: &'static str,
}

/// Canonical form of a name.
pub fn normalise(name: &str) -> Normalised {
    let mut n = name;
    for p in ["_orig_mod.", "module.", "_model."] {
        n = n.strip_prefix(p).unwrap_or(n);
    }
    Normalised {
        canonical: n.to_owned(),
        convention: "none",
    }
}

/// Optional head counts.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    /// Query heads.
    pub q: usize,
    /// KV heads.
    pub kv: usize,
    /// Head dim.
    pub head_dim: usize,
}

/// A split.
#[derive(Debug, Clone)]
pub struct Split {
    /// Axis.
    pub axis: usize,
    /// Parts.
    pub parts: Vec<Part>,
}

/// A part.
#[derive(Debug, Clone)]
pub struct Part {
    /// Name.
    pub name: String,
    /// Start.
    pub start: usize,
    /// Len.
    pub len: usize,
}

/// Problem.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FusedProblem {
    /// Does not divide.
    #[error("{tensor}: {rows} rows do not split into q, k, v")]
    DoesNotDivide {
        /// Tensor.
        tensor: String,
        /// Rows.
        rows: usize,
    },
}

/// Fused layout.
pub fn fused(
    name: &str,
    shape: &[usize],
    _heads: Option<Heads>,
    weight_shape: Option<&[usize]>,
) -> Result<Option<Split>, FusedProblem> {
    if !(name.ends_with("qkv.weight") || name.ends_with("qkv.bias")) {
        return Ok(None);
    }
    let rows = shape.first().copied().unwrap_or(0);
    let d = weight_shape.or(Some(shape)).and_then(|s| s.get(1)).copied().unwrap_or(0);
    if d == 0 || rows <= d || (rows - d) % 2 != 0 {
        return Err(FusedProblem::DoesNotDivide { tensor: name.into(), rows });
    }
    let kv = (rows - d) / 2;
    Ok(Some(Split {
        axis: 0,
        parts: vec![
            Part { name: format!("{name}#q"), start: 0, len: d },
            Part { name: format!("{name}#k"), start: d, len: kv },
            Part { name: format!("{name}#v"), start: d + kv, len: kv },
        ],
    }))
}
