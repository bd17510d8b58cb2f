//! What the control plane's integration tests share: waiting for something that happens a
//! little later (a row written, a metric counted, a long poll held), one polling helper instead
//! of hand-written polling loops and fixed sleeps. (The end-to-end tests have their own,
//! `gateway_e2e::eventually`; this crate does not depend on them.)

use std::future::Future;
use std::time::Duration;

/// How often [`eventually`] asks.
const POLL: Duration = Duration::from_millis(20);

/// Calls `probe` every 20 ms until it returns `Some`, and returns that value; panics naming
/// `what` if it has not within `timeout` (a deadline for eventual consistency, not a speed
/// check).
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what} did not happen within {timeout:?}");
        tokio::time::sleep(POLL).await;
    }
}
