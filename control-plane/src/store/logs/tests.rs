//! Batched inserts against a real SQLite file: statements of several sizes in one batch, repeats
//! (within a statement, across statements, of stored rows) ignored and counted exactly, flagged
//! rows counted only when new, every column stored as given.

use super::*;

async fn open() -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::db::open(&dir.path().join("l.db").display().to_string()).await.unwrap();
    (db, dir)
}

fn row(id: &str, started_at_ms: i64) -> AccessLog {
    AccessLog { request_id: id.into(), started_at_ms, ..AccessLog::default() }
}

/// A row with every column set, each to a value of its own.
fn full(n: i64) -> AccessLog {
    let text = |what: &str| Some(format!("{what}-{n}"));
    AccessLog {
        request_id: format!("full-{n}"),
        client_request_id: text("client"),
        started_at_ms: 1_700_000_000_000 + n,
        method: text("POST"),
        path: text("/v1/chat/completions"),
        status: Some(200 + n),
        duration_ms: Some(1000 + n),
        upstream_cluster: text("cluster"),
        upstream_host: text("host"),
        response_flags: text("UF"),
        bytes_sent: Some(2000 + n),
        app_id: Some(3000 + n),
        key_id: Some(4000 + n),
        user_id: Some(5000 + n),
        model: text("model"),
        stream: Some(n % 2 == 0),
        prompt_tokens: Some(6000 + n),
        completion_tokens: Some(7000 + n),
        total_tokens: Some(13000 + 2 * n),
        usage_source: text("reported"),
        ttft_ms: Some(8000 + n),
        client_disconnected: Some(n % 2 == 1),
        gateway_error: text("gateway"),
        upstream_error: text("upstream"),
        anomaly: None,
        limited: text("tokens_per_day"),
        cut_off: Some(n % 3 == 0),
    }
}

async fn stored(db: &Db) -> Vec<AccessLog> {
    sqlx::query_as("SELECT * FROM access_logs ORDER BY started_at_ms, request_id")
        .fetch_all(db)
        .await
        .unwrap()
}

async fn counted(db: &Db) -> i64 {
    row_count(db).await.unwrap()
}

#[test]
fn statements_have_one_value_per_column_and_row() {
    for size in CHUNK_ROWS {
        let sql = insert_sql(size);
        assert_eq!(sql.matches('?').count(), size * COLUMNS.len());
        assert_eq!(sql.matches('(').count(), size + 1, "one column list, then `size` rows");
    }
}

#[tokio::test]
async fn every_column_is_stored_as_given_in_statements_of_every_size() {
    let (db, _dir) = open().await;
    // 255 rows: one statement of each size.
    let rows: Vec<AccessLog> = (0..255).map(full).collect();
    assert_eq!(insert_batch(&db, &rows).await.unwrap(), Inserted { rows: 255, flagged: 0 });
    assert_eq!(stored(&db).await, rows);
    assert_eq!(counted(&db).await, 255);
}

#[tokio::test]
async fn repeats_are_ignored_and_counted_exactly_wherever_they_are() {
    let (db, _dir) = open().await;
    insert_batch(&db, &[row("stored", 1)]).await.unwrap();
    let mut rows: Vec<AccessLog> = (0..300).map(|i| row(&format!("r{i}"), 10 + i)).collect();
    // A repeat (same start, same id, other facts) of a row of the same statement, of a row of an
    // earlier statement, of a stored row.
    let second = |id: &str, started_at_ms| AccessLog {
        path: Some("/second".into()),
        ..row(id, started_at_ms)
    };
    rows.insert(150, second("r140", 150));
    rows.insert(200, second("r3", 13));
    rows.insert(250, second("stored", 1));
    let inserted = insert_batch(&db, &rows).await.unwrap();
    assert_eq!(inserted, Inserted { rows: 300, flagged: 0 });
    let all = stored(&db).await;
    assert_eq!(all.len(), 301);
    assert_eq!(counted(&db).await, 301);
    assert!(all.iter().all(|r| r.path.is_none()), "the first arrival of each request wins");
}

#[tokio::test]
async fn a_request_is_its_start_and_its_id() {
    let (db, _dir) = open().await;
    let rows = [row("same", 1), row("same", 2), row("other", 1), row("same", 1)];
    assert_eq!(insert_batch(&db, &rows).await.unwrap(), Inserted { rows: 3, flagged: 0 });
    assert_eq!(counted(&db).await, 3);
}

