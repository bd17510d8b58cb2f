//! Slow-loris clients: connections that send their headers or their body a byte at a time are
//! cut off by Envoy's request timeouts (the body's with an OpenAI-shaped 408), while everyone
//! else is served; the log holds what was cut off.

use gateway_e2e::eventually;
use gateway_stack::Stack;
use serde_json::Value;

use super::raw::{self, Ending};
use super::support::{
    assert_openai_error, assert_served, configured_timeouts, gateway_address, row_of,
    stack_with_short_timeouts, WAIT,
};

/// Slow-loris connections opened at once.
const SLOW_CLIENTS: usize = 50;

/// Panics naming Envoy's timeouts when a slow client was not cut off.
async fn assert_cut_off(stack: &Stack, what: &str, ending: &Ending) {
    if matches!(ending, Ending::StillOpen) {
        panic!(
            "{what} was never cut off (still open after {WAIT:?}); Envoy's timeouts: {}",
            configured_timeouts(stack).await
        );
    }
}

#[tokio::test]
async fn slow_loris_headers_are_cut_off_and_logged_once_each_while_others_are_served() {
    let (stack, app) = stack_with_short_timeouts().await;
    let addr = gateway_address(&stack);
    let head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\nx-slow: ";
    let slow: Vec<_> = (0..SLOW_CLIENTS)
        .map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move { raw::trickle(&addr, head, b"abcdefgh").await })
        })
        .collect();
    assert_served(&stack, &app.api_key, 20).await;

    for client in slow {
        let ending = client.await.unwrap();
        assert_cut_off(&stack, "a client sending its headers a byte at a time", &ending).await;
        if let Ending::Answered(reply) = &ending {
            assert_eq!(reply.status, 408, "{reply:?}");
            assert_eq!(reply.header("connection"), "close", "{reply:?}");
        }
    }
    // Each cut-off connection is one row: status 408, no method, path or app.
    let cut_off = |rows: Vec<Value>| -> Vec<Value> {
        rows.into_iter().filter(|r| r["status"] == 408 && r["path"].is_null()).collect()
    };
    let logged = eventually("a row per cut-off connection", WAIT, || async {
        Ok(Some(cut_off(stack.all_logs().await?)).filter(|rows| rows.len() >= SLOW_CLIENTS))
    })
    .await;
    if logged.is_err() {
        let rows = cut_off(stack.all_logs().await.unwrap());
        let ids: Vec<&str> = rows.iter().filter_map(|r| r["requestId"].as_str()).collect();
        panic!(
            "{SLOW_CLIENTS} connections were cut off, the log has {} rows for them: {ids:?}",
            rows.len()
        );
    }
    let rows = logged.unwrap();
    assert_eq!(rows.len(), SLOW_CLIENTS, "{rows:#?}");
    assert!(
        rows.iter().all(|r| r["appId"].is_null()
            && r["method"].is_null()
            && r["completionTokens"].as_i64().unwrap_or(0) == 0),
        "{rows:#?}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_slow_loris_body_is_cut_off_with_an_openai_shaped_408_and_logged() {
    let (stack, app) = stack_with_short_timeouts().await;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{{\"model\":\"model-a\",\"messages\":[",
        app.api_key
    );
    let addr = gateway_address(&stack);
    let slow = tokio::spawn(async move { raw::trickle(&addr, head.as_bytes(), b" ").await });
    assert_served(&stack, &app.api_key, 20).await;

    let ending = slow.await.unwrap();
    assert_cut_off(&stack, "a client sending its body a byte at a time", &ending).await;
    let Ending::Answered(reply) = ending else {
        panic!("the slow client got no answer, only a closed connection")
    };
    assert_eq!(reply.status, 408, "{reply:?}");
    assert_openai_error("the request timeout", reply.header("content-type"), &reply.body);
    let row = row_of(&stack, reply.header("x-request-id")).await;
    assert_eq!((row["status"].as_u64(), row["appId"].as_i64()), (Some(408), Some(app.id)), "{row}");
    assert_eq!(
        (row["path"].as_str(), row["completionTokens"].as_u64()),
        (Some("/v1/chat/completions"), Some(0)),
        "{row}"
    );
    assert!(
        stack.mock("model-a").state.seen().iter().all(|r| r.body.len() < 1000),
        "the cut-off body never reached the model"
    );
    stack.stop().await;
}
