//! `wasm-bindgen-test-runner`, which runs the filter's pure core compiled to
//! `wasm32-unknown-unknown` under Node. The runner must be exactly the version of the
//! `wasm-bindgen` crate in `Cargo.lock` (they speak a private protocol), so `wasm-bindgen-cli` at
//! that version is installed into the git-ignored `.tools/wasm-bindgen`, and the installed
//! binary's own `--version` is checked against the lock file before every use.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use gateway_workspace::command::run_checked;
use gateway_workspace::paths;

/// The runner at the lock file's `wasm-bindgen` version, installed when missing or different.
pub fn ensure_runner() -> Result<PathBuf> {
    let root = paths::tools_dir().join("wasm-bindgen");
    let runner = root.join("bin").join("wasm-bindgen-test-runner");
    let wanted = locked_version()?;
    if installed_version(&runner).as_deref() == Some(wanted.as_str()) {
        return Ok(runner);
    }
    install(&root, &wanted)?;
    match installed_version(&runner) {
        Some(found) if found == wanted => Ok(runner),
        found => bail!(
            "{} reports version {found:?} after installing wasm-bindgen-cli {wanted}",
            runner.display()
        ),
    }
}

/// The one version of `wasm-bindgen` in the workspace's `Cargo.lock`.
fn locked_version() -> Result<String> {
    let lock_path = paths::workspace_root().join("Cargo.lock");
    let lock = std::fs::read_to_string(&lock_path)
        .with_context(|| format!("reading {}", lock_path.display()))?;
    package_version(&lock, "wasm-bindgen").with_context(|| format!("in {}", lock_path.display()))
}

/// The version of `name` in a `Cargo.lock`; an error unless exactly one version is locked.
fn package_version(lock: &str, name: &str) -> Result<String> {
    let wanted_name = format!("name = \"{name}\"");
    let mut lines = lock.lines().map(str::trim);
    let mut versions = Vec::new();
    while let Some(line) = lines.next() {
        if line != wanted_name {
            continue;
        }
        let version = lines
            .next()
            .and_then(|l| l.strip_prefix("version = \""))
            .and_then(|v| v.strip_suffix('"'))
            .with_context(|| format!("no version line after {wanted_name}"))?;
        versions.push(version.to_owned());
    }
    match versions.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("{name} is not locked (is wasm-bindgen-test a dev-dependency of the filter?)"),
        many => bail!(
            "several versions of {name} are locked ({}): the test runner can match only one",
            many.join(", ")
        ),
    }
}

/// The version `runner --version` reports (`wasm-bindgen-test-runner 0.2.x`), if it runs.
fn installed_version(runner: &Path) -> Option<String> {
    let output = Command::new(runner).arg("--version").output().ok()?;
    let stdout = String::from_utf8(output.stdout).ok()?;
    let version = stdout.trim().strip_prefix("wasm-bindgen-test-runner ")?;
    output.status.success().then(|| version.to_owned())
}

/// Installs `wasm-bindgen-cli` `version` into `root`, with the dependency versions it was
/// released with (`--locked`). When the registry lacks one of those (a registry mirror behind
/// crates.io), installs it again with dependencies resolved from the registry: the runner's own
/// version, the one that must match, is exact either way.
fn install(root: &Path, version: &str) -> Result<()> {
    eprintln!(
        "xtask: installing wasm-bindgen-cli {version} into {} (a few minutes, once)",
        root.display()
    );
    let install = |locked: bool| {
        let mut command = gateway_workspace::command::cargo();
        command.args(["install", "--force", "--root"]).arg(root);
        command.arg(format!("wasm-bindgen-cli@={version}"));
        if locked {
            command.arg("--locked");
        }
        run_checked(&mut command)
    };
    install(true).or_else(|locked_error| {
        eprintln!("xtask: the --locked install failed ({locked_error:#}); retrying with dependencies resolved from the registry");
        install(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"
[[package]]
name = "wasm-bindgen"
version = "0.2.130"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "wasm-bindgen-test"
version = "0.3.80"
"#;

    #[test]
    fn reads_the_one_locked_version_by_exact_name() {
        assert_eq!(package_version(LOCK, "wasm-bindgen").unwrap(), "0.2.130");
        assert_eq!(package_version(LOCK, "wasm-bindgen-test").unwrap(), "0.3.80");
        assert!(package_version(LOCK, "wasm-bindgen-cli").is_err());
    }

    #[test]
    fn refuses_two_locked_versions() {
        let two = format!("{LOCK}\n[[package]]\nname = \"wasm-bindgen\"\nversion = \"0.2.100\"\n");
        let error = package_version(&two, "wasm-bindgen").unwrap_err().to_string();
        assert!(error.contains("0.2.130, 0.2.100"), "{error}");
    }
}
