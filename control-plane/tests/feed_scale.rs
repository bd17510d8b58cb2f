//! The state feed at 100,000 keys: its size and how long it takes to build. A measurement, not
//! a check (nothing is asserted about time); run it on purpose, in release:
//!
//! `cargo test --release -p control-plane --test feed_scale -- --ignored --nocapture`

use std::time::Instant;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use control_plane::api::{app, AppState};
use control_plane::secrets;
use http_body_util::BodyExt;
use tower::ServiceExt;

const KEYS: i64 = 100_000;
const FEED: &str = "feed-token-for-the-measurement";

async fn seed(db: &control_plane::Db) {
    let mut tx = db.begin().await.unwrap();
    for i in 0..KEYS {
        // A third of the apps list models, a quarter have limits, a tenth expire: a mixed fleet.
        let models = if i % 3 == 0 { r#"["Qwen3-32B","Qwen3-235B"]"# } else { "[]" };
        let rpm = (i % 4 == 0).then_some(60);
        let expires = (i % 10 == 0).then_some(4_102_444_800i64);
        sqlx::query(
            "INSERT INTO apps (id, org_name, models, requests_per_minute, tokens_per_minute, expires_at, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, 0, 0)",
        )
        .bind(i + 1)
        .bind(format!("org-{i}"))
        .bind(models)
        .bind(rpm)
        .bind(rpm.map(|n| n * 1000))
        .bind(expires)
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query("INSERT INTO api_keys (app_id, hash, prefix, created_at) VALUES (?, ?, 'sk-live-abcd', 0)")
            .bind(i + 1)
            .bind(secrets::hash(i.to_string()))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

#[tokio::test]
#[ignore = "a measurement at 100,000 keys; run on purpose, in release"]
async fn state_feed_size_and_build_time_at_100k_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = control_plane::db::open(&dir.path().join("feed.db").display().to_string()).await.unwrap();
    seed(&db).await;
    let state = AppState::new(db.clone(), FEED.into(), secrets::hash("admin-token-unused-here"));

    for round in 1..=3 {
        let started = Instant::now();
        let keys = control_plane::store::apps::feed_keys(&db).await.unwrap();
        let queried = started.elapsed();
        let body = serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap();
        let serialized = started.elapsed();
        println!(
            "round {round}: {} keys; query {queried:?}, query+JSON {serialized:?}; {} bytes",
            keys.len(),
            body.len()
        );

        let started = Instant::now();
        let request = Request::get("/internal/state").header("authorization", format!("Bearer {FEED}"));
        let response = app(state.clone()).oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let etag = response.headers()["etag"].clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        println!("round {round}: GET /internal/state 200 in {:?}, {} bytes", started.elapsed(), bytes.len());

        let started = Instant::now();
        let request = Request::get("/internal/state")
            .header("authorization", format!("Bearer {FEED}"))
            .header("if-none-match", etag);
        let response = app(state.clone()).oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        println!("round {round}: GET /internal/state 304 in {:?}", started.elapsed());
    }
    let gzip_hint = std::process::Command::new("gzip").arg("--version").output().is_ok();
    if gzip_hint {
        let keys = control_plane::store::apps::feed_keys(&db).await.unwrap();
        let body = serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap();
        let path = dir.path().join("feed.json");
        std::fs::write(&path, &body).unwrap();
        let out = std::process::Command::new("gzip").arg("-c").arg(&path).output().unwrap();
        println!("gzip -6 of the feed: {} bytes", out.stdout.len());
    }
}
