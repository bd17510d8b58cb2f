//! Runs every test: the filter's no-panic lints on both builds (wasm and the native dynamic
//! module), the filter's pure core compiled to `wasm32-unknown-unknown` under Node
//! (`filter/tests/wasm_core.rs` with wasm-bindgen-test), the native glue's own tests (its ABI
//! against the installed Envoy's exports), then `cargo test` over the whole workspace, whose
//! end-to-end tests start the real Envoy installed by set-up with the wasm filter, then the
//! end-to-end suite again with the native module (`GATEWAY_FILTER_BUILD=native`), then a brief
//! run of every fuzz target ([`crate::fuzz::brief`]).

use anyhow::Result;
use clap::Args;

use crate::build::{cargo, run_checked};

/// `cargo xtask test` options.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Extra arguments for `cargo test` (e.g. a test name filter); with any, the brief fuzz run
    /// is skipped.
    #[arg(last = true)]
    pub cargo_args: Vec<String>,
}

/// Sets up, builds, lints the filter and runs all tests.
pub fn run(args: &TestArgs) -> Result<()> {
    let envoy = crate::setup::run()?;
    let wasm_runner = crate::setup::wasm_test_runner()?;
    crate::build::run()?;
    run_checked(cargo().args([
        "clippy",
        "--package",
        "vllm-gateway-filter",
        "--target",
        "wasm32-wasip1",
        "--profile",
        "wasm",
        "--",
        "-D",
        "warnings",
    ]))?;
    run_checked(
        cargo()
            .args([
                "test",
                "--package",
                "vllm-gateway-filter",
                "--target",
                "wasm32-unknown-unknown",
                "--test",
                "wasm_core",
            ])
            .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER", wasm_runner),
    )?;
    run_checked(cargo().args([
        "clippy",
        "--package",
        "vllm-gateway-filter",
        "--features",
        "dynamic-module",
        "--release",
        "--lib",
        "--",
        "-D",
        "warnings",
    ]))?;
    run_checked(
        cargo()
            .args([
                "test",
                "--package",
                "vllm-gateway-filter",
                "--features",
                "dynamic-module",
                "--lib",
                "native::",
            ])
            .env("ENVOY_BIN", &envoy),
    )?;
    run_checked(
        cargo().args(["test", "--workspace"]).args(&args.cargo_args).env("ENVOY_BIN", &envoy),
    )?;
    // The same end-to-end suite, with the native build of the filter.
    run_checked(
        cargo()
            .args(["test", "--package", "gateway-e2e"])
            .args(&args.cargo_args)
            .env("ENVOY_BIN", &envoy)
            .env("GATEWAY_FILTER_BUILD", "native"),
    )?;
    if args.cargo_args.is_empty() {
        crate::fuzz::brief()?;
    }
    Ok(())
}
