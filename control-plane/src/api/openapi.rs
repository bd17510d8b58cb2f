//! The OpenAPI document of the HTTP API, generated from the handlers' `#[utoipa::path]`
//! attributes and served at `GET /api/openapi.json`. A test checks that every route of the
//! router is in it, so the document cannot drift from what is served.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{app_input, apps, error, health, limits_input, login, logs, reconcile, usage, users};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "vllm-gateway control plane",
        description = "Admin API (apps and keys, users, limits, access logs, usage), operations endpoints, \
            and the filter's state feed and limits' lease call. JSON fields are camelCase. Times in query strings (`from`, `to`) are \
            RFC 3339 with an offset or `Z`, or Unix milliseconds. Every `/api/*` route needs \
            `Authorization: Bearer <admin token>`."
    ),
    paths(
        apps::create, apps::list, apps::get_one, apps::update, apps::set_status, apps::delete, apps::rotate_key,
        logs::list, usage::summary, reconcile::reconcile, document,
        health::healthz, health::readyz, health::metrics, state_feed, lookup, lease,
        users::create, users::list, users::get_one, users::update, users::set_status, users::revoke_tokens, users::rotate_signing_key,
        login::login,
    ),
    components(schemas(error::ErrorBody, app_input::CreateApp, app_input::UpdateApp, app_input::StatusChange,
        users::CreateUser, users::UpdateUser, limits_input::LimitsSchema, crate::ledger::usage::LimitUsage)),
    modifiers(&Security),
    security(("admin_token" = [])),
    tags(
        (name = "apps", description = "Apps and their API keys (`sk-live-…`, shown once)"),
        (name = "logs", description = "Access logs, usage summaries and reconciliation with vLLM's own counters"),
        (name = "users", description = "Users who log in at /user/user_login and call with JWTs"),
        (name = "operations", description = "Health, readiness and Prometheus metrics; no token"),
        (name = "internal", description = "For the Envoy filter only"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |what: &str| {
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(what)).build(),
            )
        };
        components.add_security_scheme("admin_token", bearer("The admin token"));
        components.add_security_scheme("feed_token", bearer("The state feed's shared secret"));
    }
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The whole state the filter pulls (the contract's `Feed`): its `epoch` and `version`, live
/// key hashes with app id, key id, status, expiry, models and limits; users' status, token
/// version and limits; the JWT keys. `If-None-Match` with the last `ETag` gets a 304 when nothing changed;
/// with `wait_ms` as well, the 304 waits until something changes (then 200) or `wait_ms`
/// passes. With `since` and `epoch` (the `version` and `epoch` the puller holds), the 200 is a
/// delta (the contract's `FeedDelta`, marked by the `x-vllm-gateway-state-delta` header, whose
/// value is `since`) when the control plane still logs every change after `since`; otherwise
/// (another epoch, a version ahead, changes pruned: the newest 100,000 are kept) the whole
/// state. (The handler is `state_feed::get_state`; this entry documents it.)
#[utoipa::path(get, path = "/internal/state", tag = "internal", security(("feed_token" = [])),
    params(
        ("If-None-Match" = Option<String>, Header, description = "The last ETag"),
        ("wait_ms" = Option<u64>, Query, description = "With the current ETag in `If-None-Match`: hold the \
            request until the state changes or this many milliseconds pass (at most 30000; 0 or absent: \
            answer at once)"),
        ("since" = Option<i64>, Query, description = "The `version` of the state the puller holds: with \
            `epoch`, ask for a delta from it"),
        ("epoch" = Option<String>, Query, description = "The `epoch` of that state (a delta is only \
            answered within one epoch)")),
    responses(
        (status = 200, description = "The whole state: `{\"epoch\",\"version\",\"keys\":[{\"hash\",\"appId\",\"keyId\",\"status\",\
            \"expiresAt\",\"models\",\"limits\"}],\"users\":[{\"id\",\"status\",\"tokenVersion\",\"limits\"}],\
            \"jwtKeys\":[{\"kid\",\"alg\",\"publicKeyHex\"}]}`; or, with the `x-vllm-gateway-state-delta: <since>` \
            header, a delta: `{\"epoch\",\"since\",\"version\",\"keys\":[…changed live keys, every live key of a \
            changed app],\"removedKeys\":[hashes no longer live],\"users\":[…changed users],\"removedUsers\":[ids],\
            \"jwtKeys\":[…the whole set]}`. `ETag` header (the same for a delta and the whole state of a version)",
            content_type = "application/json",
            headers(("x-vllm-gateway-state-delta" = String, description = "Present on a delta only: its `since`"))),
        (status = 304, description = "Unchanged (after `wait_ms`, when given)"),
        (status = 400, body = error::ErrorBody, description = "`wait_ms` or `since` is not a number"),
        (status = 401, body = error::ErrorBody)))]
