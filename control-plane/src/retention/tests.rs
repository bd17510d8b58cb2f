//! Retention against a real SQLite file: by age, by row count, both, and unlimited.

use std::sync::atomic::Ordering::Relaxed;

use super::*;
use crate::store::logs::{insert_batch, AccessLog};

const NOW_MS: i64 = 1_800_000_000_000;

async fn db_with_rows(started: impl Iterator<Item = i64>) -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::db::open(&dir.path().join("r.db").display().to_string()).await.unwrap();
    let rows: Vec<AccessLog> = started
        .enumerate()
        .map(|(i, started_at_ms)| AccessLog { request_id: format!("r{i}"), started_at_ms, ..AccessLog::default() })
        .collect();
    insert_batch(&db, &rows).await.unwrap();
    (db, dir)
}

async fn remaining(db: &Db) -> Vec<i64> {
    sqlx::query_scalar("SELECT started_at_ms FROM access_logs ORDER BY started_at_ms").fetch_all(db).await.unwrap()
}

fn policy(max_age_days: u32, max_rows: u64) -> Retention {
    Retention { max_age_days, max_rows, batch_rows: 3, pause: Duration::ZERO, ..Retention::default() }
}

#[tokio::test]
async fn deletes_rows_older_than_the_age_limit_in_batches() {
    // 10 rows a day apart, the newest now: days 0..9 old.
    let (db, _dir) = db_with_rows((0..10).map(|d| NOW_MS - d * DAY_MS)).await;
    let metrics = Metrics::default();
    let deleted = prune(&db, &policy(4, 0), NOW_MS, &metrics).await.unwrap();
    assert_eq!(deleted, 5, "rows 5..9 days old go; 4 days old is exactly the limit and stays");
    assert_eq!(remaining(&db).await, (0..5).rev().map(|d| NOW_MS - d * DAY_MS).collect::<Vec<_>>());
    assert_eq!(metrics.rows_pruned.load(Relaxed), 5);
    assert_eq!(prune(&db, &policy(4, 0), NOW_MS, &metrics).await.unwrap(), 0);
}

#[tokio::test]
async fn vllm_samples_are_kept_as_many_days_as_rows() {
    let (db, _dir) = db_with_rows(std::iter::empty()).await;
    let upstream: crate::reconcile::Upstream = "m=http://127.0.0.1:1".parse().unwrap();
    let totals = crate::reconcile::prom::TokenTotals { prompt: 1, generation: 1 };
    for d in 0..8 {
        crate::store::samples::insert(&db, &upstream, NOW_MS - d * DAY_MS, totals).await.unwrap();
    }
    prune(&db, &policy(4, 0), NOW_MS, &Metrics::default()).await.unwrap();
    let kept: Vec<i64> = sqlx::query_scalar("SELECT at_ms FROM upstream_samples ORDER BY at_ms").fetch_all(&db).await.unwrap();
    assert_eq!(kept, (0..5).rev().map(|d| NOW_MS - d * DAY_MS).collect::<Vec<_>>());
}

#[tokio::test]
async fn keeps_only_the_newest_rows_beyond_the_row_limit() {
    let (db, _dir) = db_with_rows((0..11).map(|i| NOW_MS - i * 1000)).await;
    let deleted = prune(&db, &policy(0, 4), NOW_MS, &Metrics::default()).await.unwrap();
    assert_eq!(deleted, 7);
    assert_eq!(remaining(&db).await, (0..4).rev().map(|i| NOW_MS - i * 1000).collect::<Vec<_>>());
}

#[tokio::test]
async fn applies_both_limits_and_zero_means_unlimited() {
    let (db, _dir) = db_with_rows((0..8).map(|d| NOW_MS - d * DAY_MS)).await;
    assert_eq!(prune(&db, &policy(0, 0), NOW_MS, &Metrics::default()).await.unwrap(), 0);
    assert_eq!(remaining(&db).await.len(), 8);
    // Age keeps 6 (0..5 days old), then the row limit keeps the newest 2.
    assert_eq!(prune(&db, &policy(5, 2), NOW_MS, &Metrics::default()).await.unwrap(), 6);
    assert_eq!(remaining(&db).await, vec![NOW_MS - DAY_MS, NOW_MS]);
}

#[tokio::test]
async fn the_background_task_prunes_at_start() {
    let (db, _dir) = db_with_rows((0..5).map(|i| NOW_MS - i)).await;
    let metrics = Arc::new(Metrics::default());
    let task = spawn(db.clone(), policy(0, 2), metrics.clone());
    for _ in 0..200 {
        if metrics.rows_pruned.load(Relaxed) == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    assert_eq!(remaining(&db).await.len(), 2);
}
