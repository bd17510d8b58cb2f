//! Retention against a real SQLite file: by age, by row count, both, and unlimited; rows
//! without identity capped apart and deleted first.

use std::sync::atomic::Ordering::Relaxed;

use super::*;
use crate::store::logs::{insert_batch, AccessLog};

const NOW_MS: i64 = 1_800_000_000_000;

async fn db_with_rows(started: impl Iterator<Item = i64>) -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::db::open(&dir.path().join("r.db").display().to_string()).await.unwrap();
    let rows: Vec<AccessLog> = started
        .enumerate()
        .map(|(i, started_at_ms)| AccessLog {
            request_id: format!("r{i}"),
            started_at_ms,
            ..AccessLog::default()
        })
        .collect();
    insert_batch(&db, &rows).await.unwrap();
    (db, dir)
}

async fn remaining(db: &Db) -> Vec<i64> {
    sqlx::query_scalar("SELECT started_at_ms FROM access_logs ORDER BY started_at_ms")
        .fetch_all(db)
        .await
        .unwrap()
}

/// `accounted` rows of app 1 (the oldest), then `junk` 401s without identity, a second apart.
async fn db_with_accounted_and_junk(accounted: i64, junk: i64) -> (Db, tempfile::TempDir) {
    let (db, dir) = db_with_rows(std::iter::empty()).await;
    let row = |i: i64| AccessLog {
        request_id: format!("r{i}"),
        started_at_ms: NOW_MS - 1_000_000 + i * 1000,
        ..AccessLog::default()
    };
    let mut rows: Vec<AccessLog> = (0..accounted)
        .map(|i| AccessLog { app_id: Some(1), total_tokens: Some(3), ..row(i) })
        .collect();
    rows.extend((accounted..accounted + junk).map(|i| AccessLog {
        status: Some(401),
        gateway_error: Some("invalid_api_key".into()),
        ..row(i)
    }));
    insert_batch(&db, &rows).await.unwrap();
    (db, dir)
}

async fn count_where(db: &Db, condition: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM access_logs WHERE {condition}"))
        .fetch_one(db)
        .await
        .unwrap()
}

fn policy(max_age_days: u32, max_rows: u64) -> Retention {
    Retention {
        max_age_days,
        max_rows,
        batch_rows: 3,
        pause: Duration::ZERO,
        ..Retention::default()
    }
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
    let kept: Vec<i64> = sqlx::query_scalar("SELECT at_ms FROM upstream_samples ORDER BY at_ms")
        .fetch_all(&db)
        .await
        .unwrap();
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

#[tokio::test]
async fn junk_beyond_its_own_cap_never_evicts_accounted_rows() {
    // 40 accounted rows, then 200 newer 401s: far beyond both limits.
    let (db, _dir) = db_with_accounted_and_junk(40, 200).await;
    let retention = Retention { max_unauthenticated_rows: 5, ..policy(0, 50) };
    prune(&db, &retention, NOW_MS, &Metrics::default()).await.unwrap();
    assert_eq!(count_where(&db, "app_id = 1").await, 40, "every accounted row survives");
    assert_eq!(count_where(&db, UNAUTHENTICATED).await, 5);
    let newest_junk: i64 =
        sqlx::query_scalar("SELECT MIN(started_at_ms) FROM access_logs WHERE app_id IS NULL")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(newest_junk, NOW_MS - 1_000_000 + 235 * 1000, "the newest junk is kept");
}

#[tokio::test]
async fn over_the_row_limit_junk_goes_first_and_accounted_rows_only_beyond_the_limit() {
    // 45 accounted + 10 junk (within its own cap) = 55 > 50: the 5 oldest junk rows go.
    let (db, _dir) = db_with_accounted_and_junk(45, 10).await;
    let retention = Retention { max_unauthenticated_rows: 10, ..policy(0, 50) };
    assert_eq!(prune(&db, &retention, NOW_MS, &Metrics::default()).await.unwrap(), 5);
    assert_eq!(
        (count_where(&db, "app_id = 1").await, count_where(&db, UNAUTHENTICATED).await),
        (45, 5)
    );
    // Accounted rows alone beyond the limit: the oldest of them go, after every junk row.
    let retention = Retention { max_unauthenticated_rows: 10, ..policy(0, 40) };
    assert_eq!(prune(&db, &retention, NOW_MS, &Metrics::default()).await.unwrap(), 10);
    assert_eq!(
        (count_where(&db, "app_id = 1").await, count_where(&db, UNAUTHENTICATED).await),
        (40, 0)
    );
    let oldest: i64 = sqlx::query_scalar("SELECT MIN(started_at_ms) FROM access_logs")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(oldest, NOW_MS - 1_000_000 + 5 * 1000);
}

#[tokio::test]
async fn rows_with_a_user_or_tokens_are_accounted_and_junk_is_found_by_its_index() {
    let (db, _dir) = db_with_rows(std::iter::empty()).await;
    let row = |id: &str| AccessLog {
        request_id: id.into(),
        started_at_ms: NOW_MS,
        ..AccessLog::default()
    };
    let rows = [
        AccessLog { user_id: Some(7), ..row("user") },
        AccessLog { prompt_tokens: Some(1), ..row("tokens") },
        AccessLog { prompt_tokens: Some(0), total_tokens: None, ..row("zero") },
        row("bare"),
    ];
    insert_batch(&db, &rows).await.unwrap();
    let junk: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT request_id FROM access_logs WHERE {UNAUTHENTICATED} ORDER BY request_id"
    ))
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(junk, ["bare", "zero"]);
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!(
        "EXPLAIN QUERY PLAN {}",
        oldest_unauthenticated().replace(
            "DELETE FROM access_logs WHERE rowid IN",
            "SELECT * FROM access_logs WHERE rowid IN"
        )
    ))
    .bind(1i64)
    .fetch_all(&db)
    .await
    .unwrap();
    assert!(
        plan.iter().any(|(_, _, _, detail)| detail.contains("access_logs_unauthenticated")),
        "{plan:?}"
    );
}
