//! Running commands from the workspace: `cargo` as the one running us, and any command whose
//! failure should fail the task.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::paths;

/// `cargo` as the one running us (`CARGO`), in the workspace root.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_command_fails_with_its_status() {
        assert!(run_checked(Command::new("true").current_dir("/")).is_ok());
        let err = run_checked(&mut Command::new("false")).unwrap_err().to_string();
        assert!(err.contains("failed"), "{err}");
        assert!(run_checked(&mut Command::new("/no/such/command")).is_err());
        assert_eq!(cargo().get_current_dir(), Some(paths::workspace_root().as_path()));
    }
}
