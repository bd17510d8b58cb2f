//! Access-log rows: written in batches by the log writer, read page by page by the admin API.

use serde::Serialize;
use sqlx::{FromRow, QueryBuilder, Sqlite, SqliteConnection};
use utoipa::ToSchema;

use crate::Db;

/// One request as logged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessLog {
    /// The gateway's request id (Envoy generates one for every request; a client's
    /// `x-request-id` is never used); one row per id.
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

/// Writes rows in one transaction; rows whose request id is already stored are ignored.
/// Returns how many were new (and flagged).
pub async fn insert_batch(db: &Db, rows: &[AccessLog]) -> Result<Inserted, sqlx::Error> {
    let mut tx = db.begin().await?;
    let inserted = insert_rows(&mut tx, rows).await?;
    tx.commit().await?;
    Ok(inserted)
}

/// Writes rows on `conn` (inside the caller's transaction); rows whose request id is already
/// stored are ignored: the first arrival of a request wins. Returns how many were new (and
/// flagged).
pub async fn insert_rows(conn: &mut SqliteConnection, rows: &[AccessLog]) -> Result<Inserted, sqlx::Error> {
    let mut inserted = Inserted::default();
    for r in rows {
        let new = sqlx::query(
            "INSERT OR IGNORE INTO access_logs (request_id, client_request_id, started_at_ms, method, \
             path, status, duration_ms, upstream_cluster, upstream_host, response_flags, bytes_sent, \
             app_id, key_id, user_id, model, stream, prompt_tokens, completion_tokens, total_tokens, \
             usage_source, ttft_ms, client_disconnected, gateway_error, upstream_error, anomaly, limited, cut_off) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.request_id)
        .bind(&r.client_request_id)
        .bind(r.started_at_ms)
        .bind(&r.method)
        .bind(&r.path)
        .bind(r.status)
        .bind(r.duration_ms)
        .bind(&r.upstream_cluster)
        .bind(&r.upstream_host)
        .bind(&r.response_flags)
        .bind(r.bytes_sent)
        .bind(r.app_id)
        .bind(r.key_id)
        .bind(r.user_id)
        .bind(&r.model)
        .bind(r.stream)
        .bind(r.prompt_tokens)
        .bind(r.completion_tokens)
        .bind(r.total_tokens)
        .bind(&r.usage_source)
        .bind(r.ttft_ms)
        .bind(r.client_disconnected)
        .bind(&r.gateway_error)
        .bind(&r.upstream_error)
        .bind(&r.anomaly)
        .bind(&r.limited)
        .bind(r.cut_off)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        inserted.rows += new;
        if r.anomaly.is_some() {
            inserted.flagged += new;
        }
    }
    Ok(inserted)
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
pub async fn page(db: &Db, filter: &LogFilter, offset: i64, limit: i64) -> Result<(Vec<AccessLog>, i64), sqlx::Error> {
    let mut page = QueryBuilder::<Sqlite>::new("SELECT * FROM access_logs");
    filter.push_where(&mut page);
    // rowid ends every index entry, so the indexes give this order without a sort.
    page.push(" ORDER BY started_at_ms DESC, rowid DESC LIMIT ").push_bind(limit);
    page.push(" OFFSET ").push_bind(offset);
    let records = page.build_query_as().fetch_all(db).await?;
    if filter.is_empty() {
        // Kept by triggers (migration 0005): no count over every row.
        let total = sqlx::query_scalar("SELECT rows FROM access_log_count WHERE id = 1").fetch_one(db).await?;
        return Ok((records, total));
    }
    let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM access_logs");
    filter.push_where(&mut count);
    let total = count.build_query_scalar().fetch_one(db).await?;
    Ok((records, total))
}
