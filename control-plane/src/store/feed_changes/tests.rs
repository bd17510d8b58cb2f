//! The change log against a real SQLite file: what each write logs (cascades included), that
//! the log is pruned, and that reading it never scans a table.

use sqlx::Row;
use vllm_gateway_filter::feed::Status;

use super::*;
use crate::Db;

async fn db() -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::db::open(&dir.path().join("c.db").display().to_string()).await.unwrap();
    (db, dir)
}

async fn version(db: &Db) -> i64 {
    crate::store::feed::version(db).await.unwrap()
}

async fn changes_after(db: &Db, since: i64) -> Changes {
    Changes::after(&mut db.acquire().await.unwrap(), since).await.unwrap()
}

async fn add_app(db: &Db, id: i64, hashes: &[&str]) {
    sqlx::query("INSERT INTO apps (id, org_name, created_at, updated_at) VALUES (?, 'o', 0, 0)")
        .bind(id)
        .execute(db)
        .await
        .unwrap();
    for hash in hashes {
        sqlx::query(
            "INSERT INTO api_keys (app_id, hash, prefix, created_at) VALUES (?, ?, 'sk-live-x', 0)",
        )
        .bind(id)
        .bind(hash)
        .execute(db)
        .await
        .unwrap();
    }
}

/// A row of the log: version, app id, key hash, user id.
type Logged = (i64, Option<i64>, Option<String>, Option<i64>);