#[allow(dead_code)]
fn state_feed() {}

/// The state of one credential, for a filter that does not know it yet: the live key with
/// this hash (whatever its app's status or expiry; absent when none), the user with this id
/// (whatever its status), and the current JWT keys, in the `/internal/state` shape. `ETag`:
/// the state version of the answer. (The handler is `lookup::lookup`.)
#[utoipa::path(get, path = "/internal/lookup", tag = "internal", security(("feed_token" = [])),
    params(
        ("keyHash" = Option<String>, Query, description = "Hex SHA-256 of an API key (64 digits)"),
        ("userId" = Option<i64>, Query, description = "A user's id (a JWT's `sub`)")),
    responses(
        (status = 200, description = "`{\"keys\":[…0 or 1],\"users\":[…0 or 1],\"jwtKeys\":[…]}`; `ETag` header",
            content_type = "application/json"),
        (status = 400, body = error::ErrorBody, description = "Neither parameter, or a malformed one (named in `error.param`)"),
        (status = 401, body = error::ErrorBody)))]
#[allow(dead_code)]
fn lookup() {}

/// An Envoy instance takes shares of its callers' limits from the control plane's ledger, gives
/// back what it did not spend and charges what it spent beyond its grants; every ask of one call
/// is answered in one transaction, so the Envoys together are never granted more than a limit.
/// Per subject, model scope, limit and window the ledger counts `used` (units leased out plus
/// units charged, minus units given back): `take` is granted up to `limit - used`, `charge` is
/// added whatever the limit, `giveBack` is subtracted (never below 0) from the window `window`
/// names (the current one when absent). A subject without the limit (or unknown) is granted
/// all of `take`, with `limit: null`. `concurrentRequests` counts slots held per `instance`,
/// which expire 60 s after the instance's last ask naming them (`take: 0` renews). Windows:
/// calendar minutes (UTC); calendar days and months of the limit set's `timeZone`. (The handler
/// is `lease::lease`.)
#[utoipa::path(post, path = "/internal/limits/lease", tag = "internal", security(("feed_token" = [])),
    request_body(content_type = "application/json", description = "`{\"instance\": \"<Envoy instance, 1 to 128 bytes>\", \
        \"items\": [{\"subject\": {\"app\": 3} | {\"user\": 7}, \"model\": \"<optional: a per-model limit>\", \
        \"kind\": \"requestsPerMinute\" | \"tokensPerMinute\" | \"concurrentRequests\" | \"tokensPerDay\" | \"tokensPerMonth\", \
        \"window\": <optional window start, Unix seconds>, \"charge\": 0, \"giveBack\": 0, \"take\": 0}]}`: \
        at most 64 items; counts at most 10^15"),
    responses(
        (status = 200, description = "One grant per item, in order: `{\"items\": [{\"granted\", \"limit\" (null: not limited), \
            \"used\" (after this call, over every Envoy), \"window\" (start, Unix seconds; 0 for concurrency), \
            \"resetsAtMs\" (the window's end, Unix ms; 0 for concurrency)}]}`", content_type = "application/json"),
        (status = 400, body = error::ErrorBody, description = "A malformed body; the field is named in `error.param`"),
        (status = 401, body = error::ErrorBody)))]
#[allow(dead_code)]
fn lease() {}
