//! The state feed at 100,000 keys and 10,000 users: its size, how long a whole build takes, a
//! 304, a delta for one change (and for a thousand), and a single-credential lookup. A
//! measurement, not a check (nothing is asserted about time); run it on purpose, in release:
//!
//! `cargo test --release -p control-plane --test feed_scale -- --ignored --nocapture`

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use control_plane::api::{app, AppState};
use control_plane::secrets;
use http_body_util::BodyExt;
use tower::ServiceExt;
use vllm_gateway_filter::feed::{hash_key, Feed, DELTA_HEADER, EPOCH_PARAM, SINCE_PARAM};

const KEYS: i64 = 100_000;
const USERS: i64 = 10_000;
const FEED: &str = "feed-token-for-the-measurement";

async fn seed(db: &control_plane::Db) {
    let mut tx = db.begin().await.unwrap();
    for i in 0..KEYS {
        // A third of the apps list models, a quarter have limits, a tenth expire: a mixed fleet.
        let models = if i % 3 == 0 { r#"["Qwen3-32B","Qwen3-235B"]"# } else { "[]" };
        let rpm = (i % 4 == 0).then_some(60);
        let expires = (i % 10 == 0).then_some(4_102_444_800i64);
        sqlx::query(
            "INSERT INTO apps (id, org_name, models, limits, expires_at, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, 0, 0)",
        )
        .bind(i + 1)
        .bind(format!("org-{i}"))
        .bind(models)
        .bind(rpm.map(|n| format!(r#"{{"requestsPerMinute":{n},"tokensPerMinute":{}}}"#, n * 1000)))
        .bind(expires)
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query("INSERT INTO api_keys (app_id, hash, prefix, created_at) VALUES (?, ?, 'sk-live-abcd', 0)")
            .bind(i + 1)
            .bind(hash_key(&i.to_string()))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    for i in 0..USERS {
        sqlx::query("INSERT INTO users (email, password_hash, created_at, updated_at) VALUES (?, 'x', 0, 0)")
            .bind(format!("user-{i}@example.com"))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

async fn get(
    state: &AppState,
    uri: &str,
    etag: Option<&axum::http::HeaderValue>,
) -> (StatusCode, axum::http::HeaderMap, usize) {
    let (status, headers, body) = get_body(state, uri, etag).await;
    (status, headers, body.len())
}

async fn get_body(
    state: &AppState,
    uri: &str,
    etag: Option<&axum::http::HeaderValue>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut request = Request::get(uri).header("authorization", format!("Bearer {FEED}"));
    if let Some(etag) = etag {
        request = request.header("if-none-match", etag);
    }
    let response = app(state.clone()).oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.into_body().collect().await.unwrap().to_bytes().to_vec())
}

/// Pulls the whole state, makes `changes` changes (apps disabled in turn), then pulls the delta:
/// prints its time and size.
async fn measure_delta(state: &AppState, db: &control_plane::Db, changes: i64, round: i64) {
    let (_, _, body) = get_body(state, "/internal/state", None).await;
    let feed: Feed = serde_json::from_slice(&body).unwrap();
    for i in 0..changes {
        sqlx::query("UPDATE apps SET status = 'disabled' WHERE id = ?")
            .bind((round * 7_919 + i * 97) % KEYS + 1)
            .execute(db)
            .await
            .unwrap();
    }
    let uri =
        format!("/internal/state?{SINCE_PARAM}={}&{EPOCH_PARAM}={}", feed.version, feed.epoch);
    let started = Instant::now();
    let (status, headers, bytes) = get(state, &uri, None).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains_key(DELTA_HEADER), "a delta");
    println!("round {round}: delta for {changes} change(s) at 100k keys: {took:?}, {bytes} bytes");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement at 100,000 keys; run on purpose, in release"]
async fn state_feed_size_and_build_time_at_100k_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db =
        control_plane::db::open(&dir.path().join("feed.db").display().to_string()).await.unwrap();
    seed(&db).await;
    let state = AppState::new(db.clone(), FEED.into(), secrets::hash("admin-token-unused-here"));

    for round in 1..=3 {
        let started = Instant::now();
        let keys = control_plane::store::feed::keys(&db).await.unwrap();
        let users = control_plane::store::feed::users(&db).await.unwrap();
        let queried = started.elapsed();
        let body = serde_json::to_vec(&Feed { keys, users, ..Feed::default() }).unwrap();
        println!(
            "round {round}: query {queried:?}, query+JSON {:?}; {} bytes",
            started.elapsed(),
            body.len()
        );

        // A change, so that the pull below builds (not the cached body).
        sqlx::query("UPDATE state_version SET version = version + 1").execute(&db).await.unwrap();
        let started = Instant::now();
        let (status, headers, bytes) = get(&state, "/internal/state", None).await;
        assert_eq!(status, StatusCode::OK);
        println!(
            "round {round}: GET /internal/state 200 (a build) in {:?}, {bytes} bytes",
            started.elapsed()
        );
        let started = Instant::now();
        let (status, _, _) = get(&state, "/internal/state", Some(&headers["etag"])).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        println!("round {round}: GET /internal/state 304 in {:?}", started.elapsed());
        let started = Instant::now();
        assert_eq!(get(&state, "/internal/state", None).await.0, StatusCode::OK);
        println!("round {round}: GET /internal/state 200 (cached) in {:?}", started.elapsed());
    }
    for round in 1..=3 {
        measure_delta(&state, &db, 1, round).await;
    }
    measure_delta(&state, &db, 1_000, 4).await;
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    for i in 0..1_000i64 {
        let one = Instant::now();
        let uri = format!(
            "/internal/lookup?keyHash={}&userId={}",
            hash_key(&(i * 97).to_string()),
            i + 1
        );
        assert_eq!(get(&state, &uri, None).await.0, StatusCode::OK);
        slowest = slowest.max(one.elapsed());
    }
    println!(
        "1,000 lookups (key and user): {:?} each on average, slowest {slowest:?}",
        started.elapsed() / 1_000
    );
}
