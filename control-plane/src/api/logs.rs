//! `GET /api/logs`: access-log rows, newest first, paged.

use axum::extract::{Query, State};
use axum::Json;

use super::page::{Page, PageQuery};
use super::{ApiError, AppState};
use crate::store::logs::{self, AccessLog};

/// `GET /api/logs?page=&size=`.
pub async fn list(State(state): State<AppState>, Query(q): Query<PageQuery>) -> Result<Json<Page<AccessLog>>, ApiError> {
    let (page, size) = q.resolve()?;
    let (records, total) = logs::page(state.db(), (page - 1) * size, size).await?;
    Ok(Json(Page { records, total, page, size }))
}
