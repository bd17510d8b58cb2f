//! Builds both builds of the filter (the proxy-wasm filter for `wasm32-wasip1`, profile `wasm`:
//! release, LTO, stripped; the native Envoy dynamic module, release, copied to
//! `target/native/`) and the control plane; and runs a binary of the workspace in place of
//! xtask ([`become_bin`]: `up` and `bench` are binaries of their own crates).

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use gateway_workspace::command::{cargo, run_checked};
use gateway_workspace::paths;

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
pub fn native_module() -> Result<PathBuf> {
    run_checked(cargo().args([
        "build",
        "--release",
        "--package",
        "vllm-gateway-filter",
        "--features",
        "dynamic-module",
        "--lib",
    ]))?;
    let name = paths::native_module_file_name();
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

/// Builds the control plane with the release profile (what `cargo xtask up` and a full
/// `cargo xtask bench` run: a debug build cannot keep up with Envoy's access-log stream under
/// load); returns the binary.
pub fn release_control_plane() -> Result<PathBuf> {
    run_checked(cargo().args([
        "build",
        "--release",
        "--package",
        "control-plane",
        "--bin",
        "control-plane",
    ]))?;
    Ok(paths::release_control_plane())
}

/// The arguments of a task that is a binary of its own (`up`, `bench`), passed on as they are:
/// the binary defines them (and answers `--help`).
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct Forwarded {
    /// Passed on as they are; `--help` lists them.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

impl Forwarded {
    /// Whether only the binary's help is asked for (nothing needs setting up or building).
    pub fn asks_for_help(&self) -> bool {
        self.args.iter().any(|a| a == "-h" || a == "--help")
    }
}

/// `cargo run`s binary `bin` of `package` (release when `release`) with `args` and `env`, in
/// place of this process on Unix: Ctrl-C and SIGTERM then reach the binary itself, and its exit
/// status is the task's.
pub fn become_bin(
    package: &str,
    bin: &str,
    release: bool,
    args: &[String],
    env: &[(&str, &OsStr)],
) -> Result<()> {
    let mut command = cargo();
    command.args(["run", "--quiet", "--package", package, "--bin", bin]);
    if release {
        command.arg("--release");
    }
    command.arg("--").args(args);
    command.envs(env.iter().copied());
    exec(command)
}

#[cfg(unix)]
fn exec(mut command: Command) -> Result<()> {
    use std::os::unix::process::CommandExt;
    // Returns only when the program could not be started.
    let error = command.exec();
    Err(anyhow::Error::new(error).context(format!("running {command:?}")))
}

#[cfg(not(unix))]
fn exec(mut command: Command) -> Result<()> {
    run_checked(&mut command)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        forwarded: Forwarded,
    }

    #[test]
    fn flags_and_help_are_passed_on_as_they_are() {
        let cli =
            Cli::try_parse_from(["up", "--filter", "native", "--model=a=http://x", "-h"]).unwrap();
        assert_eq!(cli.forwarded.args, ["--filter", "native", "--model=a=http://x", "-h"]);
        assert!(cli.forwarded.asks_for_help());
        let cli = Cli::try_parse_from(["bench", "--quick"]).unwrap();
        assert!(!cli.forwarded.asks_for_help());
    }
}
