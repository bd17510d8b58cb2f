//! `/api/apps`: apps and their API keys, in the replaced Spring gateway's camelCase shape.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::page::{Page, PageQuery};
use super::{ApiError, AppState};
use crate::store::apps::{self, App, NewApp};

/// `POST /api/apps` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateApp {
    org_name: Option<String>,
    expire_time: Option<String>,
    remark: Option<String>,
}

/// An app together with its key's plaintext, returned once at creation.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApp {
    #[serde(flatten)]
    app: App,
    api_key: String,
}

impl CreateApp {
    fn validate(self) -> Result<NewApp, ApiError> {
        let org_name = self.org_name.unwrap_or_default().trim().to_owned();
        if org_name.is_empty() {
            return Err(ApiError::invalid("orgName", "is required"));
        }
        if org_name.chars().count() > 200 {
            return Err(ApiError::invalid("orgName", "must be at most 200 characters"));
        }
        let remark = self.remark.unwrap_or_default();
        if remark.chars().count() > 2000 {
            return Err(ApiError::invalid("remark", "must be at most 2000 characters"));
        }
        let expire = match self.expire_time.filter(|s| !s.trim().is_empty()) {
            Some(text) => {
                let at = OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|_| {
                    ApiError::invalid("expireTime", "must be an ISO-8601 date-time with offset, e.g. 2026-12-31T23:59:59.000+08:00")
                })?;
                Some((text.trim().to_owned(), at.unix_timestamp()))
            }
            None => None,
        };
        Ok(NewApp { org_name, remark, expire })
    }
}

/// `POST /api/apps`: creates an app and its first key.
pub async fn create(
    State(state): State<AppState>,
    body: Result<Json<CreateApp>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<CreatedApp>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    let new = body.validate()?;
    let (app, api_key) = apps::create(state.db(), &new).await?;
    tracing::info!(app_id = app.id, prefix = ?app.key_prefix, "app created");
    Ok((StatusCode::CREATED, Json(CreatedApp { app, api_key })))
}

/// `GET /api/apps/{id}`.
pub async fn get_one(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Json<App>, ApiError> {
    apps::get(state.db(), id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("app {id} does not exist")))
}

/// `GET /api/apps?page=&size=`.
pub async fn list(State(state): State<AppState>, Query(q): Query<PageQuery>) -> Result<Json<Page<App>>, ApiError> {
    let (page, size) = q.resolve()?;
    let (records, total) = apps::list(state.db(), (page - 1) * size, size).await?;
    Ok(Json(Page { records, total, page, size }))
}
