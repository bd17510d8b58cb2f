//! `GET /api/logs`: newest first, paged, and each filter alone and combined.

use axum::http::StatusCode;
use control_plane::store::logs::{insert_batch, AccessLog};
use serde_json::Value;

use super::*;

/// 2026-01-31T00:00:00Z.
pub const T0: i64 = 1_769_817_600_000;

fn row(
    id: &str,
    at: i64,
    app: i64,
    user: Option<i64>,
    model: &str,
    status: i64,
    stream: bool,
) -> AccessLog {
    AccessLog {
        request_id: id.into(),
        started_at_ms: at,
        app_id: Some(app),
        user_id: user,
        model: Some(model.into()),
        status: Some(status),
        stream: Some(stream),
        ..AccessLog::default()
    }
}

async fn seeded() -> (AppState, tempfile::TempDir) {
    let (state, dir) = state().await;
    let rows = [
        row("a", T0, 1, None, "m1", 200, false),
        row("b", T0 + 1000, 1, None, "m2", 200, true),
        row("c", T0 + 2000, 2, Some(7), "m1", 429, true),
        row("d", T0 + 3000, 2, Some(7), "m1", 200, false),
        row("e", T0 + 3000, 3, Some(8), "m2", 502, true),
    ];
    insert_batch(state.db(), &rows).await.unwrap();
    (state, dir)
}

async fn ids(state: &AppState, query: &str) -> Vec<String> {
    let reply = admin(state, "GET", &format!("/api/logs?{query}"), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.text);
    let records = reply.json["records"].as_array().unwrap();
    records.iter().map(|r| r["requestId"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn lists_newest_first_with_paging() {
    let (state, _dir) = seeded().await;
    assert_eq!(
        ids(&state, "").await,
        ["e", "d", "c", "b", "a"],
        "ties keep the later insert first"
    );
    let reply = admin(&state, "GET", "/api/logs?page=2&size=2", None).await;
    assert_eq!(reply.json["total"], 5);
    assert_eq!(reply.json["records"][0]["requestId"], "c");
    let first = &admin(&state, "GET", "/api/logs?size=1", None).await.json["records"][0];
    assert_eq!(first["appId"], 3);
    assert_eq!(first["stream"], true);
    assert_eq!(first["startedAtMs"], T0 + 3000);
}

#[tokio::test]
async fn filters_by_app_user_model_status_and_stream() {
    let (state, _dir) = seeded().await;
    assert_eq!(ids(&state, "appId=2").await, ["d", "c"]);
    assert_eq!(ids(&state, "userId=7").await, ["d", "c"]);
    assert_eq!(ids(&state, "model=m2").await, ["e", "b"]);
    assert_eq!(ids(&state, "status=200").await, ["d", "b", "a"]);
    assert_eq!(ids(&state, "stream=true").await, ["e", "c", "b"]);
    assert_eq!(ids(&state, "stream=false&model=m1").await, ["d", "a"]);
    assert_eq!(ids(&state, "appId=2&status=429&userId=7&model=m1&stream=true").await, ["c"]);
    assert!(ids(&state, "appId=9").await.is_empty());
    let reply = admin(&state, "GET", "/api/logs?appId=1", None).await;
    assert_eq!(reply.json["total"], 2, "the total counts the filtered rows");
}

#[tokio::test]
async fn the_clients_own_id_is_shown_and_filters_but_never_merges_rows() {
    let (state, _dir) = seeded().await;
    let with_client_id = |id: &str, at: i64| AccessLog {
        client_request_id: Some("replayed".into()),
        ..row(id, at, 1, None, "m1", 200, false)
    };
    insert_batch(state.db(), &[with_client_id("g1", T0 + 5000), with_client_id("g2", T0 + 6000)])
        .await
        .unwrap();
    assert_eq!(
        ids(&state, "clientRequestId=replayed").await,
        ["g2", "g1"],
        "one row per gateway id"
    );
    assert!(ids(&state, "clientRequestId=other").await.is_empty());
    assert_eq!(ids(&state, "clientRequestId=").await.len(), 7, "empty means no filter");
    let first = &admin(&state, "GET", "/api/logs?size=1", None).await.json["records"][0];
    assert_eq!(
        (first["requestId"].as_str(), first["clientRequestId"].as_str()),
        (Some("g2"), Some("replayed"))
    );
    let plain = &admin(&state, "GET", "/api/logs?appId=3", None).await.json["records"][0];
    assert_eq!(plain["clientRequestId"], Value::Null);
}

#[tokio::test]
async fn filters_by_time_range_in_rfc3339_or_milliseconds() {
    let (state, _dir) = seeded().await;
    let (from, to) = (T0 + 1000, T0 + 3000);
    assert_eq!(
        ids(&state, &format!("from={from}&to={to}")).await,
        ["c", "b"],
        "from inclusive, to exclusive"
    );
    assert_eq!(ids(&state, "from=2026-01-31T00:00:02Z").await, ["e", "d", "c"]);
    assert_eq!(ids(&state, "to=2026-01-31T08:00:01%2B08:00").await, ["a"], "any offset");
    assert_eq!(
        ids(&state, "from=2026-01-31T00:00:01.500Z&to=2026-01-31T00:00:02.001Z").await,
        ["c"]
    );
}

#[tokio::test]
async fn bad_filters_name_the_parameter() {
    let (state, _dir) = seeded().await;
    for (query, field) in [
        ("appId=one", "appId"),
        ("userId=1.5", "userId"),
        ("status=ok", "status"),
        ("stream=maybe", "stream"),
        ("from=yesterday", "from"),
        ("to=31/01/2026", "to"),
        (&format!("from={T0}&to={T0}") as &str, "to"),
        ("size=0", "size"),
        ("page=-1", "page"),
    ] {
        let reply = admin(&state, "GET", &format!("/api/logs?{query}"), None).await;
        assert_invalid(&reply, field);
        assert_eq!(reply.json["records"], Value::Null);
    }
}

#[tokio::test]
async fn the_unfiltered_total_follows_inserts_repeats_and_deletes() {
    let (state, _dir) = seeded().await;
    // A repeated request id is ignored and not counted.
    insert_batch(
        state.db(),
        &[row("a", T0, 1, None, "m1", 200, false), row("f", T0 + 4000, 1, None, "m1", 200, false)],
    )
    .await
    .unwrap();
    assert_eq!(admin(&state, "GET", "/api/logs", None).await.json["total"], 6);
    sqlx::query("DELETE FROM access_logs WHERE request_id IN ('a', 'b')")
        .execute(state.db())
        .await
        .unwrap();
    assert_eq!(admin(&state, "GET", "/api/logs", None).await.json["total"], 4);
}
