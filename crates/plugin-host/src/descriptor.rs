//! The ABI checks: what a plugin's entry point returns, read and validated before any of it
//! is used.
//!
//! The order is the contract's (see `weightkin-plugin-abi`): the ABI version first, through
//! the prefix every version of the descriptor shares, and nothing else until it is known;
//! then every field, bounded by the caps in the crate root ([`MAX_METRICS`], [`MAX_PARAMS`],
//! [`MAX_NAME_LEN`], [`MAX_TEXT_LEN`]) so that a corrupt descriptor cannot make the host read
//! without end. The result is owned Rust data ([`Descriptor`]); nothing here calls into the
//! plugin.

use std::ffi::{c_char, CStr};

use weightkin_plugin_abi as abi;

use crate::{
    LoadProblem, MAX_METRICS, MAX_NAME_LEN, MAX_PARAMS, MAX_TEXT_LEN, NEWEST_ABI, OLDEST_ABI,
};

/// One metric of a validated descriptor.
pub(crate) struct MetricDesc {
    pub(crate) name: String,
    pub(crate) doc: String,
    pub(crate) range: (f64, f64),
    pub(crate) symmetric: bool,
    pub(crate) identity: Option<f64>,
    pub(crate) params: Vec<String>,
    pub(crate) check_params: Option<abi::CheckParamsFn>,
    pub(crate) compute: abi::ComputeFn,
}

/// A validated descriptor.
pub(crate) struct Descriptor {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) metrics: Vec<MetricDesc>,
}

/// Checks the ABI version, then reads and validates the rest of the descriptor.
///
/// # Safety
/// `ptr` must be null or point to a descriptor that starts with an [`abi::AbiPrefix`] and,
/// if its version is [`abi::ABI_VERSION`], is a valid [`abi::PluginDescriptor`] whose pointers
/// are valid for the lengths it states and live forever.
pub(crate) unsafe fn read_descriptor(
    ptr: *const abi::PluginDescriptor,
) -> Result<Descriptor, LoadProblem> {
    if ptr.is_null() || !ptr.is_aligned() {
        return Err(LoadProblem::BadDescriptor);
    }
    // The version first, through the prefix every ABI version shares.
    // SAFETY: non-null and aligned (the prefix's alignment is at most the descriptor's); every
    // version of the descriptor starts with this u32.
    let version = unsafe { (*ptr.cast::<abi::AbiPrefix>()).abi_version };
    check_abi_version(version)?;
    // SAFETY: the version is one we know, so the pointer is to a descriptor of this layout.
    let d = unsafe { &*ptr };
    // SAFETY: a string pointer from a descriptor of a known version; checked for null.
    let name = unsafe { text(d.name, MAX_NAME_LEN, || "plugin name".to_owned()) }?;
    // SAFETY: as for the name.
    let version = unsafe { text(d.version, MAX_TEXT_LEN, || "plugin version".to_owned()) }?;
    if d.metric_count > MAX_METRICS {
        return Err(invalid(
            "metric count",
            "more metrics than weightkin accepts",
        ));
    }
    if d.metric_count > 0 && (d.metrics.is_null() || !d.metrics.is_aligned()) {
        return Err(invalid("metrics", "null or misaligned array"));
    }
    let raw: &[abi::MetricDescriptor] = if d.metric_count == 0 {
        return Err(invalid("metrics", "the plugin declares no metrics"));
    } else {
        // SAFETY: non-null, aligned, `metric_count` entries by the descriptor's contract.
        unsafe { std::slice::from_raw_parts(d.metrics, d.metric_count) }
    };
    let mut metrics: Vec<MetricDesc> = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        // SAFETY: an entry of a descriptor of a known version.
        let desc = unsafe { read_metric(i, m) }?;
        if metrics.iter().any(|other| other.name == desc.name) {
            return Err(invalid(
                &format!("metric `{}`", desc.name),
                "declared twice by this plugin",
            ));
        }
        metrics.push(desc);
    }
    Ok(Descriptor {
        name,
        version,
        metrics,
    })
}

/// Range-checks a plugin's ABI version.
pub fn check_abi_version(version: u32) -> Result<(), LoadProblem> {
    if version < OLDEST_ABI {
        Err(LoadProblem::AbiTooOld {
            found: version,
            oldest: OLDEST_ABI,
            newest: NEWEST_ABI,
        })
    } else if version > NEWEST_ABI {
        Err(LoadProblem::AbiTooNew {
            found: version,
            newest: NEWEST_ABI,
        })
    } else {
        Ok(())
    }
}

