//! Writes access-log rows to SQLite in batches, off the gRPC stream's path.
//!
//! Senders wait when the queue is full (back-pressure instead of silent loss). A failed batch
//! is retried with back-off; the task ends once every sender is gone and the queue is drained,
//! which is how a graceful shutdown flushes what is queued. Every row is counted in the
//! [`Metrics`]: received, written, ignored as a repeat or lost, and the queue's depth.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::store::logs::{self, AccessLog};
use crate::Db;

/// Rows queued at most before senders wait.
pub const QUEUE_ROWS: usize = 8192;
/// Rows written per transaction at most.
pub const BATCH_ROWS: usize = 512;
const RETRIES: u32 = 5;

/// The sending side, cloned into every access-log stream.
#[derive(Debug, Clone)]
pub struct LogSender {
    tx: mpsc::Sender<AccessLog>,
    metrics: Arc<Metrics>,
}

/// The writer has stopped: the row was not queued.
#[derive(Debug, thiserror::Error)]
#[error("the access-log writer has stopped")]
pub struct WriterStopped;

impl LogSender {
    /// Queues one row, waiting while the queue is full.
    pub async fn send(&self, row: AccessLog) -> Result<(), WriterStopped> {
        self.metrics.rows_received.fetch_add(1, Relaxed);
        // Counted before it is in the queue, so the writer can never take it off below zero.
        self.metrics.queue_depth.fetch_add(1, Relaxed);
        self.tx.send(row).await.map_err(|_| {
            self.metrics.queue_depth.fetch_sub(1, Relaxed);
            self.metrics.rows_lost.fetch_add(1, Relaxed);
            WriterStopped
        })
    }
}

/// Starts the writer; returns the sender and the task (which ends after the last sender).
pub fn spawn(db: Db, metrics: Arc<Metrics>) -> (LogSender, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE_ROWS);
    let task = tokio::spawn(run(db, rx, metrics.clone()));
    (LogSender { tx, metrics }, task)
}

async fn run(db: Db, mut rx: mpsc::Receiver<AccessLog>, metrics: Arc<Metrics>) {
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    while rx.recv_many(&mut batch, BATCH_ROWS).await > 0 {
        metrics.queue_depth.fetch_sub(batch.len() as i64, Relaxed);
        write_with_retry(&db, &batch, &metrics).await;
        batch.clear();
    }
}

async fn write_with_retry(db: &Db, batch: &[AccessLog], metrics: &Metrics) {
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=RETRIES {
        let started = Instant::now();
        let result = logs::insert_batch(db, batch).await;
        metrics.observe_batch(started.elapsed());
        match result {
            Ok(inserted) => {
                let new = inserted.rows;
                metrics.rows_written.fetch_add(new, Relaxed);
                metrics.rows_flagged.fetch_add(inserted.flagged, Relaxed);
                metrics.rows_duplicate.fetch_add(batch.len() as u64 - new, Relaxed);
                tracing::debug!(rows = batch.len(), new, "access-log batch written");
                return;
            }
            Err(e) if attempt < RETRIES => {
                tracing::warn!(error = %e, attempt, "access-log batch failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                metrics.rows_lost.fetch_add(batch.len() as u64, Relaxed);
                let ids: Vec<&str> = batch.iter().map(|r| r.request_id.as_str()).collect();
                tracing::error!(error = %e, rows = batch.len(), ?ids, "access-log batch lost");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_written_repeated_rows_and_drains_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open(&dir.path().join("w.db").display().to_string()).await.unwrap();
        let metrics = Arc::new(Metrics::default());
        let (sender, task) = spawn(db.clone(), metrics.clone());
        let row = |id: &str| AccessLog { request_id: id.into(), started_at_ms: 1, ..AccessLog::default() };
        for id in ["a", "b", "a", "c"] {
            sender.send(row(id)).await.unwrap();
        }
        drop(sender);
        task.await.unwrap();
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM access_logs").fetch_one(&db).await.unwrap();
        assert_eq!(stored, 3);
        assert_eq!(metrics.rows_received.load(Relaxed), 4);
        assert_eq!(metrics.rows_written.load(Relaxed), 3);
        assert_eq!(metrics.rows_duplicate.load(Relaxed), 1);
        assert_eq!(metrics.queue_depth.load(Relaxed), 0);
        assert!(metrics.render().contains("gateway_access_log_batch_write_seconds_count "));
    }
}
