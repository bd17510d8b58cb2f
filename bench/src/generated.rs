//! Throw-away crates the bench generates under `target/bench/<name>` and builds in release with
//! the workspace's dependency versions: the SSE parser compiled for Node ([`crate::sse_wasm`])
//! and the floor filter ([`crate::floor`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use gateway_workspace::command::run_checked;
use gateway_workspace::paths;

/// A throw-away crate the bench writes under `target/bench/<name>` and builds in release with
/// the workspace's dependency versions.
pub struct GeneratedCrate<'a> {
    /// Folder name under `target/bench` (its build goes to `<name>-target`).
    pub name: &'a str,
    /// `Cargo.toml`.
    pub manifest: &'a str,
    /// `src/lib.rs`.
    pub lib_rs: &'a str,
}

impl GeneratedCrate<'_> {
    /// Writes the crate (files rewritten only when they changed) and builds it for `target`;
    /// returns the folder holding its release artifacts.
    pub fn build(&self, target: &str) -> Result<PathBuf> {
        let bench = paths::target_dir().join("bench");
        let dir = bench.join(self.name);
        std::fs::create_dir_all(dir.join("src"))?;
        write_if_changed(&dir.join("Cargo.toml"), self.manifest)?;
        write_if_changed(&dir.join("src/lib.rs"), self.lib_rs)?;
        if !dir.join("Cargo.lock").is_file() {
            // The workspace's versions: nothing new is resolved.
            std::fs::copy(paths::workspace_root().join("Cargo.lock"), dir.join("Cargo.lock"))?;
        }
        let target_dir = bench.join(format!("{}-target", self.name));
        run_checked(
            Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .current_dir(&dir)
                .args(["build", "--quiet", "--release", "--target", target, "--target-dir"])
                .arg(&target_dir),
        )?;
        Ok(target_dir.join(target).join("release"))
    }
}

fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text)?;
    }
    Ok(())
}