#[tokio::test]
async fn every_change_is_logged_under_the_version_it_bumped_to() {
    let (db, _dir) = db().await;
    let start = version(&db).await;
    assert_eq!(oldest_change(&db).await.unwrap(), None, "nothing logged before the first change");
    add_app(&db, 1, &["h1"]).await;
    sqlx::query("INSERT INTO users (email, password_hash, created_at, updated_at) VALUES ('u@x', 'x', 0, 0)")
        .execute(&db)
        .await
        .unwrap();
    crate::jwt::rotate(&db).await.unwrap();
    let rows = sqlx::query(
        "SELECT version, app_id, key_hash, user_id FROM state_changes ORDER BY version",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let logged: Vec<Logged> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    let v = |n: i64| start + n;
    let expected = vec![
        (v(1), Some(1), None, None),
        (v(2), Some(1), Some("h1".to_owned()), None),
        (v(3), None, None, Some(1)),
        (v(4), None, None, None),
    ];
    assert_eq!(logged, expected);
    assert_eq!(version(&db).await, v(4));
    assert_eq!(oldest_change(&db).await.unwrap(), Some(v(1)));
}

#[tokio::test]
async fn deleting_an_app_logs_the_hashes_of_the_keys_it_takes_with_it() {
    let (db, _dir) = db().await;
    add_app(&db, 1, &["a1", "a2"]).await;
    add_app(&db, 2, &["b1"]).await;
    let since = version(&db).await;
    sqlx::query("DELETE FROM apps WHERE id = 1").execute(&db).await.unwrap();
    let keys_left: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM api_keys").fetch_one(&db).await.unwrap();
    assert_eq!(keys_left, 1, "the keys cascaded");
    let changes = changes_after(&db, since).await;
    assert_eq!(changes.removed_keys, ["a1", "a2"], "cascaded deletes fire the keys' triggers");
    assert!(changes.keys.is_empty(), "{changes:?}");
    assert_eq!(version(&db).await, since + 3, "two keys and the app");
}

#[tokio::test]
async fn a_change_names_keys_and_users_as_they_are_now() {
    let (db, _dir) = db().await;
    add_app(&db, 1, &["a1"]).await;
    add_app(&db, 2, &["b1"]).await;
    sqlx::query("INSERT INTO users (id, email, password_hash, created_at, updated_at) VALUES (7, 'u@x', 'x', 0, 0), (8, 'v@x', 'x', 0, 0)")
        .execute(&db)
        .await
        .unwrap();
    let since = version(&db).await;
    sqlx::query("UPDATE apps SET status = 'disabled' WHERE id = 1").execute(&db).await.unwrap();
    sqlx::query("UPDATE api_keys SET retired_at = 1 WHERE hash = 'b1'").execute(&db).await.unwrap();
    sqlx::query(
        "INSERT INTO api_keys (app_id, hash, prefix, created_at) VALUES (2, 'b2', 'sk-live-x', 0)",
    )
    .execute(&db)
    .await
    .unwrap();
    sqlx::query("UPDATE users SET token_version = 5 WHERE id = 7").execute(&db).await.unwrap();
    sqlx::query("DELETE FROM users WHERE id = 8").execute(&db).await.unwrap();
    let changes = changes_after(&db, since).await;
    let keys: Vec<(&str, Status)> =
        changes.keys.iter().map(|k| (k.hash.as_str(), k.status)).collect();
    assert_eq!(keys, [("a1", Status::Disabled), ("b2", Status::Enabled)]);
    assert_eq!(changes.removed_keys, ["b1"]);
    assert_eq!(changes.users.iter().map(|u| (u.id, u.token_version)).collect::<Vec<_>>(), [(7, 5)]);
    assert_eq!(changes.removed_users, [8]);
    assert_eq!(
        changes_after(&db, version(&db).await).await,
        Changes::default(),
        "nothing after the last"
    );
}

#[tokio::test]
async fn the_log_keeps_the_newest_100000_changes() {
    let (db, _dir) = db().await;
    add_app(&db, 1, &["a1"]).await;
    let first = oldest_change(&db).await.unwrap().unwrap();
    // Skip ahead as 100,000 changes would, then change once more.
    sqlx::query("UPDATE state_version SET version = version + 99998").execute(&db).await.unwrap();
    sqlx::query("UPDATE apps SET remark = 'r' WHERE id = 1").execute(&db).await.unwrap();
    let now = version(&db).await;
    assert_eq!(now, first + 100_000);
    assert_eq!(oldest_change(&db).await.unwrap(), Some(first + 1), "the first change is pruned");
    let logged: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM state_changes").fetch_one(&db).await.unwrap();
    assert_eq!(logged, 2);
}

#[tokio::test]
async fn the_epoch_is_16_hex_digits_made_once() {
    let (db, _dir) = db().await;
    let epoch = epoch(&db).await.unwrap();
    assert!(
        epoch.len() == 16
            && epoch.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{epoch}"
    );
    add_app(&db, 1, &["a1"]).await;
    assert_eq!(super::epoch(&db).await.unwrap(), epoch);
    let (other, _dir) = self::db().await;
    assert_ne!(super::epoch(&other).await.unwrap(), epoch, "another database, another epoch");
}

/// The plan of `query` with every parameter bound to `since`: one line per step.
async fn plan(db: &Db, query: &str, parameters: usize) -> Vec<String> {
    let explain = format!("EXPLAIN QUERY PLAN {query}");
    let mut q = sqlx::query(&explain);
    for _ in 0..parameters {
        q = q.bind(1i64);
    }
    q.fetch_all(db).await.unwrap().iter().map(|r| r.get::<String, _>("detail")).collect()
}

#[tokio::test]
async fn reading_the_changes_searches_by_index_and_never_scans_a_table() {
    let (db, _dir) = db().await;
    let keys = keys_query();
    let key_plan = plan(&db, &keys, 2).await;
    assert!(
        key_plan.iter().any(|d| d.contains("USING INDEX") && d.contains("(hash=?)")),
        "{key_plan:?}"
    );
    assert!(
        key_plan.iter().any(|d| d.contains("USING INDEX api_keys_app (app_id=?)")),
        "{key_plan:?}"
    );
    let users = users_query();
    for query in [keys.as_str(), REMOVED_KEYS, users.as_str(), REMOVED_USERS] {
        let steps = plan(&db, query, query.matches('?').count()).await;
        assert!(
            steps.iter().any(|d| d.contains("USING INTEGER PRIMARY KEY (rowid>?)")),
            "{steps:?}"
        );
        for step in &steps {
            assert!(!step.starts_with("SCAN"), "a scan: {step} in {steps:?}");
        }
    }
}
