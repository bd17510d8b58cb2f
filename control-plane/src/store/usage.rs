//! Usage summaries read from the access log: tokens and requests per app, model and UTC day
//! over a time range (from the per-minute sums the log writer keeps beside the rows,
//! [`add_rows`] or [`add_written`]), and per model with how the usage was known, for
//! reconciliation with vLLM's counters.
//!
//! Token sums never fail: rows are summed saturating at `i64::MAX` (by [`add_rows`]) or as
//! floating point (`TOTAL`, exact below 2^53) cast back, which saturates too, so rows stored
//! before counts were checked (see [`crate::usage_check`]) cannot make a summary overflow; a
//! minute's sum that would overflow becomes floating point in SQLite rather than an error.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::{FromRow, SqliteConnection};
use utoipa::ToSchema;

use crate::store::logs::AccessLog;
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
/// The whole minutes of the range are read from their sums (`usage_minutes`, migration 0015),
/// the rows of the partial minutes at its ends from the log itself (through its time index);
/// both are grouped by day as `started_at_ms / 86400000` would be.
pub async fn by_app_model_day(
    db: &Db,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<UsageRow>, sqlx::Error> {
    let whole = WholeMinutes::of(from_ms, to_ms);
    let [head, tail] = whole.partial(from_ms, to_ms);
    sqlx::query_as(
        "WITH parts (day, app_id, model, requests, prompt_tokens, completion_tokens, total_tokens) AS ( \
           SELECT minute / 1440, app_id, model, requests, prompt_tokens, completion_tokens, total_tokens \
           FROM usage_minutes WHERE minute >= ?1 AND minute < ?2 \
           UNION ALL \
           SELECT started_at_ms / 86400000, app_id, model, 1, prompt_tokens, completion_tokens, total_tokens \
           FROM access_logs WHERE started_at_ms >= ?3 AND started_at_ms < ?4 \
           UNION ALL \
           SELECT started_at_ms / 86400000, app_id, model, 1, prompt_tokens, completion_tokens, total_tokens \
           FROM access_logs WHERE started_at_ms >= ?5 AND started_at_ms < ?6) \
         SELECT app_id, model, date(day * 86400, 'unixepoch') AS day, \
         CAST(TOTAL(requests) AS INTEGER) AS requests, \
         CAST(TOTAL(prompt_tokens) AS INTEGER) AS prompt_tokens, \
         CAST(TOTAL(completion_tokens) AS INTEGER) AS completion_tokens, \
         CAST(TOTAL(total_tokens) AS INTEGER) AS total_tokens \
         FROM parts GROUP BY parts.day, app_id, model ORDER BY parts.day, app_id, model",
    )
    .bind(whole.first)
    .bind(whole.end)
    .bind(head.0)
    .bind(head.1)
    .bind(tail.0)
    .bind(tail.1)
    .fetch_all(db)
    .await
}

/// Milliseconds in a minute.
const MINUTE_MS: i64 = 60_000;

/// The minutes `[first, end)` that lie wholly inside a range; none (`first == end`) when it
/// spans no whole minute. Minutes before minute 1 never count as whole: SQLite's division
/// rounds toward zero, so its minute 0 holds the milliseconds on both sides of 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WholeMinutes {
    first: i64,
    end: i64,
}

impl WholeMinutes {
    fn of(from_ms: i64, to_ms: i64) -> Self {
        let first = from_ms.div_euclid(MINUTE_MS) + i64::from(from_ms.rem_euclid(MINUTE_MS) > 0);
        let first = first.max(1);
        let end = to_ms.div_euclid(MINUTE_MS);
        if end > first {
            Self { first, end }
        } else {
            Self { first: 0, end: 0 }
        }
    }

    /// The two stretches of `[from_ms, to_ms)` outside the whole minutes, read row by row:
    /// before them and after them (all of it and nothing, when there are none).
    fn partial(self, from_ms: i64, to_ms: i64) -> [(i64, i64); 2] {
        if self.end > self.first {
            [(from_ms, self.first * MINUTE_MS), (self.end * MINUTE_MS, to_ms)]
        } else {
            [(from_ms, to_ms), (to_ms, to_ms)]
        }
    }
}

