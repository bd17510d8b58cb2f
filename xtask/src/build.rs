//! Builds both builds of the filter (the proxy-wasm filter for `wasm32-wasip1`, profile `wasm`:
//! release, LTO, stripped; the native Envoy dynamic module, release, copied to
//! `target/native/`) and the control plane.

use std::process::Command;

use anyhow::{bail, Context, Result};
use gateway_e2e::paths;

/// Builds everything the stack runs.
pub fn run() -> Result<()> {
    run_checked(cargo().args([
        "build",
        "--package",
        "vllm-gateway-filter",
        "--target",
        "wasm32-wasip1",
        "--profile",
        "wasm",
    ]))?;
    run_checked(cargo().args([
        "build",
        "--package",
        "control-plane",
        "--package",
        "mock-vllm",
        "--bins",
    ]))?;
    let wasm = paths::filter_wasm()?;
    let size = std::fs::metadata(&wasm)?.len();
    eprintln!("xtask: filter built: {} ({} KiB)", wasm.display(), size / 1024);
    let module = native_module()?;
    eprintln!("xtask: native module built: {}", module.display());
    Ok(())
}

/// Builds the native dynamic module and copies it to its own folder (`target/native/`): the
/// library cargo leaves in `target/release/` is whichever build of the crate ran last.
pub fn native_module() -> Result<std::path::PathBuf> {
    run_checked(cargo().args([
        "build",
        "--release",
        "--package",
        "vllm-gateway-filter",
        "--features",
        "dynamic-module",
        "--lib",
    ]))?;
    let name = format!("lib{}.so", gateway_envoy::NATIVE_MODULE_NAME);
    let built = paths::target_dir().join("release").join(&name);
    let dir = paths::target_dir().join("native");
    std::fs::create_dir_all(&dir)?;
    let module = dir.join(&name);
    // Replaced by a rename: an Envoy running the old one keeps its mapping intact.
    let staged = dir.join(format!("{name}.new"));
    std::fs::copy(&built, &staged).with_context(|| format!("copying {}", built.display()))?;
    std::fs::rename(&staged, &module)?;
    Ok(module)
}

/// Builds the control plane with the release profile (what `cargo xtask up` runs: a debug build
/// cannot keep up with Envoy's access-log stream under load); returns the binary.
pub fn release_control_plane() -> Result<std::path::PathBuf> {
    run_checked(cargo().args([
        "build",
        "--release",
        "--package",
        "control-plane",
        "--bin",
        "control-plane",
    ]))?;
    Ok(paths::target_dir().join("release").join("control-plane"))
}

/// `cargo` as the one running xtask.
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(paths::workspace_root());
    command
}

/// Runs a command, failing with its exit status.
pub fn run_checked(command: &mut Command) -> Result<()> {
    let status = command.status().with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}
