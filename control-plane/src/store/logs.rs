//! Access-log rows: written in batches by the log writer (multi-row statements of a few fixed
//! sizes, so each is prepared once), read page by page by the admin API.

use std::sync::LazyLock;

use serde::Serialize;
use sqlx::error::BoxDynError;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, Connection, FromRow, QueryBuilder, Sqlite, SqliteConnection};
use utoipa::ToSchema;

use crate::Db;

/// One request as logged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessLog {
    /// The gateway's request id (Envoy generates one for every request; a client's
    /// `x-request-id` is never used); one row per request (its start and this id, migration
    /// 0013).
    pub request_id: String,
    /// The client's own id (`x-client-request-id`), for tracing only; at most 256 bytes.
    pub client_request_id: Option<String>,
    /// When the request started, Unix milliseconds.
    pub started_at_ms: i64,
    /// HTTP method.
    pub method: Option<String>,
    /// Path (never with a `token` parameter).
    pub path: Option<String>,
    /// Status the client got.
    pub status: Option<i64>,
    /// Total duration, milliseconds.
    pub duration_ms: Option<i64>,
    /// Envoy cluster the request went to.
    pub upstream_cluster: Option<String>,
    /// Upstream address.
    pub upstream_host: Option<String>,
    /// Envoy's response flags (`UF`, `URX`, …), comma-separated.
    pub response_flags: Option<String>,
    /// Response body bytes sent.
    pub bytes_sent: Option<i64>,
    /// App of the key used.
    pub app_id: Option<i64>,
    /// Key used.
    pub key_id: Option<i64>,
    /// User of the JWT used.
    pub user_id: Option<i64>,
    /// Requested model.
    pub model: Option<String>,
    /// Streamed response.
    pub stream: Option<bool>,
    /// Prompt tokens.
    pub prompt_tokens: Option<i64>,
    /// Completion tokens.
    pub completion_tokens: Option<i64>,
    /// Total tokens.
    pub total_tokens: Option<i64>,
    /// `reported`, `estimated` or `none`.
    pub usage_source: Option<String>,
    /// Time to first token, milliseconds.
    pub ttft_ms: Option<i64>,
    /// The client went away before the end.
    pub client_disconnected: Option<bool>,
    /// Why the gateway refused the request.
    pub gateway_error: Option<String>,
    /// The error type the upstream reported.
    pub upstream_error: Option<String>,
    /// Why the reported token counts cannot be true (they are stored corrected: negative as 0,
    /// absurd as `null`); `null` when they are plausible.
    pub anomaly: Option<String>,
    /// The limit that refused the request or cut its stream off (`tokens_per_day`,
    /// `requests_per_minute`, …); `null` when none did.
    pub limited: Option<String>,
    /// The gateway ended the stream because it passed its grant of tokens.
    pub cut_off: Option<bool>,
}

/// What one write added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inserted {
    /// Rows that were new (the others repeated a stored request id).
    pub rows: u64,
    /// New rows flagged with an anomaly.
    pub flagged: u64,
}

/// Writes rows in one transaction; rows whose request (start and id) is already stored are
/// ignored.
/// Returns how many were new (and flagged).
pub async fn insert_batch(db: &Db, rows: &[AccessLog]) -> Result<Inserted, sqlx::Error> {
    let mut tx = db.begin().await?;
    let inserted = insert_rows(&mut tx, rows).await?;
    tx.commit().await?;
    Ok(inserted)
}

/// [`insert_batch`] on a connection of the caller's (the log writer keeps one, so its page
/// cache and prepared statements stay warm).
pub async fn insert_batch_on(
    conn: &mut SqliteConnection,
    rows: &[AccessLog],
) -> Result<Inserted, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let inserted = insert_rows(&mut tx, rows).await?;
    tx.commit().await?;
    Ok(inserted)
}

/// Writes rows on `conn` (inside the caller's transaction); rows whose request (start and
/// request id) is already stored, or that repeat an earlier row of `rows`, are ignored: the
/// first arrival of a request wins. Returns how many were new (and flagged).
///
/// Rows go in multi-row statements of a few fixed sizes ([`CHUNK_ROWS`]), each statement's
/// count of new rows read from SQLite (`changes()`); a flagged row goes alone, so whether it
/// was new is known exactly. The order of `rows` is kept. The new rows are added to the row
/// count and to their minutes' usage in the same transaction: summed from `rows` when every
/// one was new ([`super::usage::add_rows`]), else read back ([`account_written`]).
pub async fn insert_rows(
    conn: &mut SqliteConnection,
    rows: &[AccessLog],
) -> Result<Inserted, sqlx::Error> {
    let mut inserted = Inserted::default();
    let mut rest = rows;
    while !rest.is_empty() {
        let plain = rest.iter().position(|r| r.anomaly.is_some()).unwrap_or(rest.len());
        let (run, tail) = rest.split_at(plain);
        inserted.rows += insert_run(conn, run).await?;
        let Some((flagged, tail)) = tail.split_first() else { break };
        let new = insert_run(conn, std::slice::from_ref(flagged)).await?;
        inserted.rows += new;
        inserted.flagged += new;
        rest = tail;
    }
    if inserted.rows == rows.len() as u64 {
        account_new_rows(conn, rows).await?;
    } else {
        account_written(conn, inserted.rows).await?;
    }
    Ok(inserted)
}

