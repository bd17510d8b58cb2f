//! `/api/apps`: apps and their API keys, in the replaced Spring gateway's camelCase shape. The
//! plaintext key is in the reply of creation and rotation only.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use vllm_gateway_filter::feed::Status;

use super::app_input::{CreateApp, StatusChange, UpdateApp};
use super::error::ErrorBody;
use super::page::{Page, PageQuery};
use super::{ApiError, AppState};
use crate::store::apps::{self, App, AppFilter};

/// An app together with its key's plaintext, returned once (creation, rotation).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppWithKey {
    #[serde(flatten)]
    app: App,
    /// The API key (`sk-live-…`). Shown this once; only its hash is kept.
    api_key: String,
}

/// Filters of `GET /api/apps`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AppQuery {
    /// Part of the organisation name (case-insensitive for ASCII letters).
    org_name: Option<String>,
    /// `enabled` or `disabled`.
    status: Option<String>,
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("app {id} does not exist"))
}

fn app_id(id: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    id.map(|Path(id)| id).map_err(|_| ApiError::invalid("id", "must be an integer"))
}

fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b).map_err(ApiError::from_json)
}

/// Creates an app and its first key.
#[utoipa::path(post, path = "/api/apps", tag = "apps", request_body = CreateApp,
    responses((status = 201, body = AppWithKey, description = "Created; `apiKey` is shown this once"),
        (status = 400, body = ErrorBody, description = "Invalid field, named in `error.param`")))]
pub async fn create(
    State(state): State<AppState>,
    new: Result<Json<CreateApp>, JsonRejection>,
) -> Result<(StatusCode, Json<AppWithKey>), ApiError> {
    let new = body(new)?.validate()?;
    let (app, api_key) = apps::create(state.db(), &new).await?;
    tracing::info!(app_id = app.id, prefix = ?app.key_prefix, "app created");
    Ok((StatusCode::CREATED, Json(AppWithKey { app, api_key })))
}

/// One app.
#[utoipa::path(get, path = "/api/apps/{id}", tag = "apps", params(("id" = i64, Path, description = "App id")),
    responses((status = 200, body = App), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<App>, ApiError> {
    let id = app_id(id)?;
    apps::get(state.db(), id).await?.map(Json).ok_or_else(|| not_found(id))
}

/// Apps, newest first, paged and filtered.
#[utoipa::path(get, path = "/api/apps", tag = "apps", params(PageQuery, AppQuery),
    responses((status = 200, body = Page<App>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    paging: Result<Query<PageQuery>, QueryRejection>,
    filter: Result<Query<AppQuery>, QueryRejection>,
) -> Result<Json<Page<App>>, ApiError> {
    let (page, size, offset) = paging.map_err(ApiError::from_query)?.resolve_offset()?;
    let Query(q) = filter.map_err(ApiError::from_query)?;
    let status = q.status.filter(|s| !s.is_empty()).map(|s| s.parse::<Status>()).transpose();
    let status = status.map_err(|why| ApiError::invalid("status", why))?;
    let filter = AppFilter { org_name: q.org_name.filter(|s| !s.is_empty()), status };
    let (records, total) = apps::list(state.db(), &filter, offset, size).await?;
    Ok(Json(Page { records, total, page, size }))
}

/// Changes an app's organisation, expiry, remark, models or limits.
#[utoipa::path(put, path = "/api/apps/{id}", tag = "apps", params(("id" = i64, Path, description = "App id")),
    request_body = UpdateApp,
    responses((status = 200, body = App), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    changes: Result<Json<UpdateApp>, JsonRejection>,
) -> Result<Json<App>, ApiError> {
    let id = app_id(id)?;
    let changes = body(changes)?.validate()?;
    let app = apps::update(state.db(), id, &changes).await?.ok_or_else(|| not_found(id))?;
    tracing::info!(app_id = id, "app updated");
    Ok(Json(app))
}

/// Enables or disables an app (a disabled app's key is refused with 403).
#[utoipa::path(patch, path = "/api/apps/{id}/status", tag = "apps",
    params(("id" = i64, Path, description = "App id")), request_body = StatusChange,
    responses((status = 200, body = App), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_status(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    change: Result<Json<StatusChange>, JsonRejection>,
) -> Result<Json<App>, ApiError> {
    let id = app_id(id)?;
    let status = body(change)?.status;
    let app = apps::set_status(state.db(), id, status).await?.ok_or_else(|| not_found(id))?;
    tracing::info!(app_id = id, ?status, "app status changed");
    Ok(Json(app))
}

/// Deletes an app; its key stops working (it leaves the state feed). Its logs stay.
#[utoipa::path(delete, path = "/api/apps/{id}", tag = "apps", params(("id" = i64, Path, description = "App id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = app_id(id)?;
    if !apps::delete(state.db(), id).await? {
        return Err(not_found(id));
    }
    tracing::info!(app_id = id, "app deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Issues a new key and retires the old one (it leaves the state feed).
#[utoipa::path(post, path = "/api/apps/{id}/key", tag = "apps", params(("id" = i64, Path, description = "App id")),
    responses((status = 201, body = AppWithKey, description = "The new `apiKey`, shown this once"),
        (status = 404, body = ErrorBody)))]
pub async fn rotate_key(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<(StatusCode, Json<AppWithKey>), ApiError> {
    let id = app_id(id)?;
    let (app, api_key) = apps::rotate_key(state.db(), id).await?.ok_or_else(|| not_found(id))?;
    tracing::info!(app_id = id, prefix = ?app.key_prefix, "app key rotated");
    Ok((StatusCode::CREATED, Json(AppWithKey { app, api_key })))
}
