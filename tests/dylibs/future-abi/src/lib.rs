//! A weightkin plugin built for a future ABI version (test fixture for `tests/plugins.rs`).
//!
//! Its entry point returns only the version prefix, claiming version 99: a host that reads
//! anything beyond the prefix before checking the version would read past this static.

use weightkin_plugin_abi::AbiPrefix;

static PREFIX: AbiPrefix = AbiPrefix { abi_version: 99 };

/// The entry point, returning a descriptor from the future.
#[no_mangle]
pub extern "C" fn weightkin_plugin_entry() -> *const AbiPrefix {
    &PREFIX
}
