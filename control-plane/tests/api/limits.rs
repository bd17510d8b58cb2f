//! Limits and budgets through the API: set on apps and users (every field validated, named in
//! the 400), shown with `limitUsage`, fed to the filter (a user's change as a delta), leased
//! through `POST /internal/limits/lease` behind the state token, counted in `/metrics`; and
//! the access log's `limited` and `cutOff`.

use axum::http::StatusCode;
use control_plane::store::logs::{insert_batch, AccessLog};
use serde_json::json;
use vllm_gateway_filter::feed::limits::LEASE_PATH;
use vllm_gateway_filter::feed::{Feed, FeedDelta, EPOCH_PARAM, SINCE_PARAM};

use super::*;

const DAILY: &str = "Asia/Shanghai";

async fn created(state: &AppState, uri: &str, body: Value) -> Value {
    let reply = admin(state, "POST", uri, Some(body)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json
}

async fn user_with(state: &AppState, limits: Value) -> i64 {
    let body = json!({"email": "u@example.com", "password": "your_password", "limits": limits});
    created(state, "/api/users", body).await["id"].as_i64().unwrap()
}

async fn lease(state: &AppState, body: Value) -> Reply {
    call(state, "POST", LEASE_PATH, Some(FEED), Some(body)).await
}

#[tokio::test]
async fn apps_and_users_keep_the_whole_limit_set() {
    let (state, _dir) = state().await;
    let limits = json!({"requestsPerMinute": 60, "tokensPerMinute": 10_000, "concurrentRequests": 4, "tokensPerDay": 100_000,
        "tokensPerMonth": 1_000_000, "timeZone": DAILY, "models": {"big": {"tokensPerDay": 500, "concurrentRequests": 1}}});
    let app = created(&state, "/api/apps", json!({"orgName": "o", "limits": limits})).await;
    assert_eq!(app["limits"], limits);
    let id = user_with(&state, limits.clone()).await;
    let user = admin(&state, "GET", &format!("/api/users/{id}"), None).await;
    assert_eq!(user.status, StatusCode::OK, "{}", user.text);
    assert_eq!(user.json["limits"], limits);
    let cleared =
        admin(&state, "PUT", &format!("/api/users/{id}"), Some(json!({"limits": null}))).await;
    assert_eq!(
        (cleared.json["limits"].clone(), cleared.json["limitUsage"].clone()),
        (Value::Null, json!([]))
    );
    let untouched = admin(&state, "PUT", &format!("/api/users/{id}"), Some(json!({}))).await;
    assert_eq!(untouched.status, StatusCode::OK);
    assert_not_found(&admin(&state, "GET", "/api/users/999", None).await);
    assert_not_found(&admin(&state, "PUT", "/api/users/999", Some(json!({"limits": null}))).await);
    assert_invalid(&admin(&state, "GET", "/api/users/x", None).await, "id");
}

#[tokio::test]
async fn bad_limits_are_refused_naming_the_field_for_apps_and_users() {
    let (state, _dir) = state().await;
    let id = user_with(&state, Value::Null).await;
    for (limits, field) in [
        (json!({"tokensPerDay": 0}), "limits.tokensPerDay"),
        (json!({"tokensPerMonth": 1_000_000_000_000_001i64}), "limits.tokensPerMonth"),
        (json!({"concurrentRequests": 2.5}), "limits.concurrentRequests"),
        (json!({"timeZone": "Asia/Atlantis"}), "limits.timeZone"),
        (json!({"tokensPerHour": 1}), "limits.tokensPerHour"),
        (
            json!({"models": {"m": {"concurrentRequests": -1}}}),
            "limits.models.m.concurrentRequests",
        ),
        (json!({"models": {"m": {"models": {}}}}), "limits.models.m.models"),
        (json!({"models": "m"}), "limits.models"),
        (json!([1]), "limits"),
    ] {
        assert_invalid(
            &admin(&state, "POST", "/api/apps", Some(json!({"orgName": "o", "limits": limits})))
                .await,
            field,
        );
        assert_invalid(
            &admin(&state, "PUT", &format!("/api/users/{id}"), Some(json!({"limits": limits})))
                .await,
            field,
        );
        let body = json!({"email": "v@example.com", "password": "your_password", "limits": limits});
        assert_invalid(&admin(&state, "POST", "/api/users", Some(body)).await, field);
    }
    assert_invalid(
        &admin(&state, "PUT", &format!("/api/users/{id}"), Some(json!({"email": "x@example.com"})))
            .await,
        "body",
    );
    let apps: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM apps").fetch_one(state.db()).await.unwrap();
    assert_eq!(apps, 0);
}

#[tokio::test]
async fn limit_usage_shows_every_limit_with_its_window_and_what_the_ledger_counts() {
    let (state, _dir) = state().await;
    let limits = json!({"tokensPerDay": 1000, "timeZone": DAILY, "models": {"m": {"concurrentRequests": 2, "requestsPerMinute": 5}}});
    let app = created(&state, "/api/apps", json!({"orgName": "o", "limits": limits})).await;
    let id = app["id"].as_i64().unwrap();
    let asks = json!({"instance": "envoy-1", "items": [
        {"subject": {"app": id}, "kind": "tokensPerDay", "take": 300},
        {"subject": {"app": id}, "kind": "tokensPerDay", "charge": 50},
        {"subject": {"app": id}, "model": "m", "kind": "concurrentRequests", "take": 1},
    ]});
    let leased = lease(&state, asks).await;
    assert_eq!(leased.status, StatusCode::OK, "{}", leased.text);
    assert_eq!(leased.json["items"][1]["used"], 350);
    let usage =
        admin(&state, "GET", &format!("/api/apps/{id}"), None).await.json["limitUsage"].clone();
    let usage = usage.as_array().unwrap();
    assert_eq!(usage.len(), 3, "{usage:?}");
    let day = &usage[0];
    assert_eq!((day["kind"].as_str(), day["model"].clone()), (Some("tokens_per_day"), Value::Null));
    assert_eq!(
        (day["limit"].as_i64(), day["used"].as_i64(), day["remaining"].as_i64()),
        (Some(1000), Some(350), Some(650))
    );
    let start = day["windowStart"].as_str().unwrap();
    assert!(start.ends_with("T00:00:00+08:00"), "a Shanghai day: {start}");
    let window_ms = leased.json["items"][0]["window"].as_i64().unwrap() * 1000;
    assert_eq!(time_ms(start), window_ms);
    assert_eq!(
        time_ms(day["windowEnd"].as_str().unwrap()),
        leased.json["items"][0]["resetsAtMs"].as_i64().unwrap()
    );
    let slots = usage.iter().find(|u| u["kind"] == "concurrent_requests").unwrap();
    assert_eq!(
        (slots["model"].as_str(), slots["used"].as_i64(), slots["windowStart"].clone()),
        (Some("m"), Some(1), Value::Null)
    );
    let rpm = usage.iter().find(|u| u["kind"] == "requests_per_minute").unwrap();
    assert!(rpm["windowStart"].as_str().unwrap().ends_with('Z'), "minutes are shown in UTC");
    let listed = admin(&state, "GET", "/api/apps", None).await;
    assert_eq!(listed.json["records"][0]["limitUsage"][0]["used"], 350, "the list shows it too");
}

fn time_ms(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp_millis()
}

#[tokio::test]
async fn a_users_limits_reach_the_feed_and_a_change_is_a_delta_carrying_the_user() {
    let (state, _dir) = state().await;
    let id = user_with(&state, json!({"requestsPerMinute": 5})).await;
    let feed: Feed =
        serde_json::from_str(&call(&state, "GET", "/internal/state", Some(FEED), None).await.text)
            .unwrap();
    assert_eq!(feed.users[0].limits.as_ref().and_then(|l| l.all.requests_per_minute), Some(5));
    let change =
        json!({"limits": {"tokensPerDay": 100, "models": {"m": {"concurrentRequests": 1}}}});
    assert_eq!(
        admin(&state, "PUT", &format!("/api/users/{id}"), Some(change)).await.status,
        StatusCode::OK
    );
    let query =
        format!("/internal/state?{SINCE_PARAM}={}&{EPOCH_PARAM}={}", feed.version, feed.epoch);
    let reply = call(&state, "GET", &query, Some(FEED), None).await;
    let delta: FeedDelta = serde_json::from_str(&reply.text).unwrap();
    assert_eq!(delta.users.len(), 1, "{}", reply.text);
    let limits = delta.users[0].limits.clone().unwrap();
    assert_eq!((limits.all.tokens_per_day, limits.all.requests_per_minute), (Some(100), None));
    assert_eq!(limits.models["m"].concurrent_requests, Some(1));
    let lookup =
        call(&state, "GET", &format!("/internal/lookup?userId={id}"), Some(FEED), None).await;
    assert_eq!(lookup.json["users"][0]["limits"]["tokensPerDay"], 100);
}

#[tokio::test]
async fn the_lease_call_needs_the_state_token_and_a_sane_body() {
    let (state, _dir) = state().await;
    let body = json!({"instance": "e", "items": []});
    assert_eq!(
        call(&state, "POST", LEASE_PATH, Some(ADMIN), Some(body.clone())).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&state, "POST", LEASE_PATH, None, Some(body.clone())).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(lease(&state, body).await.json, json!({"items": []}));
    let item = json!({"subject": {"user": 1}, "kind": "tokensPerDay", "take": 1});
    for (body, field) in [
        (json!({"instance": "", "items": []}), "instance"),
        (json!({"instance": "e".repeat(129), "items": []}), "instance"),
        (json!({"instance": "e", "items": vec![item.clone(); 65]}), "items"),
        (
            json!({"instance": "e", "items": [{"subject": {"user": 1}, "kind": "tokensPerDay", "take": 1_000_000_000_000_001u64}]}),
            "items[0].take",
        ),
        (
            json!({"instance": "e", "items": [item.clone(), {"subject": {"app": 1}, "model": "", "kind": "tokensPerDay"}]}),
            "items[1].model",
        ),
        (
            json!({"instance": "e", "items": [{"subject": {"app": 1}, "kind": "tokensPerHour"}]}),
            "body",
        ),
        (
            json!({"instance": "e", "items": [{"subject": {"app": 1}, "kind": "tokensPerDay", "take": -1}]}),
            "body",
        ),
    ] {
        let reply = lease(&state, body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.text);
        assert_eq!(reply.json["error"]["type"], "invalid_request_error");
        if field != "body" {
            assert_eq!(reply.json["error"]["param"], field, "{body}: {}", reply.text);
        }
    }
}

#[tokio::test]
async fn leases_are_counted_in_the_metrics() {
    let (state, _dir) = state().await;
    let id = user_with(&state, json!({"tokensPerMinute": 10})).await;
    let ask = json!({"instance": "e", "items": [{"subject": {"user": id}, "kind": "tokensPerMinute", "take": 25}]});
    let reply = lease(&state, ask).await;
    assert_eq!(
        (reply.json["items"][0]["granted"].as_u64(), reply.json["items"][0]["limit"].as_u64()),
        (Some(10), Some(10))
    );
    let metrics = call(&state, "GET", "/metrics", None, None).await.text;
    for line in [
        "gateway_limit_leases_total 1",
        "gateway_limit_units_granted_total{kind=\"tokens_per_minute\"} 10",
        "gateway_limit_asks_short_total{kind=\"tokens_per_minute\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line} in {metrics}");
    }
}

#[tokio::test]
async fn logs_show_and_filter_the_limit_that_refused_or_cut_off_a_request() {
    let (state, _dir) = state().await;
    let row = |id: &str, limited: Option<&str>, cut_off: bool| AccessLog {
        request_id: id.into(),
        started_at_ms: 1_769_817_600_000,
        limited: limited.map(str::to_owned),
        cut_off: Some(cut_off),
        ..AccessLog::default()
    };
    let rows = [
        row("a", None, false),
        row("b", Some("tokens_per_day"), false),
        row("c", Some("tokens_per_minute"), true),
    ];
    insert_batch(state.db(), &rows).await.unwrap();
    let all = admin(&state, "GET", "/api/logs", None).await;
    let c = all.json["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["requestId"] == "c")
        .unwrap()
        .clone();
    assert_eq!(
        (c["limited"].as_str(), c["cutOff"].as_bool()),
        (Some("tokens_per_minute"), Some(true))
    );
    let daily = admin(&state, "GET", "/api/logs?limited=tokens_per_day", None).await;
    assert_eq!(daily.json["total"], 1);
    assert_eq!(daily.json["records"][0]["requestId"], "b");
}
