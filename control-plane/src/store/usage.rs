//! Usage summaries read from the access log: tokens and requests per app, model and UTC day
//! over a time range (the `access_logs_daily` index covers the query), and per model with how
//! the usage was known, for reconciliation with vLLM's counters.
//!
//! Token sums never fail: they are added as floating point (`TOTAL`, exact below 2^53) and
//! cast back, which saturates at `i64::MAX`, so rows stored before counts were checked (see
//! [`crate::usage_check`]) cannot make a summary overflow.

use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;

use crate::Db;

/// One app's use of one model on one day (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageRow {
    /// The app (`null` for requests without an API key: refused, or made with a user token).
    pub app_id: Option<i64>,
    /// The model asked for (`null` when the request named none).
    pub model: Option<String>,
    /// The day, `YYYY-MM-DD`, UTC.
    pub day: String,
    /// Requests logged.
    pub requests: i64,
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Completion tokens.
    pub completion_tokens: i64,
    /// Total tokens.
    pub total_tokens: i64,
}

/// Usage in `[from_ms, to_ms)` (Unix milliseconds), by day, then app, then model.
///
/// The day is `started_at_ms / 86400000` written exactly as in the `access_logs_daily` index,
/// so SQLite groups in index order, reading the index alone.
pub async fn by_app_model_day(
    db: &Db,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<UsageRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT app_id, model, date(started_at_ms / 86400000 * 86400, 'unixepoch') AS day, \
         COUNT(*) AS requests, CAST(TOTAL(prompt_tokens) AS INTEGER) AS prompt_tokens, \
         CAST(TOTAL(completion_tokens) AS INTEGER) AS completion_tokens, \
         CAST(TOTAL(total_tokens) AS INTEGER) AS total_tokens \
         FROM access_logs \
         WHERE started_at_ms / 86400000 BETWEEN ? / 86400000 AND ? / 86400000 \
           AND started_at_ms >= ? AND started_at_ms < ? \
         GROUP BY started_at_ms / 86400000, app_id, model \
         ORDER BY started_at_ms / 86400000, app_id, model",
    )
    .bind(from_ms)
    .bind(to_ms)
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(db)
    .await
}

/// What the gateway logged for one model over a range, beside vLLM's counters in a
/// reconciliation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelTotals {
    /// The model.
    #[serde(skip)]
    pub model: String,
    /// Requests the gateway forwarded (or tried to): every row without a gateway error.
    pub requests: i64,
    /// Requests the gateway refused itself (bad key, limit, …); they never reached vLLM.
    pub refused_requests: i64,
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Completion tokens.
    pub completion_tokens: i64,
    /// Requests whose usage the filter estimated (vLLM reported none).
    pub estimated_requests: i64,
    /// Forwarded requests logged without any usage.
    pub without_usage_requests: i64,
    /// Requests whose client went away before the end.
    pub client_disconnected_requests: i64,
}

/// Totals per model of the requests that started in `[from_ms, to_ms)`, by model name.
pub async fn by_model(db: &Db, from_ms: i64, to_ms: i64) -> Result<Vec<ModelTotals>, sqlx::Error> {
    sqlx::query_as(
        "SELECT model, COUNT(CASE WHEN gateway_error IS NULL THEN 1 END) AS requests, \
         COUNT(gateway_error) AS refused_requests, \
         CAST(TOTAL(prompt_tokens) AS INTEGER) AS prompt_tokens, \
         CAST(TOTAL(completion_tokens) AS INTEGER) AS completion_tokens, \
         COUNT(CASE WHEN usage_source = 'estimated' THEN 1 END) AS estimated_requests, \
         COUNT(CASE WHEN gateway_error IS NULL AND COALESCE(usage_source, 'none') = 'none' THEN 1 END) \
           AS without_usage_requests, \
         COUNT(CASE WHEN client_disconnected THEN 1 END) AS client_disconnected_requests \
         FROM access_logs \
         WHERE started_at_ms >= ? AND started_at_ms < ? AND model IS NOT NULL \
         GROUP BY model ORDER BY model",
    )
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(db)
    .await
}
