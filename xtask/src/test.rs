//! Runs every test: formatting (`cargo fmt --check`) and clippy with `-D warnings` over the
//! whole workspace, the filter's no-panic lints on both builds (wasm and the native dynamic
//! module), the unit tests of the filter's pure core compiled to `wasm32-unknown-unknown` and
//! run under Node (wasm-bindgen-test), the native glue's own tests (its ABI against the
//! installed Envoy's exports), then `cargo test` over the whole workspace, whose end-to-end tests start the real
//! Envoy installed by set-up with the wasm filter, then the end-to-end suite again with the
//! native module (`GATEWAY_FILTER_BUILD=native`), then a brief run of every fuzz target
//! ([`crate::fuzz::brief`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use clap::Args;
use gateway_workspace::command::{cargo, run_checked};
use gateway_workspace::paths;

/// `cargo xtask test` options.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Extra arguments for `cargo test` (e.g. a test name filter); with any, the lints and the
    /// brief fuzz run are skipped.
    #[arg(last = true)]
    pub cargo_args: Vec<String>,
}

/// Sets up, builds, lints and runs all tests.
pub fn run(args: &TestArgs) -> Result<()> {
    let envoy = crate::setup::run()?;
    let wasm_runner = crate::setup::wasm_test_runner()?;
    crate::build::run()?;
    if !args.cargo_args.is_empty() {
        return run_filtered(&args.cargo_args, &envoy);
    }
    lint()?;
    run_checked(
        cargo()
            .args(["test", "--package", "vllm-gateway-filter"])
            .args(["--target", "wasm32-unknown-unknown"])
            .arg("--lib")
            .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER", wasm_runner),
    )?;
    run_checked(
        cargo()
            .args(["test", "--package", "vllm-gateway-filter", "--features", "dynamic-module"])
            .args(["--lib", "native::"])
            .env("ENVOY_BIN", &envoy),
    )?;
    let e2e = e2e_test_binaries()?;
    run_checked(cargo().args(["test", "--workspace"]).env("ENVOY_BIN", &envoy))?;
    // The same end-to-end suite with the native build of the filter: the binaries the workspace
    // run built, run again (building the crate alone would resolve its dependencies' features
    // apart from the workspace's: a second copy of each on disk).
    for binary in e2e {
        eprintln!("xtask: {} (native filter)", binary.display());
        run_checked(
            Command::new(&binary)
                .current_dir(paths::workspace_root().join("tests"))
                .env("ENVOY_BIN", &envoy)
                .env("GATEWAY_FILTER_BUILD", "native"),
        )?;
    }
    crate::fuzz::brief()
}

/// Formatting, then clippy with warnings denied: over the workspace, and over the filter as
/// each build compiles it (wasm, and the native module's feature).
fn lint() -> Result<()> {
    crate::setup::ensure_lint_components()?;
    run_checked(cargo().args(["fmt", "--all", "--check"]))?;
    run_checked(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    run_checked(
        cargo()
            .args(["clippy", "--package", "vllm-gateway-filter", "--target", "wasm32-wasip1"])
            .args(["--profile", "wasm", "--", "-D", "warnings"]),
    )?;
    run_checked(
        cargo()
            .args(["clippy", "--package", "vllm-gateway-filter", "--features", "dynamic-module"])
            .args(["--release", "--lib", "--", "-D", "warnings"]),
    )
}

/// `cargo xtask test -- ARGS`: the workspace's tests with ARGS, then the end-to-end tests with
/// the native module and the same ARGS.
fn run_filtered(cargo_args: &[String], envoy: &Path) -> Result<()> {
    run_checked(cargo().args(["test", "--workspace"]).args(cargo_args).env("ENVOY_BIN", envoy))?;
    run_checked(
        cargo()
            .args(["test", "--package", "gateway-e2e"])
            .args(cargo_args)
            .env("ENVOY_BIN", envoy)
            .env("GATEWAY_FILTER_BUILD", "native"),
    )
}

/// Builds the workspace's tests (`cargo test --workspace --no-run`) and returns the end-to-end
/// crate's test binaries, read from cargo's JSON messages.
fn e2e_test_binaries() -> Result<Vec<PathBuf>> {
    let output = cargo()
        .args(["test", "--workspace", "--no-run", "--message-format=json-render-diagnostics"])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo test --no-run")?;
    ensure!(output.status.success(), "cargo test --workspace --no-run failed");
    let manifest = paths::workspace_root().join("tests").join("Cargo.toml");
    let binaries = test_binaries_of(&String::from_utf8_lossy(&output.stdout), &manifest);
    ensure!(!binaries.is_empty(), "cargo built no end-to-end test binary");
    Ok(binaries)
}

/// The integration-test executables of the package at `manifest` among cargo's JSON messages.
fn test_binaries_of(messages: &str, manifest: &Path) -> Vec<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| m["manifest_path"].as_str().is_some_and(|p| Path::new(p) == manifest))
        .filter(|m| m["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "test")))
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_packages_integration_test_executables_are_taken() {
        let messages = [
            r#"{"reason":"compiler-artifact","manifest_path":"/w/tests/Cargo.toml","target":{"kind":["test"]},"executable":"/t/deps/api-1"}"#,
            r#"{"reason":"compiler-artifact","manifest_path":"/w/tests/Cargo.toml","target":{"kind":["lib"]},"executable":"/t/deps/gateway_e2e-2"}"#,
            r#"{"reason":"compiler-artifact","manifest_path":"/w/tests/Cargo.toml","target":{"kind":["lib"]},"executable":null}"#,
            r#"{"reason":"compiler-artifact","manifest_path":"/w/control-plane/Cargo.toml","target":{"kind":["test"]},"executable":"/t/deps/api-3"}"#,
            r#"{"reason":"build-finished","success":true}"#,
            "not json",
        ]
        .join("\n");
        let found = test_binaries_of(&messages, Path::new("/w/tests/Cargo.toml"));
        assert_eq!(found, [PathBuf::from("/t/deps/api-1")]);
    }
}
