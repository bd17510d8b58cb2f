//! When a process stops: on Ctrl-C (SIGINT) or SIGTERM, whichever comes first. A signal that
//! cannot be listened for never blocks the other one: it keeps its default action (which ends
//! the process) and the other one still finishes the wait.

use std::future::Future;

/// Finishes on Ctrl-C or, on Unix, SIGTERM. Both are listened for from this call on, so a signal
/// that arrives before the future is first awaited still counts (call it early: before a long
/// start-up, say). Must be called within a Tokio runtime.
#[cfg(unix)]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    first_of(signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
}

/// Finishes on Ctrl-C (elsewhere than on Unix, the only signal listened for).
#[cfg(not(unix))]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Finishes when either listener's signal arrives; a listener that could not be set up never
/// finishes (its signal keeps its default action).
#[cfg(unix)]
async fn first_of(
    a: std::io::Result<tokio::signal::unix::Signal>,
    b: std::io::Result<tokio::signal::unix::Signal>,
) {
    tokio::select! {
        () = arrival(a) => {}
        () = arrival(b) => {}
    }
}

#[cfg(unix)]
async fn arrival(listener: std::io::Result<tokio::signal::unix::Signal>) {
    match listener {
        Ok(mut signal) => {
            signal.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::time::Duration;

    use tokio::signal::unix::{signal, SignalKind};
    use tokio::time::timeout;

    use super::*;

    /// Sends `name` (`TERM`, `INT`) to this process.
    fn send(name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(std::process::id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    // One test sends every signal, in turn: a signal reaches every listener of the process, and
    // tests running side by side would see each other's.
    #[tokio::test]
    async fn sigterm_and_ctrl_c_each_finish_it_even_when_sigterm_cannot_be_listened_for() {
        let stop = shutdown_signal();
        send("TERM");
        assert!(timeout(Duration::from_secs(5), stop).await.is_ok(), "SIGTERM");

        let stop = shutdown_signal();
        send("INT");
        assert!(timeout(Duration::from_secs(5), stop).await.is_ok(), "Ctrl-C");

        let refused = Err(std::io::Error::other("SIGTERM refused"));
        let stop = first_of(signal(SignalKind::interrupt()), refused);
        send("INT");
        assert!(timeout(Duration::from_secs(5), stop).await.is_ok(), "Ctrl-C without SIGTERM");
    }

    #[tokio::test]
    async fn without_any_listener_it_never_finishes() {
        let refused = || Err(std::io::Error::other("refused"));
        let stop = first_of(refused(), refused());
        assert!(timeout(Duration::from_millis(100), stop).await.is_err());
    }
}