#[tokio::test]
async fn flagged_rows_count_only_when_they_are_new() {
    let (db, _dir) = open().await;
    insert_batch(&db, &[row("old", 1)]).await.unwrap();
    let flagged = |id: &str, started_at_ms| AccessLog {
        anomaly: Some("prompt_tokens < 0".into()),
        ..row(id, started_at_ms)
    };
    let mut rows: Vec<AccessLog> = (0..40).map(|i| row(&format!("r{i}"), 10 + i)).collect();
    rows.insert(5, flagged("f1", 2));
    rows.insert(20, flagged("old", 1));
    rows.insert(21, flagged("r7", 17));
    rows.insert(30, flagged("f1", 2));
    rows.push(flagged("f2", 2));
    let inserted = insert_batch(&db, &rows).await.unwrap();
    assert_eq!(inserted, Inserted { rows: 42, flagged: 2 });
    let flagged_stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM access_logs WHERE anomaly IS NOT NULL")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(flagged_stored, 2);
}

#[tokio::test]
async fn an_empty_batch_writes_nothing() {
    let (db, _dir) = open().await;
    assert_eq!(insert_batch(&db, &[]).await.unwrap(), Inserted::default());
    assert_eq!(counted(&db).await, 0);
}

#[tokio::test]
async fn migrations_0013_and_0014_keep_every_row_its_rowid_and_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let old = crate::db::migrated_before(&url, 13).await;
    let rows: Vec<AccessLog> = (0..40).map(full).collect();
    // The rows alone: today's writer also keeps the usage of 0015, not there yet.
    insert_run(&mut old.acquire().await.unwrap(), &rows).await.unwrap();
    sqlx::query("DELETE FROM access_logs WHERE request_id = 'full-3'").execute(&old).await.unwrap();
    // Today's writer counts its rows itself; before 0014 a trigger did so too.
    sqlx::query("UPDATE access_log_count SET rows = (SELECT COUNT(*) FROM access_logs)")
        .execute(&old)
        .await
        .unwrap();
    let rowids = |db| async move {
        sqlx::query_as::<_, (i64, String)>(
            "SELECT rowid, request_id FROM access_logs ORDER BY rowid",
        )
        .fetch_all(db)
        .await
        .unwrap()
    };
    let kept = rowids(&old).await;
    old.close().await;
    let db = crate::db::open(&url).await.unwrap();
    assert_eq!(rowids(&db).await, kept);
    let expected: Vec<AccessLog> = rows.into_iter().filter(|r| r.request_id != "full-3").collect();
    assert_eq!(stored(&db).await, expected);
    assert_eq!(counted(&db).await, 39);
    insert_batch(&db, &[full(1), full(3)]).await.unwrap();
    assert_eq!(counted(&db).await, 40, "a repeat is still ignored, the triggers still count");
}

/// The query plan's details for `sql` (its `?` bound to 1).
async fn plan(db: &Db, sql: &str) -> String {
    let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(sql);
    for _ in 0..sql.matches('?').count() {
        query = query.bind(1i64);
    }
    let rows = query.fetch_all(db).await.unwrap();
    rows.into_iter().map(|(_, _, _, detail)| detail).collect::<Vec<_>>().join("; ")
}

#[tokio::test]
async fn the_request_key_serves_time_order_and_ranges() {
    let (db, _dir) = open().await;
    let listing = "EXPLAIN QUERY PLAN SELECT * FROM access_logs WHERE 1 = 1 \
                   ORDER BY started_at_ms DESC, rowid DESC LIMIT ? OFFSET ?";
    let range = "EXPLAIN QUERY PLAN SELECT * FROM access_logs WHERE 1 = 1 \
                 AND started_at_ms >= ? AND started_at_ms < ? ORDER BY started_at_ms DESC, rowid DESC LIMIT ?";
    for sql in [listing, range] {
        let plan = plan(&db, sql).await;
        assert!(plan.contains("access_logs_request"), "{plan}");
        assert!(!plan.contains("USE TEMP B-TREE FOR ORDER BY"), "no sort of every row: {plan}");
    }
}

/// A listing by user, app or model reads its index (partial: only rows that have one, migration
/// 0016) in time order, without a sort.
#[tokio::test]
async fn listings_by_user_app_or_model_read_their_partial_indexes() {
    let (db, _dir) = open().await;
    for (column, index) in [
        ("user_id", "access_logs_user"),
        ("app_id", "access_logs_app"),
        ("model", "access_logs_model"),
    ] {
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT * FROM access_logs WHERE 1 = 1 AND {column} = ? \
             ORDER BY started_at_ms DESC, rowid DESC LIMIT ? OFFSET ?"
        );
        let listing = plan(&db, &sql).await;
        assert!(listing.contains(index), "{listing}");
        assert!(!listing.contains("USE TEMP B-TREE"), "no sort: {listing}");
        let count = format!(
            "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM access_logs WHERE 1 = 1 AND {column} = ?"
        );
        let counting = plan(&db, &count).await;
        assert!(counting.contains(index), "{counting}");
    }
}
