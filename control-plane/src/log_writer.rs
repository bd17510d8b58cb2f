//! Writes access-log rows to SQLite in batches, off the gRPC stream's path.
//!
//! Senders wait when the queue is full (back-pressure instead of silent loss). A failed batch
//! is retried with back-off; the task ends once every sender is gone and the queue is drained,
//! which is how a graceful shutdown flushes what is queued.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::store::logs::{self, AccessLog};
use crate::Db;

/// Rows queued at most before senders wait.
pub const QUEUE_ROWS: usize = 8192;
/// Rows written per transaction at most.
pub const BATCH_ROWS: usize = 512;
const RETRIES: u32 = 5;

/// The sending side, cloned into every access-log stream.
pub type LogSender = mpsc::Sender<AccessLog>;

/// Starts the writer; returns the sender and the task (which ends after the last sender).
pub fn spawn(db: Db) -> (LogSender, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE_ROWS);
    (tx, tokio::spawn(run(db, rx)))
}

async fn run(db: Db, mut rx: mpsc::Receiver<AccessLog>) {
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    while rx.recv_many(&mut batch, BATCH_ROWS).await > 0 {
        write_with_retry(&db, &batch).await;
        batch.clear();
    }
}

async fn write_with_retry(db: &Db, batch: &[AccessLog]) {
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=RETRIES {
        match logs::insert_batch(db, batch).await {
            Ok(new) => {
                tracing::debug!(rows = batch.len(), new, "access-log batch written");
                return;
            }
            Err(e) if attempt < RETRIES => {
                tracing::warn!(error = %e, attempt, "access-log batch failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                let ids: Vec<&str> = batch.iter().map(|r| r.request_id.as_str()).collect();
                tracing::error!(error = %e, rows = batch.len(), ?ids, "access-log batch lost");
            }
        }
    }
}
