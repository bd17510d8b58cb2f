//! `GET /api/usage`: prompt, completion and total tokens and request counts per app, model and
//! UTC day over a time range, with the range's totals.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::time_range::{format_ms, parse_range};
use super::{ApiError, AppState};
use crate::store::usage::{self, UsageRow};

const DAY_MS: i64 = 86_400_000;
/// Longest range one request may sum.
const MAX_DAYS: i64 = 366;

/// The range of `GET /api/usage`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Start (inclusive): RFC 3339 (`2026-01-01T00:00:00Z`) or Unix milliseconds. Default: 30
    /// days before `to`.
    from: Option<String>,
    /// End (exclusive): RFC 3339 or Unix milliseconds. Default: now. At most 366 days after
    /// `from`.
    to: Option<String>,
}

/// The summary.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    /// Start of the range (inclusive), RFC 3339 UTC.
    from: String,
    /// End of the range (exclusive), RFC 3339 UTC.
    to: String,
    /// One row per day, app and model with any request, by day, then app, then model.
    records: Vec<UsageRow>,
    /// The sums over every row.
    totals: UsageTotals,
}

/// Sums over the range.
#[derive(Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageTotals {
    /// Requests logged.
    requests: i64,
    /// Prompt tokens.
    prompt_tokens: i64,
    /// Completion tokens.
    completion_tokens: i64,
    /// Total tokens.
    total_tokens: i64,
}

/// Token and request counts by app, model and day (UTC).
#[utoipa::path(get, path = "/api/usage", tag = "logs", params(UsageQuery),
    responses((status = 200, body = UsageReport), (status = 400, body = ErrorBody)))]
pub async fn summary(
    State(state): State<AppState>,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<UsageReport>, ApiError> {
    let Query(q) = query.map_err(ApiError::from_query)?;
    let (from, to) = parse_range(q.from.as_deref(), q.to.as_deref())?;
    let to = to.unwrap_or_else(crate::store::now_ms);
    let from = from.unwrap_or(to.saturating_sub(30 * DAY_MS));
    if to <= from {
        return Err(ApiError::invalid("to", "must be after from"));
    }
    if to.saturating_sub(from) > MAX_DAYS * DAY_MS {
        return Err(ApiError::invalid(
            "from",
            format!("the range may span at most {MAX_DAYS} days"),
        ));
    }
    let records = usage::by_app_model_day(state.db(), from, to).await?;
    // Saturating: each row's sums may already be at i64::MAX (see `store::usage`).
    let totals = records.iter().fold(UsageTotals::default(), |t, r| UsageTotals {
        requests: t.requests.saturating_add(r.requests),
        prompt_tokens: t.prompt_tokens.saturating_add(r.prompt_tokens),
        completion_tokens: t.completion_tokens.saturating_add(r.completion_tokens),
        total_tokens: t.total_tokens.saturating_add(r.total_tokens),
    });
    Ok(Json(UsageReport { from: format_ms(from), to: format_ms(to), records, totals }))
}
