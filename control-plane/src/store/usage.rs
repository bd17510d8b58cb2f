//! Usage summaries: tokens and requests per app, model and UTC day over a time range, read
//! from the access log (the `access_logs_daily` index covers the query).

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
pub async fn by_app_model_day(db: &Db, from_ms: i64, to_ms: i64) -> Result<Vec<UsageRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT app_id, model, date(started_at_ms / 86400000 * 86400, 'unixepoch') AS day, \
         COUNT(*) AS requests, COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens, \
         COALESCE(SUM(completion_tokens), 0) AS completion_tokens, \
         COALESCE(SUM(total_tokens), 0) AS total_tokens \
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
