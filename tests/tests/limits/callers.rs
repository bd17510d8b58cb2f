//! Who is limited and what survives: a JWT user with limits is limited as an app is; an OpenAI
//! client library retries a rate limit after `Retry-After` and gives up at once on an exhausted
//! budget; what a budget has used survives restarts of the control plane and of Envoy, and the
//! remainder is enforced after them.

use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs,
};
use gateway_e2e::eventually;
use gateway_stack::Stack;
use mock_vllm::Fault;
use serde_json::{json, Value};

use super::support::{
    assert_limited, burst_held, chat, limited_total, noon_time_zone, prometheus_sum, rows_of, send,
    split, stack, total_tokens, MODEL, WAIT,
};

#[tokio::test]
async fn a_user_with_limits_is_limited_like_an_app() {
    let stack = stack().await;
    let (email, password) = ("limited@example.com", "a-long-password");
    let user = stack
        .create_user_with_limits(email, password, json!({"concurrentRequests": 3}))
        .await
        .unwrap();
    let token = stack.login(email, password).await.unwrap()["token"].as_str().unwrap().to_owned();
    stack.wait_for_key(&token).await.unwrap();

    let (replies, held) = burst_held(&stack, &token, MODEL, 10).await;
    assert_eq!((held, split(&replies)), (3, (3, 7)), "the user's limit admits exactly 3");
    for refused in replies.iter().filter(|r| r.status == 429) {
        assert_limited(refused, "rate_limit_exceeded", "concurrent", "requests");
    }
    let rows = rows_of(&stack, user, true, 10).await;
    assert_eq!(
        rows.iter().filter(|r| r["limited"] == "concurrent_requests").count(),
        7,
        "{rows:#?}"
    );
    let standing = stack.limit_standing(user, true, "concurrent_requests", None).await.unwrap();
    assert_eq!(standing["limit"], 3, "{standing}");
    stack.stop().await;
}

/// A chat request as the OpenAI library builds it.
fn sdk_request(content: &str) -> async_openai::types::chat::CreateChatCompletionRequest {
    CreateChatCompletionRequestArgs::default()
        .model(MODEL)
        .max_tokens(4u32)
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content(content)
            .build()
            .unwrap()
            .into()])
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_openai_client_retries_a_rate_limit_after_retry_after_and_not_an_exhausted_budget() {
    let stack = stack().await;
    let app =
        stack.create_app_with_limits("sdk-rate", json!({"concurrentRequests": 1})).await.unwrap();
    // The one slot is taken by a request the upstream holds.
    let mock = &stack.mock(MODEL).state;
    mock.set_fault(Fault::HoldBeforeHeaders);
    let (http, base, key) = (stack.http().clone(), stack.gateway_url.clone(), app.api_key.clone());
    let holder =
        tokio::spawn(async move { send(&http, &base, &key, &chat(MODEL, 2, false)).await });
    eventually("the slot taken", WAIT, || async { Ok((mock.seen().len() == 1).then_some(())) })
        .await
        .unwrap();
    let client = crate::common::openai(&stack, &app.api_key);
    let sdk = tokio::spawn(async move { client.chat().create(sdk_request("hi")).await });
    // The library was refused once; the slot comes free while it waits.
    limited_total(stack.envoy_admin, "concurrent_requests", 1.0).await;
    mock.set_fault(Fault::None);
    assert_eq!(holder.await.unwrap().status, 200);
    let reply = sdk.await.unwrap().expect("the library's retry succeeds once the slot is free");
    assert!(reply.usage.is_some());

    // The holder's row and the library's: its refusals, then its success.
    let mut rows = eventually("the rows of both requests", WAIT, || async {
        let rows = rows_of(&stack, app.id, false, 2).await;
        Ok((rows.iter().filter(|r| r["status"] == 200).count() == 2).then_some(rows))
    })
    .await
    .unwrap();
    rows.sort_by_key(|r| r["startedAtMs"].as_i64());
    let attempts = &rows[1..];
    let statuses: Vec<&Value> = attempts.iter().map(|r| &r["status"]).collect();
    assert_eq!(statuses.last(), Some(&&json!(200)), "{rows:#?}");
    assert!(statuses[..statuses.len() - 1].iter().all(|s| **s == 429), "{rows:#?}");
    for pair in attempts.windows(2) {
        let gap =
            pair[1]["startedAtMs"].as_i64().unwrap() - pair[0]["startedAtMs"].as_i64().unwrap();
        assert!(
            gap >= 1000,
            "the library waited Retry-After (at least 1 s) before retrying: {gap} ms; {rows:#?}"
        );
    }

    // An exhausted budget is not retried: the library raises the 429 at once.
    let limits = json!({"tokensPerDay": 5, "timeZone": noon_time_zone()});
    let poor = stack.create_app_with_limits("sdk-budget", limits).await.unwrap();
    let refused = crate::common::openai(&stack, &poor.api_key)
        .chat()
        .create(sdk_request(&"word ".repeat(50)))
        .await;
    match refused {
        Err(OpenAIError::ApiError(e)) => {
            assert_eq!(e.status_code.as_u16(), 429, "{e:?}");
            assert_eq!(e.api_error.code.as_deref(), Some("insufficient_quota"), "{e:?}");
        }
        other => panic!("expected the budget's 429, got {other:?}"),
    }
    let label = "reason=\"tokens_per_day\"";
    assert_eq!(
        prometheus_sum(stack.envoy_admin, "vllm_gateway_limited_total", label).await,
        1.0,
        "asked once, not retried"
    );
    stack.stop().await;
}

