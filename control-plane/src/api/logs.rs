//! `GET /api/logs`: access-log rows, newest first, paged, filtered by app, user, model, status,
//! stream, the client's own request id, the limit that refused or cut it off, and time range.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ErrorBody;
use super::page::{Page, PageQuery};
use super::time_range::parse_range;
use super::{ApiError, AppState};
use crate::store::logs::{self, AccessLog, LogFilter};

/// Filters of `GET /api/logs`; each one given narrows the rows.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Requests made with this app's key.
    app_id: Option<i64>,
    /// Requests made with this user's token.
    user_id: Option<i64>,
    /// Requests for this model (exact name).
    model: Option<String>,
    /// Requests answered with this HTTP status (e.g. 200, 429).
    status: Option<i64>,
    /// Only streamed (`true`) or only non-streamed (`false`) requests.
    stream: Option<bool>,
    /// Requests the client sent with this `x-client-request-id` (exact; several rows may
    /// share one: the client chooses it).
    client_request_id: Option<String>,
    /// Requests this limit refused or cut off: `requests_per_minute`, `tokens_per_minute`,
    /// `concurrent_requests`, `tokens_per_day` or `tokens_per_month`.
    limited: Option<String>,
    /// Started at or after: RFC 3339 (`2026-01-31T00:00:00Z`, any offset) or Unix milliseconds.
    from: Option<String>,
    /// Started before (exclusive): RFC 3339 or Unix milliseconds.
    to: Option<String>,
}

impl LogQuery {
    fn into_filter(self) -> Result<LogFilter, ApiError> {
        let (from_ms, to_ms) = parse_range(self.from.as_deref(), self.to.as_deref())?;
        Ok(LogFilter {
            app_id: self.app_id,
            user_id: self.user_id,
            model: self.model.filter(|m| !m.is_empty()),
            status: self.status,
            stream: self.stream,
            client_request_id: self.client_request_id.filter(|c| !c.is_empty()),
            limited: self.limited.filter(|l| !l.is_empty()),
            from_ms,
            to_ms,
        })
    }
}

/// Access-log rows, newest first.
#[utoipa::path(get, path = "/api/logs", tag = "logs", params(PageQuery, LogQuery),
    responses((status = 200, body = Page<AccessLog>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    paging: Result<Query<PageQuery>, QueryRejection>,
    filter: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Json<Page<AccessLog>>, ApiError> {
    let (page, size, offset) = paging.map_err(ApiError::from_query)?.resolve_offset()?;
    let filter = filter.map_err(ApiError::from_query)?.0.into_filter()?;
    let (records, total) = logs::page(state.db(), &filter, offset, size).await?;
    Ok(Json(Page { records, total, page, size }))
}
