//! Bursts: 100 concurrent requests against a concurrency limit and against a per-minute limit of
//! 10 admit exactly 10 (Envoy runs several workers; they share one ledger), the others get
//! OpenAI's 429; refusals are in the access log and in Prometheus; slots come back when the
//! admitted requests end. Two Envoys in front of one control plane admit exactly the limit
//! together.

use serde_json::json;

use super::support::{
    assert_limited, assert_rate_headers, burst, burst_held, chat, clear_of_minute_end,
    header_number, limited_total, rows_of, split, stack, MODEL,
};

/// Requests in a burst.
const BURST: usize = 100;
/// The limit the bursts meet.
const LIMIT: usize = 10;

#[tokio::test]
async fn a_burst_against_a_concurrency_limit_admits_exactly_the_limit_and_slots_come_back() {
    let stack = stack().await;
    let app =
        stack.create_app_with_limits("burst", json!({"concurrentRequests": LIMIT})).await.unwrap();
    let (replies, held) = burst_held(&stack, &app.api_key, MODEL, BURST).await;
    assert_eq!(held, LIMIT, "the upstream got exactly the limit");
    assert_eq!(split(&replies), (LIMIT, BURST - LIMIT), "exactly the limit is admitted");
    for refused in replies.iter().filter(|r| r.status == 429) {
        assert_limited(refused, "rate_limit_exceeded", "concurrent", "requests");
        assert_eq!(refused.json()["error"]["type"], "requests", "{refused:?}");
        assert_eq!(
            header_number(refused, "x-ratelimit-limit-requests"),
            Some(LIMIT as u64),
            "{refused:?}"
        );
        assert_eq!(
            header_number(refused, "x-ratelimit-remaining-requests"),
            Some(0),
            "{refused:?}"
        );
    }
    for admitted in replies.iter().filter(|r| r.status == 200) {
        assert_rate_headers(admitted, "requests");
    }

    // The slots are back: as many requests at once as the limit pass again.
    let again =
        burst(stack.http(), &stack.gateway_url, &app.api_key, &chat(MODEL, 2, false), LIMIT).await;
    assert_eq!(split(&again), (LIMIT, 0), "every slot was given back: {again:#?}");

    let rows = rows_of(&stack, app.id, false, BURST + LIMIT).await;
    let refused: Vec<_> = rows.iter().filter(|r| r["status"] == 429).collect();
    assert_eq!(refused.len(), BURST - LIMIT);
    assert!(
        refused.iter().all(|r| r["limited"] == "concurrent_requests"),
        "refused rows say why: {refused:#?}"
    );
    assert!(
        rows.iter().filter(|r| r["status"] == 200).all(|r| r["limited"].is_null()),
        "{rows:#?}"
    );
    let counted =
        limited_total(stack.envoy_admin, "concurrent_requests", (BURST - LIMIT) as f64).await;
    assert_eq!(
        counted,
        (BURST - LIMIT) as f64,
        "vllm_gateway_limited_total counts each refusal once"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_burst_against_a_per_minute_limit_admits_exactly_the_limit() {
    let stack = stack().await;
    let app =
        stack.create_app_with_limits("rpm", json!({"requestsPerMinute": LIMIT})).await.unwrap();
    clear_of_minute_end().await;
    let replies =
        burst(stack.http(), &stack.gateway_url, &app.api_key, &chat(MODEL, 2, false), BURST).await;
    assert_eq!(split(&replies), (LIMIT, BURST - LIMIT), "exactly the limit is admitted");
    assert_eq!(stack.mock(MODEL).state.seen().len(), LIMIT);
    for refused in replies.iter().filter(|r| r.status == 429) {
        assert_limited(refused, "rate_limit_exceeded", "minute", "requests");
        assert_eq!(refused.json()["error"]["type"], "requests", "{refused:?}");
        assert!(
            header_number(refused, "retry-after").is_some_and(|s| s <= 60),
            "within the minute: {refused:?}"
        );
        assert_eq!(
            header_number(refused, "x-ratelimit-remaining-requests"),
            Some(0),
            "{refused:?}"
        );
    }
    let rows = rows_of(&stack, app.id, false, BURST).await;
    let limited = rows.iter().filter(|r| r["limited"] == "requests_per_minute").count();
    assert_eq!(limited, BURST - LIMIT, "{rows:#?}");
    let counted =
        limited_total(stack.envoy_admin, "requests_per_minute", (BURST - LIMIT) as f64).await;
    assert_eq!(counted, (BURST - LIMIT) as f64);
    stack.stop().await;
}

#[tokio::test]
async fn two_envoys_in_front_of_one_control_plane_admit_exactly_the_limit_together() {
    let stack = stack().await;
    let second = stack.start_second_envoy().await.unwrap();
    let app = stack
        .create_app_with_limits("two-envoys", json!({"requestsPerMinute": LIMIT}))
        .await
        .unwrap();
    second.wait_for_key(&app.api_key).await.unwrap();
    clear_of_minute_end().await;
    let body = chat(MODEL, 2, false);
    let http = stack.http();
    let (first, other) = tokio::join!(
        burst(http, &stack.gateway_url, &app.api_key, &body, 20),
        burst(http, &second.gateway_url, &app.api_key, &body, 20),
    );
    let (a, b) = (split(&first).0, split(&other).0);
    assert_eq!(a + b, LIMIT, "admitted {a} through the first Envoy and {b} through the second");
    assert_eq!(stack.mock(MODEL).state.seen().len(), LIMIT);
    for refused in first.iter().chain(&other).filter(|r| r.status == 429) {
        assert_limited(refused, "rate_limit_exceeded", "minute", "requests");
    }
    // Both Envoys' rows reach the one control plane.
    let rows = rows_of(&stack, app.id, false, 40).await;
    assert_eq!(rows.iter().filter(|r| r["status"] == 200).count(), LIMIT);
    let standing = stack.limit_standing(app.id, false, "requests_per_minute", None).await.unwrap();
    assert_eq!(standing["limit"], LIMIT, "{standing}");
    assert_eq!(
        standing["used"], LIMIT,
        "the Envoys leased the whole limit and never more: {standing}"
    );
    stack.stop().await;
}
