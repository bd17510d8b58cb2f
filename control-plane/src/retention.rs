//! Retention of access logs: at most N days and at most M rows (0 = unlimited), enforced by a
//! background task that deletes the oldest rows in small batches with a pause between them, so
//! the log writer never waits long for the database. vLLM's counter samples (reconciliation)
//! are kept as many days as the rows.
//!
//! Rows without identity ([`UNAUTHENTICATED`]: no app, no user, no tokens — requests refused
//! before authentication) cannot evict accounted rows: they are capped on their own
//! ([`Retention::max_unauthenticated_rows`]), and when the log is over its row limit they are
//! deleted first; an accounted row goes only when accounted rows alone exceed the limit.

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
/// Rows without identity: no app, no user, no tokens. Exactly the condition of the partial
/// index `access_logs_unauthenticated` (migration 0011), which the queries name
/// ([`JUNK_ROWS`]): without statistics SQLite could pick the `user_id` index instead, whose
/// NULL entries are most of the log.
pub const UNAUTHENTICATED: &str =
    "app_id IS NULL AND user_id IS NULL AND IFNULL(prompt_tokens, 0) = 0 \
     AND IFNULL(completion_tokens, 0) = 0 AND IFNULL(total_tokens, 0) = 0";
/// The table read through that index (SQLite fails the query rather than read it otherwise).
const JUNK_ROWS: &str = "access_logs INDEXED BY access_logs_unauthenticated";

/// How much of the access log to keep, and how to prune it.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Rows that started more than this many days ago are deleted; 0 keeps every day.
    pub max_age_days: u32,
    /// Oldest rows beyond this many are deleted (rows without identity first); 0 keeps every
    /// row.
    pub max_rows: u64,
    /// Oldest rows without identity beyond this many are deleted, whatever the other rows;
    /// 0 keeps every one (up to `max_rows`).
    pub max_unauthenticated_rows: u64,
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
            max_unauthenticated_rows: 1_000_000,
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
        if retention.max_age_days == 0
            && retention.max_rows == 0
            && retention.max_unauthenticated_rows == 0
        {
            return;
        }
        loop {
            let now_ms = crate::store::now_ms();
            match prune(&db, &retention, now_ms, &metrics).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "access-log retention pruned rows"),
                Err(e) => {
                    tracing::warn!(error = %e, "access-log retention failed; trying again later")
                }
            }
            tokio::time::sleep(retention.every).await;
        }
    })
}

/// One pass: deletes rows older than the age limit, then the oldest rows without identity
/// beyond their limit, then the oldest rows beyond the row limit (without identity first).
/// Returns how many rows were deleted (each is also counted in `metrics`).
pub async fn prune(
    db: &Db,
    retention: &Retention,
    now_ms: i64,
    metrics: &Metrics,
) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    if retention.max_age_days > 0 {
        let cutoff = now_ms.saturating_sub(i64::from(retention.max_age_days) * DAY_MS);
        deleted += prune_older_than(db, retention, cutoff, metrics).await?;
        prune_samples(db, retention, cutoff).await?;
    }
    if retention.max_unauthenticated_rows > 0 {
        let rows =
            count(db, &format!("SELECT COUNT(*) FROM {JUNK_ROWS} WHERE {UNAUTHENTICATED}")).await?;
        let excess = rows.saturating_sub(retention.max_unauthenticated_rows);
        deleted += delete_oldest(db, retention, &oldest_unauthenticated(), excess, metrics).await?;
    }
    if retention.max_rows > 0 {
        let rows = u64::try_from(crate::store::logs::row_count(db).await?).unwrap_or(0);
        let excess = rows.saturating_sub(retention.max_rows);
        let junk = delete_oldest(db, retention, &oldest_unauthenticated(), excess, metrics).await?;
        deleted += junk + delete_oldest(db, retention, OLDEST, excess - junk, metrics).await?;
    }
    Ok(deleted)
}

/// The oldest rows without identity, as many as the parameter.
fn oldest_unauthenticated() -> String {
    format!(
        "DELETE FROM access_logs WHERE rowid IN \
         (SELECT rowid FROM {JUNK_ROWS} WHERE {UNAUTHENTICATED} ORDER BY started_at_ms, rowid LIMIT ?)"
    )
}

/// A count query's answer (negative as 0).
async fn count(db: &Db, sql: &str) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(sql).fetch_one(db).await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

async fn prune_older_than(
    db: &Db,
    retention: &Retention,
    cutoff_ms: i64,
    metrics: &Metrics,
) -> Result<u64, sqlx::Error> {
    let batch = i64::from(retention.batch_rows.max(1));
    let mut deleted = 0;
    loop {
        let started = Instant::now();
        let n =
            delete_batch(db, sqlx::query(OLDER_THAN).bind(cutoff_ms).bind(batch), metrics).await?;
        deleted += n;
        if n < batch as u64 {
            return Ok(deleted);
        }
        tokio::time::sleep(retention.pause.max(started.elapsed())).await;
    }
}

/// Deletes up to `wanted` rows with `delete` (one batch per statement, its `LIMIT` bound),
/// until none is left to delete; returns how many were deleted.
async fn delete_oldest(
    db: &Db,
    retention: &Retention,
    delete: &str,
    wanted: u64,
    metrics: &Metrics,
) -> Result<u64, sqlx::Error> {
    let batch = i64::from(retention.batch_rows.max(1));
    let mut deleted = 0;
    while deleted < wanted {
        let limit = i64::try_from(wanted - deleted).unwrap_or(i64::MAX).min(batch);
        let started = Instant::now();
        let n = delete_batch(db, sqlx::query(delete).bind(limit), metrics).await?;
        if n == 0 {
            break;
        }
        deleted += n;
        if deleted < wanted {
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
async fn delete_batch<'q>(
    db: &Db,
    delete: Query<'q, Sqlite, SqliteArguments<'q>>,
    metrics: &Metrics,
) -> Result<u64, sqlx::Error> {
    let n = delete.execute(db).await?.rows_affected();
    metrics.rows_pruned.fetch_add(n, Relaxed);
    Ok(n)
}

#[cfg(test)]
mod tests;
