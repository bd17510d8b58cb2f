//! The HTTP API: admin endpoints under `/api` (Bearer admin token), the filter's state feed,
//! and health checks. [`app`] builds the router from the shared [`AppState`].

mod apps;
mod auth;
mod error;
mod logs;
mod page;
mod state_feed;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;

pub use error::ApiError;

use crate::Db;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    state_token: String,
    admin_token_hash: String,
}

impl AppState {
    /// State over a database and the two secrets.
    pub fn new(db: Db, state_token: String, admin_token_hash: String) -> Self {
        Self { inner: Arc::new(Inner { db, state_token, admin_token_hash }) }
    }

    fn db(&self) -> &Db {
        &self.inner.db
    }
}

/// The whole HTTP API.
pub fn app(state: AppState) -> Router {
    let admin = Router::new()
        .route("/api/apps", get(apps::list).post(apps::create))
        .route("/api/apps/{id}", get(apps::get_one))
        .route("/api/logs", get(logs::list))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_admin));
    Router::new()
        .merge(admin)
        .route("/internal/state", get(state_feed::get_state))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { ApiError::NotFound("no such endpoint".to_owned()) })
        .with_state(state)
}

#[cfg(test)]
mod tests;
