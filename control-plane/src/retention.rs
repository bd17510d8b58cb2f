//! Retention of access logs: at most N days and at most M rows (0 = unlimited), enforced by a
//! background task that deletes the oldest rows in small batches with a pause between them, so
//! the log writer never waits long for the database. vLLM's counter samples (reconciliation)
//! are kept as many days as the rows.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::query::Query;
use sqlx::sqlite::SqliteArguments;
use sqlx::Sqlite;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::Db;

const DAY_MS: i64 = 86_400_000;
/// One batch: rows that started before the first parameter, at most the second many.
const OLDER_THAN: &str = "DELETE FROM access_logs WHERE rowid IN \
     (SELECT rowid FROM access_logs WHERE started_at_ms < ? LIMIT ?)";
/// The oldest rows, as many as the parameter.
const OLDEST: &str = "DELETE FROM access_logs WHERE rowid IN \
     (SELECT rowid FROM access_logs ORDER BY started_at_ms, rowid LIMIT ?)";

/// How much of the access log to keep, and how to prune it.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Rows that started more than this many days ago are deleted; 0 keeps every day.
    pub max_age_days: u32,
    /// Oldest rows beyond this many are deleted; 0 keeps every row.
    pub max_rows: u64,
    /// Time between two pruning passes.
    pub every: Duration,
    /// Rows deleted by one statement (one short write transaction) at most.
    pub batch_rows: u32,
    /// Least pause between two batches, during which the log writer gets the database. The
    /// pause is at least as long as the batch took, so pruning holds the write lock at most
    /// half the time however slow the disk.
    pub pause: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age_days: 30,
            max_rows: 10_000_000,
            every: Duration::from_secs(60),
            batch_rows: 5_000,
            pause: Duration::from_millis(50),
        }
    }
}

/// Starts the pruning task: one pass at once, then one every `retention.every`. It runs until
/// aborted (deleting is safe to stop between any two statements).
pub fn spawn(db: Db, retention: Retention, metrics: Arc<Metrics>) -> JoinHandle<()> {
    tokio::spawn(async move {
        if retention.max_age_days == 0 && retention.max_rows == 0 {
            return;
        }
        loop {
            let now_ms = crate::store::now_ms();
            match prune(&db, &retention, now_ms, &metrics).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "access-log retention pruned rows"),
                Err(e) => tracing::warn!(error = %e, "access-log retention failed; trying again later"),
            }
            tokio::time::sleep(retention.every).await;
        }
    })
}

/// One pass: deletes rows older than the age limit, then the oldest rows beyond the row limit.
/// Returns how many rows were deleted (each is also counted in `metrics`).
pub async fn prune(db: &Db, retention: &Retention, now_ms: i64, metrics: &Metrics) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    if retention.max_age_days > 0 {
        let cutoff = now_ms.saturating_sub(i64::from(retention.max_age_days) * DAY_MS);
        deleted += prune_older_than(db, retention, cutoff, metrics).await?;
        prune_samples(db, retention, cutoff).await?;
    }
    if retention.max_rows > 0 {
        deleted += prune_beyond_max_rows(db, retention, metrics).await?;
    }
    Ok(deleted)
}

async fn prune_older_than(db: &Db, retention: &Retention, cutoff_ms: i64, metrics: &Metrics) -> Result<u64, sqlx::Error> {
    let batch = i64::from(retention.batch_rows.max(1));
    let mut deleted = 0;
    loop {
        let started = Instant::now();
        let n = delete_batch(db, sqlx::query(OLDER_THAN).bind(cutoff_ms).bind(batch), metrics).await?;
        deleted += n;
        if n < batch as u64 {
            return Ok(deleted);
        }
        tokio::time::sleep(retention.pause.max(started.elapsed())).await;
    }
}

async fn prune_beyond_max_rows(db: &Db, retention: &Retention, metrics: &Metrics) -> Result<u64, sqlx::Error> {
    let batch = i64::from(retention.batch_rows.max(1));
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM access_logs").fetch_one(db).await?;
    let mut excess = u64::try_from(rows).unwrap_or(0).saturating_sub(retention.max_rows);
    let mut deleted = 0;
    while excess > 0 {
        let limit = i64::try_from(excess).unwrap_or(i64::MAX).min(batch);
        let started = Instant::now();
        let n = delete_batch(db, sqlx::query(OLDEST).bind(limit), metrics).await?;
        if n == 0 {
            break;
        }
        deleted += n;
        excess = excess.saturating_sub(n);
        if excess > 0 {
            tokio::time::sleep(retention.pause.max(started.elapsed())).await;
        }
    }
    Ok(deleted)
}

/// Deletes vLLM's counter samples taken before `cutoff_ms`, in batches.
async fn prune_samples(db: &Db, retention: &Retention, cutoff_ms: i64) -> Result<u64, sqlx::Error> {
    let batch = i64::from(retention.batch_rows.max(1));
    let mut deleted = 0;
    loop {
        let started = Instant::now();
        let n = crate::store::samples::prune_before(db, cutoff_ms, batch).await?;
        deleted += n;
        if n < batch as u64 {
            return Ok(deleted);
        }
        tokio::time::sleep(retention.pause.max(started.elapsed())).await;
    }
}

/// Runs one batch delete and counts what it deleted.
async fn delete_batch<'q>(db: &Db, delete: Query<'q, Sqlite, SqliteArguments<'q>>, metrics: &Metrics) -> Result<u64, sqlx::Error> {
    let n = delete.execute(db).await?.rows_affected();
    metrics.rows_pruned.fetch_add(n, Relaxed);
    Ok(n)
}

#[cfg(test)]
mod tests;
