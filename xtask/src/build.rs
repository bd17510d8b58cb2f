//! Builds the filter for `wasm32-wasip1` (profile `wasm`: release, LTO, stripped) and the
//! control plane.

use std::process::Command;

use anyhow::{bail, Context, Result};
use gateway_e2e::paths;

/// Builds everything the stack runs.
pub fn run() -> Result<()> {
    run_checked(cargo().args(["build", "--package", "vllm-gateway-filter", "--target", "wasm32-wasip1", "--profile", "wasm"]))?;
    run_checked(cargo().args(["build", "--package", "control-plane", "--package", "mock-vllm", "--bins"]))?;
    let wasm = paths::filter_wasm()?;
    let size = std::fs::metadata(&wasm)?.len();
    eprintln!("xtask: filter built: {} ({} KiB)", wasm.display(), size / 1024);
    Ok(())
}

/// Builds the control plane with the release profile (what `cargo xtask up` runs: a debug build
/// cannot keep up with Envoy's access-log stream under load); returns the binary.
pub fn release_control_plane() -> Result<std::path::PathBuf> {
    run_checked(cargo().args(["build", "--release", "--package", "control-plane", "--bin", "control-plane"]))?;
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
