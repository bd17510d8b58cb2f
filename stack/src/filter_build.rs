//! Which build of the filter a stack's Envoy runs when its options do not say: the
//! `GATEWAY_FILTER_BUILD` environment variable (`wasm`, the default, or `native`), so that one
//! end-to-end suite runs against either build (`cargo xtask test` runs it once with each).

use anyhow::{bail, Result};
use gateway_envoy::FilterBuild;
use gateway_workspace::paths;

/// The build `GATEWAY_FILTER_BUILD` names: the native dynamic module for `native`, else the wasm
/// filter; an error when it is not built.
pub fn from_env() -> Result<FilterBuild> {
    match std::env::var("GATEWAY_FILTER_BUILD").as_deref() {
        Ok("native") => Ok(FilterBuild::Native(paths::native_module_dir()?)),
        Ok("wasm") | Err(_) => Ok(FilterBuild::Wasm(paths::filter_wasm()?)),
        Ok(other) => bail!("GATEWAY_FILTER_BUILD={other}: expected `wasm` or `native`"),
    }
}

/// Whether `GATEWAY_FILTER_BUILD` asks for the native build (see [`from_env`]).
pub fn runs_native() -> bool {
    std::env::var("GATEWAY_FILTER_BUILD").as_deref() == Ok("native")
}