/// What adding to a minute's sums does when the minute, app and model already have some: the
/// end of both upserts into `usage_minutes` ([`add_written`], [`add_rows`]).
macro_rules! add_to_stored_minute {
    () => {
        " ON CONFLICT (minute, IFNULL(app_id, x''), IFNULL(model, x'')) DO UPDATE SET \
           requests = requests + excluded.requests, \
           prompt_tokens = prompt_tokens + excluded.prompt_tokens, \
           completion_tokens = completion_tokens + excluded.completion_tokens, \
           total_tokens = total_tokens + excluded.total_tokens"
    };
}

/// Adds the newest `rows` access-log rows (a write's own: see
/// [`crate::store::logs::account_written`]) to the sums of their minutes, in the caller's
/// transaction: they are read back and summed by SQLite.
pub async fn add_written(conn: &mut SqliteConnection, rows: i64) -> Result<(), sqlx::Error> {
    sqlx::query(concat!(
        "INSERT INTO usage_minutes \
           (minute, app_id, model, requests, prompt_tokens, completion_tokens, total_tokens) \
         SELECT started_at_ms / 60000, app_id, model, COUNT(*), \
           CAST(TOTAL(prompt_tokens) AS INTEGER), CAST(TOTAL(completion_tokens) AS INTEGER), \
           CAST(TOTAL(total_tokens) AS INTEGER) \
         FROM access_logs WHERE rowid > (SELECT IFNULL(MAX(rowid), 0) FROM access_logs) - ? \
         GROUP BY started_at_ms / 60000, app_id, model",
        add_to_stored_minute!()
    ))
    .bind(rows)
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds `rows`, every one of which the caller's transaction has just written, to the sums of
/// their minutes: summed here, without reading them back, and sent as one JSON array of
/// `[minute, app, model, requests, prompt, completion, total]` that one statement reads with
/// `json_each` (the sums of a write's rows are few: its minutes times its apps and models).
pub async fn add_rows(conn: &mut SqliteConnection, rows: &[AccessLog]) -> Result<(), sqlx::Error> {
    let sums = serde_json::to_string(&sums_by_minute(rows))
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(concat!(
        "INSERT INTO usage_minutes \
           (minute, app_id, model, requests, prompt_tokens, completion_tokens, total_tokens) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
           value ->> 6 \
         FROM json_each(?) WHERE true",
        add_to_stored_minute!()
    ))
    .bind(sums)
    .execute(conn)
    .await?;
    Ok(())
}

/// A minute (`started_at_ms / 60000`, as SQLite divides), an app and a model.
type MinuteKey<'r> = (i64, Option<i64>, Option<&'r str>);

/// A minute, app and model with its requests, prompt, completion and total tokens.
type MinuteSums<'r> = (i64, Option<i64>, Option<&'r str>, i64, i64, i64, i64);

/// The sums of `rows` by minute, app and model, as `add_written` would have SQLite make them
/// (unknown counts add nothing; sums saturate instead of overflowing).
fn sums_by_minute(rows: &[AccessLog]) -> Vec<MinuteSums<'_>> {
    let mut sums: HashMap<MinuteKey<'_>, [i64; 4]> = HashMap::new();
    for row in rows {
        let key = (row.started_at_ms / MINUTE_MS, row.app_id, row.model.as_deref());
        let counts = [Some(1), row.prompt_tokens, row.completion_tokens, row.total_tokens];
        let sum = sums.entry(key).or_default();
        for (total, count) in sum.iter_mut().zip(counts) {
            *total = total.saturating_add(count.unwrap_or(0));
        }
    }
    sums.into_iter()
        .map(|((minute, app, model), [r, p, c, t])| (minute, app, model, r, p, c, t))
        .collect()
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

#[cfg(test)]
mod tests;
