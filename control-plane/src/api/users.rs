//! `/api/users`: users who log in with e-mail and password and call the gateway with JWTs (and
//! their limits), and `/api/signing-keys/rotate`.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::app_input::{present, StatusChange};
use super::error::ErrorBody;
use super::limits_input::{self, LimitsSchema};
use super::page::{Page, PageQuery};
use super::{ApiError, AppState};
use crate::store::users::{self, User};
use crate::{jwt, password};

/// The admin routes of this module (the caller adds the admin check).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/users", get(list).post(create))
        .route("/api/users/{id}", get(get_one).put(update))
        .route("/api/users/{id}/status", patch(set_status))
        .route("/api/users/{id}/revoke-tokens", post(revoke_tokens))
        .route("/api/signing-keys/rotate", post(rotate_signing_key))
}

/// `POST /api/users` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Login e-mail (required), unique regardless of case.
    email: Option<String>,
    /// 8 to 256 characters (required); stored as an Argon2id hash.
    password: Option<String>,
    /// Limits and budgets of the user's requests (with any of its JWTs); absent or `null` for
    /// none.
    #[schema(value_type = Option<LimitsSchema>)]
    limits: Option<Value>,
}

/// `PUT /api/users/{id}` body. An absent field is left as it is.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// New limits (the whole set, replacing the old one); `null` for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<LimitsSchema>)]
    limits: Option<Option<Value>>,
}

/// `POST /api/users`: creates a user (password stored as an Argon2id hash).
#[utoipa::path(post, path = "/api/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = User), (status = 400, body = ErrorBody, description = "Invalid field, named in `error.param`"),
        (status = 409, body = ErrorBody, description = "The e-mail is taken (regardless of case)")))]
pub async fn create(
    State(state): State<AppState>,
    body: Result<Json<CreateUser>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let Json(body) = body.map_err(ApiError::from_json)?;
    let email = body.email.unwrap_or_default().trim().to_owned();
    let valid_email = email.len() <= 254
        && email.split_once('@').is_some_and(|(a, b)| !a.is_empty() && b.contains('.'));
    if !valid_email {
        return Err(ApiError::invalid("email", "must be an e-mail address"));
    }
    let password = body.password.unwrap_or_default();
    if !(8..=256).contains(&password.chars().count()) {
        return Err(ApiError::invalid("password", "must be 8 to 256 characters"));
    }
    let limits = limits_input::parse(body.limits)?;
    let hash = password::hash(password).await.map_err(|e| {
        tracing::error!(error = %e, "hashing a password failed");
        ApiError::invalid("password", "could not be hashed")
    })?;
    match users::create(state.db(), &email, &hash, &limits).await {
        Ok(user) => Ok((StatusCode::CREATED, Json(user))),
        Err(e) if users::is_duplicate(&e) => {
            Err(ApiError::Conflict(format!("a user with e-mail {email} exists")))
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /api/users?page=&size=`: users, newest first.
#[utoipa::path(get, path = "/api/users", tag = "users", params(PageQuery),
    responses((status = 200, body = Page<User>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<User>>, ApiError> {
    let (page, size) = q.resolve()?;
    let (records, total) = users::list(state.db(), (page - 1) * size, size).await?;
    Ok(Json(Page { records, total, page, size }))
}

/// `GET /api/users/{id}`: one user, with where its limits stand.
#[utoipa::path(get, path = "/api/users/{id}", tag = "users", params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = User), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<User>, ApiError> {
    let id = user_id(id)?;
    users::get(state.db(), id).await?.map(Json).ok_or_else(|| no_user(id))
}

/// `PUT /api/users/{id}` with `{"limits": {…} | null}`: replaces the user's limits; the filter
/// gets the change with its next state pull.
#[utoipa::path(put, path = "/api/users/{id}", tag = "users", request_body = UpdateUser,
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = User), (status = 400, body = ErrorBody, description = "Invalid field, named in `error.param`"),
        (status = 404, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<UpdateUser>, JsonRejection>,
) -> Result<Json<User>, ApiError> {
    let id = user_id(id)?;
    let Json(body) = body.map_err(ApiError::from_json)?;
    let Some(limits) = body.limits else {
        return users::get(state.db(), id).await?.map(Json).ok_or_else(|| no_user(id));
    };
    let limits = limits_input::parse(limits)?;
    let user = users::set_limits(state.db(), id, &limits).await?.ok_or_else(|| no_user(id))?;
    tracing::info!(user_id = id, "user limits changed");
    Ok(Json(user))
}

fn user_id(id: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    id.map(|Path(id)| id).map_err(|_| ApiError::invalid("id", "must be an integer"))
}

/// `PATCH /api/users/{id}/status` with `{"status":"enabled"|"disabled"}`.
#[utoipa::path(patch, path = "/api/users/{id}/status", tag = "users", request_body = StatusChange,
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = User), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_status(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    body: Result<Json<StatusChange>, JsonRejection>,
) -> Result<Json<User>, ApiError> {
    let Json(StatusChange { status }) = body.map_err(ApiError::from_json)?;
    users::set_status(state.db(), id, status).await?.map(Json).ok_or_else(|| no_user(id))
}

/// `POST /api/users/{id}/revoke-tokens`: every JWT issued to the user before stops working.
#[utoipa::path(post, path = "/api/users/{id}/revoke-tokens", tag = "users",
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = User, description = "`tokenVersion` is the new version"), (status = 404, body = ErrorBody)))]
pub async fn revoke_tokens(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<User>, ApiError> {
    users::revoke_tokens(state.db(), id).await?.map(Json).ok_or_else(|| no_user(id))
}

/// The new signing key's id.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Rotated {
    kid: String,
}

/// `POST /api/signing-keys/rotate`: new tokens are signed with a new key; the old one stays
/// published until the tokens it signed have expired.
#[utoipa::path(post, path = "/api/signing-keys/rotate", tag = "users",
    responses((status = 200, body = Rotated)))]
pub async fn rotate_signing_key(State(state): State<AppState>) -> Result<Json<Rotated>, ApiError> {
    let kid = jwt::rotate(state.db()).await.map_err(|e| match e {
        jwt::JwtError::Database(e) => ApiError::Database(e),
        other => ApiError::Internal(other.to_string()),
    })?;
    Ok(Json(Rotated { kid }))
}

fn no_user(id: i64) -> ApiError {
    ApiError::NotFound(format!("user {id} does not exist"))
}