/// [`account_written`] for a write whose every row was new: their minutes' usage is summed from
/// `rows` themselves ([`super::usage::add_rows`]) instead of read back.
async fn account_new_rows(
    conn: &mut SqliteConnection,
    rows: &[AccessLog],
) -> Result<(), sqlx::Error> {
    if !rows.is_empty() {
        count_inserted(conn, i64::try_from(rows.len()).unwrap_or(i64::MAX)).await?;
        super::usage::add_rows(conn, rows).await?;
    }
    Ok(())
}

/// Accounts for the `rows` rows the caller's transaction has just written: adds them to the row
/// count and to their minutes' usage ([`super::usage::add_written`]). [`insert_rows`] does so;
/// so must any other writer of rows (the bench's seed).
///
/// The rows are found as the newest ones: SQLite gives each new row the next rowid, and the
/// transaction holds the write lock, so they are the last `rows` rowids. They are read after the
/// writes, not before: a read first would start the transaction on a snapshot that another
/// writer's commit could make stale by the time it writes (`SQLITE_BUSY_SNAPSHOT`).
pub async fn account_written(conn: &mut SqliteConnection, rows: u64) -> Result<(), sqlx::Error> {
    if rows > 0 {
        let rows = i64::try_from(rows).unwrap_or(i64::MAX);
        count_inserted(conn, rows).await?;
        super::usage::add_written(conn, rows).await?;
    }
    Ok(())
}

/// How many rows are stored, as kept by [`count_inserted`] and the delete trigger (no count
/// over every row).
pub async fn row_count(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT rows FROM access_log_count WHERE id = 1").fetch_one(db).await
}

/// Adds `rows` to the stored row count (`access_log_count`, which an unfiltered listing and
/// retention read instead of counting every row): inserts are counted here, once per write,
/// deletes by a trigger (migrations 0005 and 0014).
async fn count_inserted(conn: &mut SqliteConnection, rows: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE access_log_count SET rows = rows + ? WHERE id = 1")
        .bind(rows)
        .execute(conn)
        .await?;
    Ok(())
}

/// The columns an insert writes, in the order [`bind_row`] binds them.
const COLUMNS: [&str; 27] = [
    "request_id",
    "client_request_id",
    "started_at_ms",
    "method",
    "path",
    "status",
    "duration_ms",
    "upstream_cluster",
    "upstream_host",
    "response_flags",
    "bytes_sent",
    "app_id",
    "key_id",
    "user_id",
    "model",
    "stream",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "usage_source",
    "ttft_ms",
    "client_disconnected",
    "gateway_error",
    "upstream_error",
    "anomaly",
    "limited",
    "cut_off",
];

/// Rows per statement, largest first: a run of rows is written in statements of these sizes
/// (the binary digits of its length), so there are only this many statement texts, each
/// prepared once per connection and then taken from sqlx's statement cache.
pub const CHUNK_ROWS: [usize; 8] = [128, 64, 32, 16, 8, 4, 2, 1];

/// SQLite's limit on the values one statement binds (`SQLITE_MAX_VARIABLE_NUMBER`, 32,766 in
/// the bundled SQLite); the largest statement binds 3,456.
const MAX_BOUND_VALUES: usize = 32_766;
const _: () = assert!(CHUNK_ROWS[0] * COLUMNS.len() <= MAX_BOUND_VALUES);

/// The insert of each size in [`CHUNK_ROWS`].
static INSERTS: LazyLock<[String; CHUNK_ROWS.len()]> = LazyLock::new(|| CHUNK_ROWS.map(insert_sql));

/// `INSERT OR IGNORE` of `rows` rows.
fn insert_sql(rows: usize) -> String {
    let row = format!("({})", vec!["?"; COLUMNS.len()].join(", "));
    let values = vec![row.as_str(); rows].join(", ");
    format!("INSERT OR IGNORE INTO access_logs ({}) VALUES {values}", COLUMNS.join(", "))
}

/// Writes `run` in order, in statements of the sizes in [`CHUNK_ROWS`]; returns how many rows
/// were new.
async fn insert_run(
    conn: &mut SqliteConnection,
    mut run: &[AccessLog],
) -> Result<u64, sqlx::Error> {
    let mut new = 0;
    for (size, sql) in CHUNK_ROWS.iter().zip(INSERTS.iter()) {
        while run.len() >= *size {
            let (chunk, tail) = run.split_at(*size);
            let mut args = SqliteArguments::default();
            args.reserve(chunk.len() * COLUMNS.len(), 0);
            for row in chunk {
                bind_row(&mut args, row).map_err(sqlx::Error::Encode)?;
            }
            new += sqlx::query_with(sql.as_str(), args).execute(&mut *conn).await?.rows_affected();
            run = tail;
        }
    }
    Ok(new)
}