fn invalid(field: &str, problem: &'static str) -> LoadProblem {
    LoadProblem::InvalidDescriptor {
        field: field.to_owned(),
        problem,
    }
}

/// A NUL-terminated UTF-8 string of at most `max` bytes, non-empty, without control
/// characters.
///
/// # Safety
/// `p` must be null or point to a NUL-terminated string.
unsafe fn text(
    p: *const c_char,
    max: usize,
    field: impl Fn() -> String,
) -> Result<String, LoadProblem> {
    let bad = |problem| LoadProblem::InvalidDescriptor {
        field: field(),
        problem,
    };
    if p.is_null() {
        return Err(bad("null pointer"));
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    if bytes.len() > max {
        return Err(bad("too long"));
    }
    let s = std::str::from_utf8(bytes).map_err(|_| bad("not valid UTF-8"))?;
    if s.trim().is_empty() {
        return Err(bad("empty"));
    }
    if s.chars().any(char::is_control) {
        return Err(bad("contains a line break or control character"));
    }
    Ok(s.to_owned())
}

/// Whether `s` is usable as a metric or parameter name in a recipe: lower-case ASCII
/// letters, digits, `-` and `_`, starting with a letter.
fn is_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Reads and validates metric `i`.
///
/// # Safety
/// `m` must come from a descriptor of a known ABI version.
unsafe fn read_metric(i: usize, m: &abi::MetricDescriptor) -> Result<MetricDesc, LoadProblem> {
    // SAFETY: pointers of a known-version descriptor.
    let name = unsafe { text(m.name, MAX_NAME_LEN, || format!("metric #{} name", i + 1)) }?;
    if !is_name(&name) {
        return Err(invalid(
            &format!("metric #{} name `{name}`", i + 1),
            "must be lower-case ASCII letters, digits, `-` or `_`, starting with a letter",
        ));
    }
    let field = |what: &str| format!("metric `{name}` {what}");
    // SAFETY: as above.
    let doc = unsafe { text(m.doc, MAX_TEXT_LEN, || field("doc")) }?;
    let (lo, hi) = (m.range_lo, m.range_hi);
    if lo.is_nan() || hi.is_nan() || lo >= hi {
        return Err(invalid(
            &field("range"),
            "not an interval (NaN, or low ≥ high)",
        ));
    }
    if m.flags & !abi::flags::ALL != 0 {
        return Err(invalid(&field("flags"), "unknown flag bits (a newer ABI?)"));
    }
    let identity = (m.flags & abi::flags::HAS_IDENTITY != 0).then_some(m.identity);
    if let Some(id) = identity {
        if !(id.is_finite() && lo <= id && id <= hi) {
            return Err(invalid(
                &field("identity"),
                "not a finite value within its range",
            ));
        }
    }
    if m.param_count > MAX_PARAMS {
        return Err(invalid(&field("parameters"), "more than weightkin accepts"));
    }
    let mut params: Vec<String> = Vec::with_capacity(m.param_count);
    if m.param_count > 0 {
        if m.params.is_null() || !m.params.is_aligned() {
            return Err(invalid(&field("parameters"), "null or misaligned array"));
        }
        // SAFETY: non-null, aligned, `param_count` entries by the descriptor's contract.
        let raw = unsafe { std::slice::from_raw_parts(m.params, m.param_count) };
        for (j, &p) in raw.iter().enumerate() {
            // SAFETY: as above.
            let p = unsafe { text(p, MAX_NAME_LEN, || field(&format!("parameter #{}", j + 1))) }?;
            if !is_name(&p) || params.contains(&p) {
                return Err(invalid(
                    &field(&format!("parameter `{p}`")),
                    "not a valid name, or declared twice",
                ));
            }
            params.push(p);
        }
    }
    let Some(compute) = m.compute else {
        return Err(invalid(&field("compute"), "null function pointer"));
    };
    Ok(MetricDesc {
        name,
        doc,
        range: (lo, hi),
        symmetric: m.flags & abi::flags::SYMMETRIC != 0,
        identity,
        params,
        check_params: m.check_params,
        compute,
    })
}
