//! The HTTP API: admin endpoints under `/api` (Bearer admin token), the filter's state feed
//! (the whole state or a delta, long-polled, and single-credential lookups) and its limits'
//! lease call (Bearer state token), and the
//! operations endpoints (health, readiness, metrics). [`app`] builds the router from the
//! shared [`AppState`]; [`public_app`] and [`admin_app`] split it for an admin API on its own
//! listener; [`openapi::ApiDoc`] documents every route of it.

mod app_input;
mod apps;
mod auth;
mod error;
mod health;
mod lease;
mod limits_input;
mod login;
mod logs;
mod long_poll;
mod lookup;
pub mod openapi;
mod page;
mod reconcile;
mod state_delta;
mod state_feed;
mod state_version;
mod time_range;
mod usage;
mod users;

use std::sync::Arc;

use axum::routing::{get, patch, post};
use axum::Router;
use vllm_gateway_filter::feed::limits::LEASE_PATH;
use vllm_gateway_filter::feed::{LOOKUP_PATH, STATE_PATH};

pub use error::ApiError;
pub use limits_input::LimitsSchema;

use crate::client_addr::TrustedProxies;
use crate::login_throttle::LoginThrottle;
use crate::metrics::Metrics;
use crate::password::PasswordChecks;
use crate::reconcile::{Scraper, Upstream};
use crate::Db;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    db: Db,
    state_token: String,
    admin_token_hash: String,
    metrics: Arc<Metrics>,
    jwt_lifetime_secs: i64,
    feed_cache: state_feed::FeedCache,
    delta_cache: state_delta::DeltaCache,
    long_poll: Arc<long_poll::LongPoll>,
    scraper: Arc<Scraper>,
    login_throttle: Arc<LoginThrottle>,
    password_checks: Arc<PasswordChecks>,
    trusted_proxies: Arc<TrustedProxies>,
}

/// How long a JWT from `/user/user_login` is valid by default (24 hours).
pub const DEFAULT_JWT_LIFETIME_SECS: i64 = 24 * 3600;

impl AppState {
    /// State over a database and the two secrets, with fresh metrics.
    pub fn new(db: Db, state_token: String, admin_token_hash: String) -> Self {
        let metrics = Arc::new(Metrics::default());
        let jwt_lifetime_secs = DEFAULT_JWT_LIFETIME_SECS;
        let feed_cache = state_feed::FeedCache::default();
        let delta_cache = state_delta::DeltaCache::default();
        let long_poll = Arc::new(long_poll::LongPoll::new(metrics.clone()));
        let scraper = Arc::new(Scraper::default());
        let inner = Inner {
            db,
            state_token,
            admin_token_hash,
            metrics,
            jwt_lifetime_secs,
            feed_cache,
            delta_cache,
            long_poll,
            scraper,
            login_throttle: Arc::default(),
            password_checks: Arc::default(),
            trusted_proxies: Arc::default(),
        };
        Self { inner: Arc::new(inner) }
    }

    /// The same state reconciling with these vLLM upstreams, scraped every `interval` (zero:
    /// only when `GET /api/usage/reconcile` asks about now).
    pub fn with_upstreams(
        mut self,
        upstreams: Vec<Upstream>,
        interval: std::time::Duration,
    ) -> Self {
        Arc::make_mut(&mut self.inner).scraper = Arc::new(Scraper::new(upstreams, interval));
        self
    }

    /// The vLLM upstreams and their scrapes.
    pub fn scraper(&self) -> &Arc<Scraper> {
        &self.inner.scraper
    }

    /// The same state believing `x-forwarded-for` from these proxies only (default: loopback).
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        Arc::make_mut(&mut self.inner).trusted_proxies = Arc::new(proxies);
        self
    }

    /// The same state with another bound on password checks.
    pub fn with_password_checks(mut self, checks: PasswordChecks) -> Self {
        Arc::make_mut(&mut self.inner).password_checks = Arc::new(checks);
        self
    }

    /// The bound on concurrent password checks (logins).
    pub fn password_checks(&self) -> &Arc<PasswordChecks> {
        &self.inner.password_checks
    }

    /// The same state with another JWT lifetime.
    pub fn with_jwt_lifetime(mut self, secs: i64) -> Self {
        Arc::make_mut(&mut self.inner).jwt_lifetime_secs = secs;
        self
    }

    /// How long issued JWTs are valid, in seconds.
    pub fn jwt_lifetime_secs(&self) -> i64 {
        self.inner.jwt_lifetime_secs
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The state feed's shared secret, which the access-log stream must carry too.
    pub(crate) fn state_token(&self) -> &str {
        &self.inner.state_token
    }

    /// The process's metrics (shared with the access-log writer and retention).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Answers every held long poll of the state feed now (304), and every later one at once:
    /// the first step of a graceful shutdown, so that the HTTP server can drain.
    pub fn stop_long_polls(&self) {
        self.inner.long_poll.stop();
    }
}

/// The whole HTTP API on one listener.
pub fn app(state: AppState) -> Router {
    finish(admin_routes(&state).merge(public_routes()), state)
}

/// Everything but the admin API: login, the filter's state feed and lookups, operations;
/// `/api/*` is a 404 here (served by [`admin_app`] on its own listener).
pub fn public_app(state: AppState) -> Router {
    finish(public_routes(), state)
}

/// The admin API (`/api/*`) alone, for its own listener.
pub fn admin_app(state: AppState) -> Router {
    finish(admin_routes(&state), state)
}

/// `/api/*`, behind the admin token.
fn admin_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/api/apps", get(apps::list).post(apps::create))
        .route("/api/apps/{id}", get(apps::get_one).put(apps::update).delete(apps::delete))
        .route("/api/apps/{id}/status", patch(apps::set_status))
        .route("/api/apps/{id}/key", post(apps::rotate_key))
        .route("/api/logs", get(logs::list))
        .route("/api/usage", get(usage::summary))
        .route("/api/usage/reconcile", get(reconcile::reconcile))
        .route("/api/openapi.json", get(openapi::document))
        .merge(users::routes())
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_admin))
}

/// Login, the state feed, lookups, the lease call and the operations endpoints.
fn public_routes() -> Router<AppState> {
    Router::new()
        .merge(login::routes())
        .route(STATE_PATH, get(state_feed::get_state))
        .route(LOOKUP_PATH, get(lookup::lookup))
        .route(LEASE_PATH, post(lease::lease))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
}

/// The 404 for every other path, request counting, and the state.
fn finish(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(|| async { ApiError::NotFound("no such endpoint".to_owned()) })
        .layer(axum::middleware::from_fn_with_state(state.clone(), health::count_requests))
        .with_state(state)
}
