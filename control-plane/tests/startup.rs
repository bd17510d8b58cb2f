//! The binary's start: generated tokens go to owner-only files and never to its output, the
//! database is the owner's alone, and demo tokens are refused unless `--dev` (or
//! `GATEWAY_DEV`) says otherwise. Each test runs the real binary on loopback ports.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// The binary on a database in `dir`, ephemeral loopback ports, and `env`.
fn control_plane(dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_control-plane"));
    command
        .args(["--http-addr", "127.0.0.1:0", "--als-addr", "127.0.0.1:0"])
        .arg("--db")
        .arg(format!("sqlite://{}", dir.join("data").join("gateway.db").display()))
        .env_remove("GATEWAY_ADMIN_TOKEN")
        .env_remove("GATEWAY_STATE_TOKEN")
        .env_remove("GATEWAY_DEV")
        .env_remove("GATEWAY_SECRETS_DIR")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Everything the child printed up to and including its ready line.
async fn until_ready(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = String::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            printed.push_str(&line);
            printed.push('\n');
            if line.starts_with("control-plane listening ") {
                return;
            }
        }
        panic!("ended before it was ready");
    };
    // A deadline for a stuck start, not a speed check.
    tokio::time::timeout(Duration::from_secs(60), read).await.expect("never ready");
    printed
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[tokio::test]
async fn generated_tokens_are_written_to_owner_only_files_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = control_plane(dir.path(), &[]).spawn().unwrap();
    let printed = until_ready(&mut child).await;
    child.kill().await.unwrap();
    let data = dir.path().join("data");
    for name in ["admin-token", "state-token"] {
        let file = data.join(name);
        let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
        assert_eq!(token.len(), 64, "{name}: {token}");
        assert!(!printed.contains(&token), "the {name} was printed:\n{printed}");
        assert!(printed.contains(&file.display().to_string()), "its path is printed:\n{printed}");
        assert_eq!(mode(&file), 0o600, "{name}");
    }
    assert_eq!(mode(&data.join("gateway.db")), 0o600);

    // A second start keeps the stored tokens and writes nothing new.
    std::fs::remove_file(data.join("admin-token")).unwrap();
    let mut child = control_plane(dir.path(), &[]).spawn().unwrap();
    let printed = until_ready(&mut child).await;
    child.kill().await.unwrap();
    assert!(!printed.contains("generated"), "{printed}");
    assert!(!data.join("admin-token").exists());
}

#[tokio::test]
async fn a_demo_state_token_is_refused_unless_dev() {
    let dir = tempfile::tempdir().unwrap();
    let demo = [("GATEWAY_STATE_TOKEN", "compose-demo-state-token-change-me")];
    let mut child = control_plane(dir.path(), &demo).spawn().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("it should exit")
        .unwrap();
    assert!(!status.success());
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
    assert!(
        stderr.contains("--state-token")
            && stderr.contains("change-me")
            && stderr.contains("--dev"),
        "{stderr}"
    );

    let dev = [demo[0], ("GATEWAY_DEV", "true")];
    let mut child = control_plane(dir.path(), &dev).spawn().unwrap();
    until_ready(&mut child).await;
    child.kill().await.unwrap();

    // Stored by the dev start, it is refused from the database too once --dev is gone.
    let mut child = control_plane(dir.path(), &[]).spawn().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("it should exit")
        .unwrap();
    assert!(!status.success(), "the stored demo token is not served");
}