/// Sends `chat(MODEL, 20)` until the budget refuses it; returns the tokens of those admitted.
async fn spend_until_refused(stack: &Stack, key: &str) -> i64 {
    let mut spent = 0;
    for _ in 0..50 {
        let reply = send(stack.http(), &stack.gateway_url, key, &chat(MODEL, 20, false)).await;
        if reply.status == 429 {
            assert_limited(&reply, "insufficient_quota", "day", "tokens");
            return spent;
        }
        assert_eq!(reply.status, 200, "{reply:?}");
        spent += reply.json()["usage"]["total_tokens"].as_i64().unwrap();
    }
    panic!("the budget never ran out ({spent} tokens spent)");
}

#[tokio::test]
async fn what_a_budget_has_used_survives_restarts_and_the_remainder_is_enforced() {
    const BUDGET: i64 = 300;
    let mut stack = stack().await;
    let limits = json!({"tokensPerDay": BUDGET, "timeZone": noon_time_zone()});
    let app = stack.create_app_with_limits("restarts", limits).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            send(stack.http(), &stack.gateway_url, &app.api_key, &chat(MODEL, 20, false))
                .await
                .status,
            200
        );
    }
    let used = |s: &Value| s["used"].as_i64().unwrap();
    let before = stack.limit_standing(app.id, false, "tokens_per_day", None).await.unwrap();
    let spent_before = total_tokens(&rows_of(&stack, app.id, false, 2).await);
    assert!(used(&before) >= spent_before, "{before}");

    stack.stop_control_plane().await;
    stack.restart_control_plane().await.unwrap();
    let after_cp = stack.limit_standing(app.id, false, "tokens_per_day", None).await.unwrap();
    assert_eq!(
        used(&after_cp),
        used(&before),
        "the control plane's restart keeps the ledger: {after_cp}"
    );

    stack.restart_envoy().await.unwrap();
    stack.wait_for_key(&app.api_key).await.unwrap();
    let after_envoy = stack.limit_standing(app.id, false, "tokens_per_day", None).await.unwrap();
    assert_eq!(
        used(&after_envoy),
        used(&before),
        "what the old Envoy leased stays counted: {after_envoy}"
    );

    let spent_after = spend_until_refused(&stack, &app.api_key).await;
    assert!(spent_after > 0, "the remainder is usable after the restarts");
    assert!(
        spent_after <= BUDGET - used(&before),
        "only the remainder ({} left) is admitted: {spent_after}",
        BUDGET - used(&before)
    );
    let end = stack.limit_standing(app.id, false, "tokens_per_day", None).await.unwrap();
    assert!(used(&end) >= used(&before) + spent_after && used(&end) <= BUDGET, "{end}");
    stack.stop().await;
}