/// Binds one row's values in the order of [`COLUMNS`]; text is borrowed, not copied.
fn bind_row<'r>(args: &mut SqliteArguments<'r>, r: &'r AccessLog) -> Result<(), BoxDynError> {
    args.add(r.request_id.as_str())?;
    args.add(r.client_request_id.as_deref())?;
    args.add(r.started_at_ms)?;
    args.add(r.method.as_deref())?;
    args.add(r.path.as_deref())?;
    args.add(r.status)?;
    args.add(r.duration_ms)?;
    args.add(r.upstream_cluster.as_deref())?;
    args.add(r.upstream_host.as_deref())?;
    args.add(r.response_flags.as_deref())?;
    args.add(r.bytes_sent)?;
    args.add(r.app_id)?;
    args.add(r.key_id)?;
    args.add(r.user_id)?;
    args.add(r.model.as_deref())?;
    args.add(r.stream)?;
    args.add(r.prompt_tokens)?;
    args.add(r.completion_tokens)?;
    args.add(r.total_tokens)?;
    args.add(r.usage_source.as_deref())?;
    args.add(r.ttft_ms)?;
    args.add(r.client_disconnected)?;
    args.add(r.gateway_error.as_deref())?;
    args.add(r.upstream_error.as_deref())?;
    args.add(r.anomaly.as_deref())?;
    args.add(r.limited.as_deref())?;
    args.add(r.cut_off)
}

/// Which rows a listing shows; times are Unix milliseconds, `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Only this app's requests.
    pub app_id: Option<i64>,
    /// Only this user's requests.
    pub user_id: Option<i64>,
    /// Only requests for this model.
    pub model: Option<String>,
    /// Only requests answered with this HTTP status.
    pub status: Option<i64>,
    /// Only streamed (or only non-streamed) requests.
    pub stream: Option<bool>,
    /// Only requests the client sent with this `x-client-request-id`.
    pub client_request_id: Option<String>,
    /// Only requests this limit refused or cut off (a limit kind's name).
    pub limited: Option<String>,
    /// Started at or after.
    pub from_ms: Option<i64>,
    /// Started before.
    pub to_ms: Option<i64>,
}

impl LogFilter {
    /// Whether it lets every row through.
    fn is_empty(&self) -> bool {
        self.app_id.is_none()
            && self.user_id.is_none()
            && self.model.is_none()
            && self.status.is_none()
            && self.stream.is_none()
            && self.client_request_id.is_none()
            && self.limited.is_none()
            && self.from_ms.is_none()
            && self.to_ms.is_none()
    }

    fn push_where(&self, query: &mut QueryBuilder<'_, Sqlite>) {
        query.push(" WHERE 1 = 1");
        if let Some(v) = self.app_id {
            query.push(" AND app_id = ").push_bind(v);
        }
        if let Some(v) = self.user_id {
            query.push(" AND user_id = ").push_bind(v);
        }
        if let Some(v) = &self.model {
            query.push(" AND model = ").push_bind(v.clone());
        }
        if let Some(v) = self.status {
            query.push(" AND status = ").push_bind(v);
        }
        if let Some(v) = self.stream {
            query.push(" AND stream = ").push_bind(v);
        }
        if let Some(v) = &self.client_request_id {
            query.push(" AND client_request_id = ").push_bind(v.clone());
        }
        if let Some(v) = &self.limited {
            query.push(" AND limited = ").push_bind(v.clone());
        }
        if let Some(v) = self.from_ms {
            query.push(" AND started_at_ms >= ").push_bind(v);
        }
        if let Some(v) = self.to_ms {
            query.push(" AND started_at_ms < ").push_bind(v);
        }
    }
}

/// A page of rows matching `filter`, newest first, and how many match in all.
pub async fn page(
    db: &Db,
    filter: &LogFilter,
    offset: i64,
    limit: i64,
) -> Result<(Vec<AccessLog>, i64), sqlx::Error> {
    let mut page = QueryBuilder::<Sqlite>::new("SELECT * FROM access_logs");
    filter.push_where(&mut page);
    // rowid ends every index entry, so the indexes give this order without a sort.
    page.push(" ORDER BY started_at_ms DESC, rowid DESC LIMIT ").push_bind(limit);
    page.push(" OFFSET ").push_bind(offset);
    let records = page.build_query_as().fetch_all(db).await?;
    if filter.is_empty() {
        return Ok((records, row_count(db).await?));
    }
    let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM access_logs");
    filter.push_where(&mut count);
    let total = count.build_query_scalar().fetch_one(db).await?;
    Ok((records, total))
}

#[cfg(test)]
mod tests;
