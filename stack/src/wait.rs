//! Waiting for something that happens a little later (a log row, a key reaching the filter):
//! one helper instead of hand-written polling loops and fixed sleeps.

use std::future::Future;
use std::time::Duration;

use anyhow::{bail, Result};

/// Calls `probe` every 100 ms until it returns `Some`, for at most `timeout`; the error names
/// `what` and carries the last probe's error, if any.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => String::new(),
            Err(e) => format!(": {e:#}"),
        };
        if tokio::time::Instant::now() >= deadline {
            bail!("{what} did not happen within {timeout:?}{last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
