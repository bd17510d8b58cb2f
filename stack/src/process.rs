//! Child processes owned by guards: killed on drop, their output kept, and printed when the
//! owner is dropped during a panic (a failing test) or echoed live when asked.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Stdout lines kept for [`ChildGuard::wait_for_line`] until it reads them; later ones are
/// dropped, so what a long-running process prints never accumulates.
const LINES_WAITING: usize = 1024;
/// Output lines kept for printing: past this, the older half goes (a long-running stack prints
/// one access-log line per request).
const OUTPUT_LINES_KEPT: usize = 20_000;

/// A running child process; see the module docs.
pub struct ChildGuard {
    name: String,
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
    lines: mpsc::Receiver<String>,
}

impl ChildGuard {
    /// Starts `command` (stdin closed, output captured); `echo` also prints its lines live.
    pub fn spawn(name: &str, mut command: Command, echo: bool) -> Result<Self> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().with_context(|| format!("starting {name}: {command:?}"))?;
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = mpsc::channel(LINES_WAITING);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(pump(out, name.to_owned(), output.clone(), Some(tx), echo));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(pump(err, name.to_owned(), output.clone(), None, echo));
        }
        Ok(Self { name: name.to_owned(), child, output, lines })
    }

    /// Waits for a stdout line starting with `prefix`; returns the rest of the line.
    pub async fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .map_err(|_| {
                    anyhow!(
                        "{} printed no `{prefix}` line within {timeout:?}\n{}",
                        self.name,
                        self.output_text()
                    )
                })?
                .ok_or_else(|| {
                    anyhow!(
                        "{} exited before printing `{prefix}`\n{}",
                        self.name,
                        self.output_text()
                    )
                })?;
            if let Some(rest) = line.strip_prefix(prefix) {
                return Ok(rest.trim().to_owned());
            }
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything it printed so far.
    pub fn output_text(&self) -> String {
        self.output.lock().map(|o| o.join("\n")).unwrap_or_default()
    }

    /// Kills the process at once (SIGKILL: no flush, no clean-up) and waits for it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Asks the process to stop (SIGTERM) and waits up to `grace`, then kills it.
    pub async fn stop(&mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            eprintln!(
                "----- output of {} -----\n{}\n----- end of {} -----",
                self.name,
                self.output_text(),
                self.name
            );
        }
    }
}

async fn pump(
    stream: impl AsyncRead + Unpin,
    name: String,
    output: Arc<Mutex<Vec<String>>>,
    lines_tx: Option<mpsc::Sender<String>>,
    echo: bool,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if echo {
            eprintln!("[{name}] {line}");
        }
        if let Ok(mut out) = output.lock() {
            // Bounded: a long-running stack keeps the latest lines only.
            if out.len() >= OUTPUT_LINES_KEPT {
                out.drain(..OUTPUT_LINES_KEPT / 2);
            }
            out.push(line.clone());
        }
        if let Some(tx) = &lines_tx {
            // Only start-up waits for a line; once nobody reads, later lines are not kept here
            // (a long-running stack prints one access-log line per request).
            let _ = tx.try_send(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn what_a_process_prints_is_kept_bounded() {
        let mut command = Command::new("sh");
        command.args(["-c", "seq 1 50000; seq 1 3000 >&2"]);
        let mut guard = ChildGuard::spawn("printer", command, false).unwrap();
        // Nobody reads the start-up channel: it must not hold more than its bound either.
        for _ in 0..200 {
            if guard.has_exited() && guard.output_text().contains("\n3000") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let kept = guard.output_text().lines().count();
        assert!(kept <= OUTPUT_LINES_KEPT, "{kept} lines kept");
        assert!(guard.output_text().contains("50000"), "the latest lines are kept");
        assert!(guard.lines.len() <= LINES_WAITING);
    }
}
