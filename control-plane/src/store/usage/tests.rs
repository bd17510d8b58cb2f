//! The per-minute sums against the rows they sum: for any range, the summary read from them and
//! from the partial minutes equals the one summed over every row, through repeats, deletes
//! (retention) and the migration that built them from rows already stored.

use super::*;
use crate::store::logs::{insert_batch, AccessLog};

const MINUTE: i64 = MINUTE_MS;
const DAY: i64 = 1440 * MINUTE;
/// 2026-02-01T00:00:00Z.
const T0: i64 = 1_769_904_000_000;

async fn open() -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::db::open(&dir.path().join("u.db").display().to_string()).await.unwrap();
    (db, dir)
}

/// The summary summed over every row, as the query read it before migration 0015.
async fn summed_over_rows(db: &Db, from_ms: i64, to_ms: i64) -> Vec<UsageRow> {
    sqlx::query_as(
        "SELECT app_id, model, date(started_at_ms / 86400000 * 86400, 'unixepoch') AS day, \
         COUNT(*) AS requests, CAST(TOTAL(prompt_tokens) AS INTEGER) AS prompt_tokens, \
         CAST(TOTAL(completion_tokens) AS INTEGER) AS completion_tokens, \
         CAST(TOTAL(total_tokens) AS INTEGER) AS total_tokens \
         FROM access_logs WHERE started_at_ms >= ? AND started_at_ms < ? \
         GROUP BY started_at_ms / 86400000, app_id, model \
         ORDER BY started_at_ms / 86400000, app_id, model",
    )
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(db)
    .await
    .unwrap()
}

/// A small deterministic generator (xorshift), so a failure repeats.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Rows over three days, bunched on minute and day boundaries; apps and models with none among
/// them (and an empty model name, which is not none); tokens sometimes unknown.
fn rows(dice: &mut Dice, n: usize) -> Vec<AccessLog> {
    let models = [None, Some(""), Some("m1"), Some("m2")];
    (0..n)
        .map(|i| {
            let boundary = T0 + (dice.below(3 * 1440) as i64) * MINUTE;
            let started_at_ms = boundary + dice.below(3) as i64 - 1 + dice.below(2) as i64 * 777;
            let tokens = |d: &mut Dice| (d.below(5) > 0).then(|| d.below(1000) as i64);
            AccessLog {
                request_id: format!("r-{i}"),
                started_at_ms,
                app_id: [None, Some(1), Some(2)][dice.below(3) as usize],
                model: models[dice.below(4) as usize].map(str::to_owned),
                prompt_tokens: tokens(dice),
                completion_tokens: tokens(dice),
                total_tokens: tokens(dice),
                ..AccessLog::default()
            }
        })
        .collect()
}

/// Ranges of every kind: whole minutes, cut minutes, inside one minute, empty, the whole log.
fn ranges(dice: &mut Dice) -> Vec<(i64, i64)> {
    let mut out = vec![(0, i64::MAX), (T0, T0 + DAY), (T0 + 1, T0 + 59_999), (T0 - 5, T0 + 5)];
    for _ in 0..40 {
        let from = T0 - DAY / 2 + dice.below(4 * DAY as u64) as i64;
        let from = if dice.below(2) == 0 { from - from.rem_euclid(MINUTE) } else { from };
        let length = [1, 999, MINUTE, 2 * MINUTE + 1, DAY, 3 * DAY][dice.below(6) as usize];
        out.push((from, from + length));
    }
    out
}

async fn assert_sums_match_rows(db: &Db, dice: &mut Dice) {
    for (from, to) in ranges(dice) {
        assert_eq!(
            by_app_model_day(db, from, to).await.unwrap(),
            summed_over_rows(db, from, to).await,
            "range [{from}, {to})"
        );
    }
}

#[tokio::test]
async fn the_sums_by_minute_match_the_rows_for_any_range() {
    let (db, _dir) = open().await;
    let mut dice = Dice(0x9E37_79B9_7F4A_7C15);
    let rows = rows(&mut dice, 3000);
    // Writes of new rows only: summed before they are written.
    for batch in rows[..2500].chunks(250) {
        insert_batch(&db, batch).await.unwrap();
    }
    // A write with repeats among its new rows: its new rows are read back and summed.
    insert_batch(&db, &rows[2000..]).await.unwrap();
    // Repeats add nothing.
    insert_batch(&db, &rows[..500]).await.unwrap();
    assert_sums_match_rows(&db, &mut dice).await;
    // Deletes (retention) take their rows off; a minute left empty goes.
    sqlx::query("DELETE FROM access_logs WHERE rowid % 3 = 0 OR started_at_ms < ?")
        .bind(T0 + DAY)
        .execute(&db)
        .await
        .unwrap();
    assert_sums_match_rows(&db, &mut dice).await;
    let empty: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM usage_minutes WHERE requests <= 0 OR minute < ?")
            .bind((T0 + DAY) / MINUTE - 1)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(empty, 0, "no minute is kept without requests");
}

