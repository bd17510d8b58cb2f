//! Deltas of `/internal/state`: the whole state names its epoch and version; a pull that sends
//! them back (`since`, `epoch`) gets what changed since, which, applied to the older state,
//! gives the newer one — for every kind of change. Another epoch, a version ahead or changes
//! pruned from the log get the whole state; a held poll wakes with a delta; no delta builds the
//! whole state.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use vllm_gateway_filter::feed::{
    hash_key, Feed, FeedDelta, Status, DELTA_HEADER, EPOCH_PARAM, SINCE_PARAM,
};

use super::*;

/// A pull of `/internal/state` with this query.
async fn pull(state: &AppState, query: &str) -> Reply {
    let reply = call(state, "GET", &format!("/internal/state{query}"), Some(FEED), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.text);
    assert_eq!(reply.headers["content-type"], "application/json");
    reply
}

/// The whole state (no delta asked for).
async fn whole(state: &AppState) -> Feed {
    whole_with_etag(state).await.0
}

async fn whole_with_etag(state: &AppState) -> (Feed, String) {
    let reply = pull(state, "").await;
    assert!(!reply.headers.contains_key(DELTA_HEADER));
    (serde_json::from_str(&reply.text).unwrap(), reply.headers["etag"].to_str().unwrap().to_owned())
}

/// The query asking for a delta from `feed`.
fn since(feed: &Feed) -> String {
    format!("?{SINCE_PARAM}={}&{EPOCH_PARAM}={}", feed.version, feed.epoch)
}

/// The delta from `feed`, checked: marked by the header, its ETag naming its version.
async fn delta_from(state: &AppState, feed: &Feed) -> (FeedDelta, String) {
    let reply = pull(state, &since(feed)).await;
    assert_eq!(reply.headers[DELTA_HEADER], feed.version.to_string().as_str(), "{}", reply.text);
    let delta: FeedDelta = serde_json::from_str(&reply.text).unwrap();
    assert_eq!((delta.epoch.as_str(), delta.since), (feed.epoch.as_str(), feed.version));
    let etag = reply.headers["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with(&format!("\"v{}-", delta.version)), "{etag} for {delta:?}");
    (delta, etag)
}

/// `delta` applied to `feed`, as a puller does: keys by hash, users by id.
fn apply(feed: &Feed, delta: &FeedDelta) -> Feed {
    let mut keys: BTreeMap<_, _> = feed.keys.iter().map(|k| (k.hash.clone(), k.clone())).collect();
    let mut users: BTreeMap<_, _> = feed.users.iter().map(|u| (u.id, u.clone())).collect();
    for hash in &delta.removed_keys {
        keys.remove(hash);
    }
    keys.extend(delta.keys.iter().map(|k| (k.hash.clone(), k.clone())));
    for id in &delta.removed_users {
        users.remove(id);
    }
    users.extend(delta.users.iter().map(|u| (u.id, u.clone())));
    let mut keys: Vec<_> = keys.into_values().collect();
    keys.sort_by_key(|k| k.key_id);
    let users = users.into_values().collect();
    Feed {
        epoch: delta.epoch.clone(),
        version: delta.version,
        keys,
        users,
        jwt_keys: delta.jwt_keys.clone(),
    }
}

/// The delta from `feed` to now, checked against the whole state; `feed` becomes the new state.
async fn step(state: &AppState, feed: &mut Feed) -> FeedDelta {
    let (delta, delta_etag) = delta_from(state, feed).await;
    let (now, etag) = whole_with_etag(state).await;
    assert_eq!(delta_etag, etag, "the same version, the same ETag");
    assert_eq!(apply(feed, &delta), now, "the delta {delta:?} brings the older state to the newer");
    *feed = now;
    delta
}

#[tokio::test]
async fn the_whole_state_names_its_epoch_and_version_as_its_etag_does() {
    let (state, _dir) = state().await;
    let reply = pull(&state, "").await;
    let first: Feed = serde_json::from_str(&reply.text).unwrap();
    assert_eq!(first.epoch.len(), 16, "{first:?}");
    let etag = reply.headers["etag"].to_str().unwrap();
    assert!(etag.starts_with(&format!("\"v{}-", first.version)), "{etag} for {}", first.version);
    assert_eq!(whole(&state).await, first, "the same across pulls");
    new_app(&state).await;
    let second = whole(&state).await;
    assert_eq!(second.epoch, first.epoch);
    assert_eq!(second.version, first.version + 2, "the app and its key");
}

