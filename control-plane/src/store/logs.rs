//! Access-log rows: written in batches by the log writer, read page by page by the admin API.

use serde::Serialize;
use sqlx::FromRow;

use crate::Db;

/// One request as logged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, FromRow)]
#[serde(rename_all = "camelCase")]
pub struct AccessLog {
    /// Envoy's `x-request-id`; one row per id.
    pub request_id: String,
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
}

/// Writes rows in one transaction; rows whose request id is already stored are ignored.
/// Returns how many were new.
pub async fn insert_batch(db: &Db, rows: &[AccessLog]) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    let mut inserted = 0;
    for r in rows {
        inserted += sqlx::query(
            "INSERT OR IGNORE INTO access_logs (request_id, started_at_ms, method, path, status, \
             duration_ms, upstream_cluster, upstream_host, response_flags, bytes_sent, app_id, key_id, \
             user_id, model, stream, prompt_tokens, completion_tokens, total_tokens, usage_source, \
             ttft_ms, client_disconnected, gateway_error, upstream_error) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.request_id)
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
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    tx.commit().await?;
    Ok(inserted)
}

/// A page of rows, newest first, and the total count.
pub async fn page(db: &Db, offset: i64, limit: i64) -> Result<(Vec<AccessLog>, i64), sqlx::Error> {
    let records = sqlx::query_as(
        "SELECT * FROM access_logs ORDER BY started_at_ms DESC, request_id DESC LIMIT ? OFFSET ?",
    )
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await?;
    let total = sqlx::query_scalar("SELECT COUNT(*) FROM access_logs").fetch_one(db).await?;
    Ok((records, total))
}