#[tokio::test]
async fn migration_0015_sums_the_rows_already_stored() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let old = crate::db::migrated_before(&url, 15).await;
    let mut dice = Dice(7);
    for row in rows(&mut dice, 300) {
        // As an older writer stored them (today's also keeps the sums, not there yet).
        sqlx::query(
            "INSERT INTO access_logs (request_id, started_at_ms, app_id, model, prompt_tokens, \
             completion_tokens, total_tokens) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&row.request_id)
        .bind(row.started_at_ms)
        .bind(row.app_id)
        .bind(&row.model)
        .bind(row.prompt_tokens)
        .bind(row.completion_tokens)
        .bind(row.total_tokens)
        .execute(&old)
        .await
        .unwrap();
    }
    old.close().await;
    let db = crate::db::open(&url).await.unwrap();
    assert_sums_match_rows(&db, &mut dice).await;
}

#[tokio::test]
async fn a_write_and_a_delete_find_their_minute_by_its_key() {
    let (db, _dir) = open().await;
    let plan = |sql: &'static str| {
        let db = db.clone();
        async move {
            let rows: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(sql).fetch_all(&db).await.unwrap();
            rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("; ")
        }
    };
    // The trigger's lookup, as SQLite plans it.
    let delete = plan(
        "EXPLAIN QUERY PLAN UPDATE usage_minutes SET requests = requests - 1 \
         WHERE minute = 1 AND IFNULL(app_id, x'') = IFNULL(NULL, x'') \
         AND IFNULL(model, x'') = IFNULL('m', x'')",
    )
    .await;
    assert!(delete.contains("USING INDEX usage_minutes_key"), "{delete}");
    // The partial minutes are read through the log's time index, not by scanning it.
    let partial = plan(
        "EXPLAIN QUERY PLAN SELECT app_id FROM access_logs \
         WHERE started_at_ms >= 1 AND started_at_ms < 2",
    )
    .await;
    assert!(partial.contains("access_logs_request"), "{partial}");
}

#[test]
fn whole_minutes_are_those_wholly_inside_the_range() {
    let of = |from, to| {
        let w = WholeMinutes::of(from, to);
        (w.first, w.end, w.partial(from, to))
    };
    assert_eq!(of(MINUTE, 3 * MINUTE), (1, 3, [(MINUTE, MINUTE), (3 * MINUTE, 3 * MINUTE)]));
    assert_eq!(
        of(MINUTE + 1, 3 * MINUTE - 1),
        (0, 0, [(MINUTE + 1, 3 * MINUTE - 1), (3 * MINUTE - 1, 3 * MINUTE - 1)]),
        "a minute cut at both ends is read row by row"
    );
    assert_eq!(of(MINUTE + 1, 4 * MINUTE + 5).0..of(MINUTE + 1, 4 * MINUTE + 5).1, 2..4);
    assert_eq!(of(-5 * MINUTE, 2 * MINUTE).0, 1, "minute 0 and before are never whole");
    assert_eq!(of(T0 + 1, T0 + 2), (0, 0, [(T0 + 1, T0 + 2), (T0 + 2, T0 + 2)]));
}

#[tokio::test]
async fn writers_on_two_connections_never_collide_and_sum_exactly() {
    // The access-log writer and the file-log ingest write at the same time on connections of
    // their own: neither may fail because the other committed while it was writing.
    let (db, _dir) = open().await;
    let mut dice = Dice(99);
    let rows = rows(&mut dice, 2000);
    let (a, b) = rows.split_at(1000);
    let write = |part: &[AccessLog]| {
        let (db, part) = (db.clone(), part.to_vec());
        tokio::spawn(async move {
            let mut conn = db.acquire().await.unwrap();
            for batch in part.chunks(5) {
                crate::store::logs::insert_batch_on(&mut conn, batch).await.unwrap();
            }
        })
    };
    let (one, other) = (write(a), write(b));
    one.await.unwrap();
    other.await.unwrap();
    assert_sums_match_rows(&db, &mut dice).await;
}