#[tokio::test]
async fn deltas_follow_apps_and_keys() {
    let (state, _dir) = state().await;
    let oldest = whole(&state).await;
    let mut feed = oldest.clone();
    let (id, key) = new_app(&state).await;
    let delta = step(&state, &mut feed).await;
    assert_eq!(delta.keys.iter().map(|k| k.hash.as_str()).collect::<Vec<_>>(), [hash_key(&key)]);
    assert!(delta.removed_keys.is_empty() && delta.users.is_empty());

    let rotated = admin(&state, "POST", &format!("/api/apps/{id}/key"), None).await;
    let new_key = rotated.json["apiKey"].as_str().unwrap().to_owned();
    let delta = step(&state, &mut feed).await;
    assert_eq!(delta.removed_keys, [hash_key(&key)], "rotated out");
    assert_eq!(
        delta.keys.iter().map(|k| k.hash.as_str()).collect::<Vec<_>>(),
        [hash_key(&new_key)]
    );

    admin(&state, "PATCH", &format!("/api/apps/{id}/status"), Some(json!({"status": "disabled"})))
        .await;
    let delta = step(&state, &mut feed).await;
    assert_eq!(delta.keys.len(), 1);
    assert_eq!(
        (delta.keys[0].hash.clone(), delta.keys[0].status),
        (hash_key(&new_key), Status::Disabled)
    );

    let (_, other) = new_app(&state).await;
    admin(&state, "DELETE", &format!("/api/apps/{id}"), None).await;
    let delta = step(&state, &mut feed).await;
    let mut removed = [hash_key(&key), hash_key(&new_key)];
    removed.sort();
    assert_eq!(
        delta.removed_keys, removed,
        "its app deleted: its live key, and its retired one again"
    );
    assert_eq!(delta.keys.iter().map(|k| k.hash.as_str()).collect::<Vec<_>>(), [hash_key(&other)]);

    let (all, _) = delta_from(&state, &oldest).await;
    assert_eq!(apply(&oldest, &all), feed, "one delta across every change");
    assert_eq!(all.removed_keys, removed);
}

#[tokio::test]
async fn deltas_follow_users_and_signing_keys() {
    let (state, _dir) = state().await;
    control_plane::jwt::current_key(state.db()).await.unwrap();
    let mut feed = whole(&state).await;
    let user = admin(
        &state,
        "POST",
        "/api/users",
        Some(json!({"email": "u@example.com", "password": "your_password"})),
    )
    .await;
    let user_id = user.json["id"].as_i64().unwrap();
    let delta = step(&state, &mut feed).await;
    assert_eq!(
        delta.users.iter().map(|u| (u.id, u.status)).collect::<Vec<_>>(),
        [(user_id, Status::Enabled)]
    );

    admin(
        &state,
        "PATCH",
        &format!("/api/users/{user_id}/status"),
        Some(json!({"status": "disabled"})),
    )
    .await;
    admin(&state, "POST", &format!("/api/users/{user_id}/revoke-tokens"), None).await;
    let delta = step(&state, &mut feed).await;
    assert_eq!(
        delta.users.iter().map(|u| (u.status, u.token_version)).collect::<Vec<_>>(),
        [(Status::Disabled, 2)]
    );

    sqlx::query("DELETE FROM users WHERE id = ?").bind(user_id).execute(state.db()).await.unwrap();
    let delta = step(&state, &mut feed).await;
    assert_eq!((delta.users.len(), delta.removed_users.as_slice()), (0, [user_id].as_slice()));

    let before = feed.jwt_keys.clone();
    admin(&state, "POST", "/api/signing-keys/rotate", None).await;
    let delta = step(&state, &mut feed).await;
    assert_eq!(delta.jwt_keys.len(), 2, "the whole set: the new key and the retired one");
    assert!(delta.jwt_keys.contains(&before[0]), "{delta:?}");
    assert!(delta.keys.is_empty() && delta.users.is_empty() && delta.removed_users.is_empty());
}

#[tokio::test]
async fn nothing_changed_is_an_empty_delta_with_the_jwt_keys() {
    let (state, _dir) = state().await;
    control_plane::jwt::current_key(state.db()).await.unwrap();
    let feed = whole(&state).await;
    let (delta, _) = delta_from(&state, &feed).await;
    assert_eq!(delta.version, feed.version);
    assert_eq!(delta.jwt_keys, feed.jwt_keys);
    assert!(delta.keys.is_empty() && delta.removed_keys.is_empty() && delta.users.is_empty());
}

