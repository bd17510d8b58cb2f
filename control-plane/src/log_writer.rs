//! Writes access-log rows to SQLite in batches, off the gRPC stream's path.
//!
//! Senders wait when the queue is full (back-pressure instead of silent loss). Rows are let
//! gather for [`LINGER`] so that under load each transaction carries many (SQLite's cost per
//! row falls with the batch's size), on a connection the writer keeps for itself. A failed batch
//! is retried with back-off, on a fresh connection; the task ends once every sender is gone and
//! the queue is drained, which is how a graceful shutdown flushes what is queued. Every row is
//! counted in the [`Metrics`]: received, written, ignored as a repeat or lost, and the queue's
//! depth.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Connection, SqliteConnection};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::store::logs::{self, AccessLog, Inserted};
use crate::Db;

/// Rows queued at most before senders wait.
pub const QUEUE_ROWS: usize = 8192;
/// Rows written per transaction at most.
pub const BATCH_ROWS: usize = 2048;
/// How long the writer lets rows gather before it writes a batch that is not full: each
/// transaction has a fixed cost (its pages written to the WAL), so under load fewer, larger
/// ones cost far less per row; under light load it only delays rows by this much.
pub const LINGER: Duration = Duration::from_millis(20);
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
    let mut conn = OwnConnection { db, conn: None };
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    while next_batch(&mut rx, &mut batch).await {
        metrics.queue_depth.fetch_sub(batch.len() as i64, Relaxed);
        write_with_retry(&mut conn, &batch, &metrics).await;
        batch.clear();
    }
    conn.close().await;
}

/// Fills `batch` with the next rows: those queued once one is, and those queued within
/// [`LINGER`] after it, up to [`BATCH_ROWS`]. `false` once every sender is gone and the queue
/// is empty.
async fn next_batch(rx: &mut mpsc::Receiver<AccessLog>, batch: &mut Vec<AccessLog>) -> bool {
    if rx.recv_many(batch, BATCH_ROWS).await == 0 {
        return false;
    }
    if batch.len() < BATCH_ROWS {
        // Asleep, the writer is not woken by each row that arrives meanwhile.
        tokio::time::sleep(LINGER).await;
        while batch.len() < BATCH_ROWS {
            let Ok(row) = rx.try_recv() else { break };
            batch.push(row);
        }
    }
    true
}

/// The writer's own connection, outside the pool and opened with its options, so its page cache
/// and prepared statements stay warm from batch to batch (the pool hands out its connections in
/// turn, and a connection's cache is dropped whenever another one has written since it last
/// ran). Opened on first use, and again after a failed batch.
struct OwnConnection {
    db: Db,
    conn: Option<SqliteConnection>,
}

impl OwnConnection {
    async fn insert(&mut self, batch: &[AccessLog]) -> Result<Inserted, sqlx::Error> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                self.conn.insert(SqliteConnection::connect_with(&self.db.connect_options()).await?)
            }
        };
        let result = logs::insert_batch_on(conn, batch).await;
        if result.is_err() {
            // Whatever failed, the retry starts on a fresh connection.
            self.conn = None;
        }
        result
    }

    async fn close(self) {
        if let Some(conn) = self.conn {
            if let Err(e) = conn.close().await {
                tracing::warn!(error = %e, "closing the access-log writer's connection");
            }
        }
    }
}

async fn write_with_retry(conn: &mut OwnConnection, batch: &[AccessLog], metrics: &Metrics) {
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=RETRIES {
        let started = Instant::now();
        let result = conn.insert(batch).await;
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
        let row = |id: &str| AccessLog {
            request_id: id.into(),
            started_at_ms: 1,
            ..AccessLog::default()
        };
        for id in ["a", "b", "a", "c"] {
            sender.send(row(id)).await.unwrap();
        }
        drop(sender);
        task.await.unwrap();
        let stored: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM access_logs").fetch_one(&db).await.unwrap();
        assert_eq!(stored, 3);
        assert_eq!(metrics.rows_received.load(Relaxed), 4);
        assert_eq!(metrics.rows_written.load(Relaxed), 3);
        assert_eq!(metrics.rows_duplicate.load(Relaxed), 1);
        assert_eq!(metrics.queue_depth.load(Relaxed), 0);
        assert!(metrics.render().contains("gateway_access_log_batch_write_seconds_count "));
    }

    #[tokio::test]
    async fn a_failed_batch_is_retried_on_a_fresh_connection_and_nothing_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open(&dir.path().join("w.db").display().to_string()).await.unwrap();
        let metrics = Arc::new(Metrics::default());
        let (sender, task) = spawn(db.clone(), metrics.clone());
        sender
            .send(AccessLog { request_id: "first".into(), ..AccessLog::default() })
            .await
            .unwrap();
        while metrics.rows_written.load(Relaxed) < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The writer's connection has its statements prepared; now its table is gone for a while.
        sqlx::query("ALTER TABLE access_logs RENAME TO away").execute(&db).await.unwrap();
        for id in ["a", "b", "a"] {
            sender.send(AccessLog { request_id: id.into(), ..AccessLog::default() }).await.unwrap();
        }
        let batches = || {
            metrics.render().lines().find_map(|l| {
                l.strip_prefix("gateway_access_log_batch_write_seconds_count ")?.parse::<u64>().ok()
            })
        };
        while batches() < Some(2) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        sqlx::query("ALTER TABLE away RENAME TO access_logs").execute(&db).await.unwrap();
        drop(sender);
        task.await.unwrap();
        let stored: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM access_logs").fetch_one(&db).await.unwrap();
        assert_eq!(stored, 3);
        assert_eq!(
            (metrics.rows_written.load(Relaxed), metrics.rows_duplicate.load(Relaxed)),
            (3, 1)
        );
        assert_eq!(metrics.rows_lost.load(Relaxed), 0);
        assert!(batches() > Some(2), "the batch failed at least once before it was written");
    }

    #[tokio::test]
    async fn rows_are_written_while_every_pooled_connection_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open(&dir.path().join("w.db").display().to_string()).await.unwrap();
        let mut held = Vec::new();
        while let Some(conn) = db.try_acquire() {
            held.push(conn);
        }
        while held.len() < db.options().get_max_connections() as usize {
            held.push(db.acquire().await.unwrap());
        }
        let metrics = Arc::new(Metrics::default());
        let (sender, task) = spawn(db.clone(), metrics.clone());
        sender.send(AccessLog { request_id: "r".into(), ..AccessLog::default() }).await.unwrap();
        drop(sender);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the writer waited for the pool")
            .unwrap();
        assert_eq!(metrics.rows_written.load(Relaxed), 1);
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM access_logs")
            .fetch_one(&mut *held[0])
            .await
            .unwrap();
        assert_eq!(stored, 1);
    }
}
