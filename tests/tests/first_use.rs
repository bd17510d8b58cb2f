//! Credentials work on their first use, on every worker, and changes reach every worker: a
//! new, rotated or re-enabled API key and a fresh login JWT are accepted on the first request
//! after the control plane has answered (fifty times in a row, no retry), revocations reach all
//! workers, changes travel as deltas (the whole state is built and read once, at start), and a
//! flood of unknown keys never reaches the control plane in bulk.

mod common;

use std::time::{Duration, Instant};

use gateway_e2e::eventually;
use gateway_stack::{Stack, StackOptions};
use reqwest::Method;
use serde_json::{json, Value};

/// Four workers, each with its own VM and key state; connections land on any of them.
fn four_workers() -> StackOptions {
    let mut options = StackOptions::for_tests();
    options.envoy_workers = 4;
    options
}

/// A client that opens a new connection per request, so requests spread over the workers.
fn fresh_connections() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap()
}

async fn chat(client: &reqwest::Client, stack: &Stack, token: &str) -> (u16, Value) {
    let resp = client
        .post(format!("{}/v1/chat/completions", stack.gateway_url))
        .bearer_auth(token)
        .json(&json!({"model": "model-a", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn new_and_rotated_keys_work_on_their_first_request() {
    let (stack, _) = common::stack_with_app_using(four_workers()).await;
    let client = fresh_connections();
    for i in 0..50 {
        let app = stack.create_app(&format!("first-use-{i}")).await.unwrap();
        let (status, body) = chat(&client, &stack, &app.api_key).await;
        assert_eq!(status, 200, "new key {i}: {body}");
        let (status, rotated) =
            stack.admin(Method::POST, &format!("/api/apps/{}/key", app.id), None).await.unwrap();
        assert_eq!(status, 201, "{rotated}");
        let (status, body) = chat(&client, &stack, rotated["apiKey"].as_str().unwrap()).await;
        assert_eq!(status, 200, "rotated key {i}: {body}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_re_enabled_app_works_on_its_first_request() {
    let (stack, app) = common::stack_with_app_using(four_workers()).await;
    let client = fresh_connections();
    let status_path = format!("/api/apps/{}/status", app.id);
    for i in 0..10 {
        let (status, _) = stack
            .admin(Method::PATCH, &status_path, Some(json!({"status": "disabled"})))
            .await
            .unwrap();
        assert_eq!(status, 200);
        // Refused on every worker (eventually: the change travels to each of them).
        eventually("the disabled app refused everywhere", Duration::from_secs(10), || async {
            let mut refused = 0;
            for _ in 0..12 {
                refused += u32::from(chat(&client, &stack, &app.api_key).await.0 == 403);
            }
            Ok((refused == 12).then_some(()))
        })
        .await
        .unwrap();
        let (status, _) = stack
            .admin(Method::PATCH, &status_path, Some(json!({"status": "enabled"})))
            .await
            .unwrap();
        assert_eq!(status, 200);
        let (status, body) = chat(&client, &stack, &app.api_key).await;
        assert_eq!(status, 200, "re-enabled, round {i}: {body}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_fresh_login_token_works_on_its_first_request() {
    let (stack, _) = common::stack_with_app_using(four_workers()).await;
    let client = fresh_connections();
    for i in 0..50 {
        let email = format!("first-use-{i}@example.com");
        stack.create_user(&email, "a long enough password").await.unwrap();
        let login = stack.login(&email, "a long enough password").await.unwrap();
        let (status, body) = chat(&client, &stack, login["token"].as_str().unwrap()).await;
        assert_eq!(status, 200, "user {i}: {body}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_revocation_reaches_every_worker() {
    let (stack, app) = common::stack_with_app_using(four_workers()).await;
    let client = fresh_connections();
    assert_eq!(chat(&client, &stack, &app.api_key).await.0, 200);
    let started = Instant::now();
    let (status, _) =
        stack.admin(Method::DELETE, &format!("/api/apps/{}", app.id), None).await.unwrap();
    assert_eq!(status, 204);
    // Twenty refusals in a row on fresh connections: every worker knows.
    eventually("the deleted app's key refused everywhere", Duration::from_secs(10), || async {
        for _ in 0..20 {
            if chat(&client, &stack, &app.api_key).await.0 != 401 {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await
    .unwrap();
    eprintln!("revocation reached every worker within {:?}", started.elapsed());
    stack.stop().await;
}

#[tokio::test]
async fn changes_reach_every_worker_as_deltas_not_whole_states() {
    let (stack, app) = common::stack_with_app_using(four_workers()).await;
    let client = fresh_connections();
    assert_eq!(chat(&client, &stack, &app.api_key).await.0, 200);
    let whole_builds = stack.control_plane_metric("gateway_state_feed_builds_total").await.unwrap();
    let deltas = stack.control_plane_metric("gateway_state_feed_deltas_total").await.unwrap();
    let adopted = || stack.envoy_output().matches("key state adopted: ").count();
    // Every worker holds its first state, and the main thread its own: a wasm worker's VM takes
    // it on its first tick, a native worker with its first request (60 fresh connections reach
    // each of four workers but for a chance of 1 in 10^7).
    if gateway_stack::filter_build::runs_native() {
        for _ in 0..60 {
            assert_eq!(chat(&client, &stack, &app.api_key).await.0, 200);
        }
    }
    eventually("every worker holds a state", Duration::from_secs(10), || async {
        Ok((adopted() >= 5).then_some(()))
    })
    .await
    .unwrap();
    let adopted_before = adopted();
    for i in 0..20 {
        let other = stack.create_app(&format!("churn-{i}")).await.unwrap();
        let (status, _) = stack
            .admin(
                Method::PATCH,
                &format!("/api/apps/{}/status", other.id),
                Some(json!({"status": "disabled"})),
            )
            .await
            .unwrap();
        assert_eq!(status, 200);
    }
    let (status, _) = stack
        .admin(
            Method::PATCH,
            &format!("/api/apps/{}/status", app.id),
            Some(json!({"status": "disabled"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    eventually("the last change reached every worker", Duration::from_secs(10), || async {
        for _ in 0..20 {
            if chat(&client, &stack, &app.api_key).await.0 != 403 {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await
    .unwrap();
    let output = stack.envoy_output();
    assert_eq!(adopted(), adopted_before, "no worker read a whole state again:\n{output}");
    assert!(output.contains("key state changed: "), "{output}");
    assert_eq!(
        stack.control_plane_metric("gateway_state_feed_builds_total").await.unwrap(),
        whole_builds,
        "no whole state built"
    );
    assert!(stack.control_plane_metric("gateway_state_feed_deltas_total").await.unwrap() > deltas);
    stack.stop().await;
}

#[tokio::test]
async fn a_flood_of_unknown_keys_does_not_reach_the_control_plane_in_bulk() {
    let (stack, app) = common::stack_with_app_using(four_workers()).await;
    let client = fresh_connections();
    let lookups =
        || async { stack.control_plane_metric("gateway_credential_lookups_total").await.unwrap() };
    let before = lookups().await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..400 {
        let (client, url) = (client.clone(), format!("{}/v1/models", stack.gateway_url));
        tasks.push(tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(format!("sk-live-random-{i:08}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 401);
    }
    let seconds = started.elapsed().as_secs_f64().ceil() + 1.0;
    let made = lookups().await - before;
    // At most the per-worker cap (20 a second by default) on each of the four workers.
    assert!(made <= 20.0 * 4.0 * seconds && made < 400.0, "{made} lookups in {seconds} s");
    // The gateway still serves a known key meanwhile.
    assert_eq!(chat(&client, &stack, &app.api_key).await.0, 200);
    stack.stop().await;
}