#[tokio::test]
async fn another_epoch_a_version_ahead_or_pruned_changes_get_the_whole_state() {
    let (state, _dir) = state().await;
    let feed = whole(&state).await;
    new_app(&state).await;
    let wrong_epoch = Feed { epoch: "0123456789abcdef".to_owned(), ..feed.clone() };
    let ahead = Feed { version: feed.version + 10, ..feed.clone() };
    let no_epoch = format!("?{SINCE_PARAM}={}", feed.version);
    for query in [since(&wrong_epoch), since(&ahead), no_epoch] {
        let reply = pull(&state, &query).await;
        assert!(!reply.headers.contains_key(DELTA_HEADER), "{query}");
        assert_eq!(serde_json::from_str::<Feed>(&reply.text).unwrap().keys.len(), 1, "{query}");
    }
    // As if 100,000 changes had been made since `feed`: the log has pruned the ones it needs.
    sqlx::query("UPDATE state_version SET version = version + 100000")
        .execute(state.db())
        .await
        .unwrap();
    let latest = whole(&state).await;
    new_app(&state).await;
    let reply = pull(&state, &since(&feed)).await;
    assert!(!reply.headers.contains_key(DELTA_HEADER), "pruned: {}", reply.text);
    assert_eq!(serde_json::from_str::<Feed>(&reply.text).unwrap().keys.len(), 2);
    assert_eq!(
        delta_from(&state, &latest).await.0.keys.len(),
        1,
        "a recent version still gets a delta"
    );
    let metrics = call(&state, "GET", "/metrics", None, None).await.text;
    for line in ["gateway_state_feed_delta_fallbacks_total 3", "gateway_state_feed_deltas_total 1"]
    {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
    let reply = call(
        &state,
        "GET",
        &format!("/internal/state?{SINCE_PARAM}=soon&{EPOCH_PARAM}=x"),
        Some(FEED),
        None,
    )
    .await;
    assert_invalid(&reply, SINCE_PARAM);
}

#[tokio::test]
async fn deltas_never_build_the_whole_state() {
    let (state, _dir) = state().await;
    let mut feed = whole(&state).await;
    let builds = || state.metrics().feed.builds.load(Relaxed);
    assert_eq!(builds(), 1);
    for _ in 0..3 {
        new_app(&state).await;
        let (delta, _) = delta_from(&state, &feed).await;
        feed = apply(&feed, &delta);
    }
    assert_eq!(builds(), 1, "three changes, three deltas, no whole build");
    assert_eq!(state.metrics().feed.deltas.load(Relaxed), 3);
    assert_eq!(whole(&state).await, feed);
    assert_eq!(builds(), 2);
}

#[tokio::test]
async fn a_held_poll_with_since_is_answered_with_a_delta_when_a_key_is_created() {
    let (state, _dir) = state().await;
    let first = pull(&state, "").await;
    let feed: Feed = serde_json::from_str(&first.text).unwrap();
    let etag = first.headers["etag"].to_str().unwrap().to_owned();
    let uri = format!("/internal/state{}&wait_ms=10000", since(&feed));
    let held = {
        let state = state.clone();
        tokio::spawn(async move { call_with_etag(&state, &uri, &etag).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!held.is_finished(), "held while nothing changes");
    let (_, key) = new_app(&state).await;
    let reply = tokio::time::timeout(Duration::from_secs(5), held).await.unwrap().unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.headers[DELTA_HEADER], feed.version.to_string().as_str());
    let delta: FeedDelta = serde_json::from_str(&reply.text).unwrap();
    assert!(delta.keys.iter().any(|k| k.hash == hash_key(&key)), "{delta:?}");
    assert_eq!(apply(&feed, &delta), whole(&state).await);
}

/// A pull with `If-None-Match: etag`.
async fn call_with_etag(state: &AppState, uri: &str, etag: &str) -> Reply {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let request = Request::get(uri)
        .header("authorization", format!("Bearer {FEED}"))
        .header("if-none-match", etag);
    let response = app(state.clone()).oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Reply { status, json: serde_json::from_slice(&bytes).unwrap_or_default(), headers, text }
}
