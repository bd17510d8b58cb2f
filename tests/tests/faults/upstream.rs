//! A model server that fails: it cuts the connection mid-stream, never answers, or stops
//! sending mid-stream. The client sees what was generated and then a broken stream, or an
//! OpenAI-shaped 504; the row holds the tokens generated so far and Envoy's flag for the failure.

use gateway_stack::{CreatedApp, Stack};
use mock_vllm::Fault;

use super::support::{
    assert_openai_error, chat, configured_timeouts, has_flag, row_of, send_chat,
    stack_with_short_timeouts,
};

/// The model whose server fails; `model-a` keeps working beside it.
const FAILING: &str = "model-b";

/// Envoy's flags for an upstream whose connection broke mid-response.
const BROKEN_UPSTREAM: [&str; 3] = ["UPE", "UC", "UR"];

/// Envoy's flags for a timeout that ended a request (a stream idle or an upstream timeout).
const TIMED_OUT: [&str; 2] = ["SI", "UT"];

/// The prompt tokens of [`chat`]'s one message (`hi`), as the mock counts them.
const PROMPT_TOKENS: u64 = 2;

/// A stack whose configured timeouts are short, with an app; `FAILING` shows `fault`.
async fn failing_stack(fault: Fault) -> (Stack, CreatedApp) {
    let (stack, app) = stack_with_short_timeouts().await;
    stack.mock(FAILING).state.set_fault(fault);
    (stack, app)
}

/// The other model answers as usual while `FAILING` fails.
async fn assert_other_model_works(stack: &Stack, app: &CreatedApp) {
    let seen = send_chat(stack.http(), &stack.gateway_url, &app.api_key, &chat("model-a", 3, true))
        .await
        .unwrap();
    assert_eq!((seen.status, seen.broke, seen.content_events()), (200, false, 3), "{seen:?}");
}

/// The row does not blame the client: it read until the gateway ended the stream.
fn assert_client_stayed(row: &serde_json::Value) {
    assert_eq!(
        row["clientDisconnected"], false,
        "the client did not go away, the upstream failed: {row}"
    );
}

#[tokio::test]
async fn an_upstream_that_resets_mid_stream_ends_the_stream_and_the_row_keeps_the_tokens_so_far() {
    // The role chunk and three tokens, then the connection is cut.
    let (stack, app) = failing_stack(Fault::ResetAfter { frames: 4 }).await;
    let seen = send_chat(stack.http(), &stack.gateway_url, &app.api_key, &chat(FAILING, 20, true))
        .await
        .unwrap();
    assert_eq!(seen.status, 200, "{seen:?}");
    assert!(seen.broke, "the client sees a broken stream, not a clean end: {seen:?}");
    assert_eq!(
        seen.content_events(),
        3,
        "the tokens generated before the cut reach the client: {seen:?}"
    );
    assert!(!seen.body.contains("[DONE]"), "{seen:?}");
    assert!(seen.usage().is_none(), "the stream was cut before its usage chunk: {seen:?}");

    let row = row_of(&stack, &seen.request_id).await;
    assert_eq!(row["status"], 200, "the status the client got: {row}");
    assert!(has_flag(&row, &BROKEN_UPSTREAM), "the row says the upstream broke: {row}");
    assert_eq!(row["usageSource"], "reported", "continuous usage counts a cut stream: {row}");
    assert_eq!(
        (row["promptTokens"].as_u64(), row["completionTokens"].as_u64()),
        (Some(PROMPT_TOKENS), Some(3)),
        "{row}"
    );
    assert_eq!(row["model"], FAILING);
    assert_other_model_works(&stack, &app).await;
    assert_client_stayed(&row);
    stack.stop().await;
}

#[tokio::test]
async fn an_upstream_that_never_answers_gets_an_openai_shaped_504_and_one_row() {
    let (stack, app) = failing_stack(Fault::StallBeforeHeaders).await;
    let seen = match send_chat(stack.http(), &stack.gateway_url, &app.api_key, &chat(FAILING, 5, false)).await {
        Ok(seen) => seen,
        Err(e) => panic!(
            "a request whose upstream never answers was not ended by the gateway ({e}); Envoy's timeouts: {}",
            configured_timeouts(&stack).await
        ),
    };
    assert_eq!(seen.status, 504, "{seen:?}");
    assert_openai_error("the upstream timeout", &seen.content_type, &seen.body);
    assert_eq!(
        stack.mock(FAILING).state.seen().len(),
        1,
        "the upstream got the request once (no retry)"
    );

    let row = row_of(&stack, &seen.request_id).await;
    assert_eq!(row["status"], 504, "{row}");
    assert!(has_flag(&row, &TIMED_OUT), "the row says it timed out: {row}");
    assert_eq!(
        (row["model"].as_str(), row["usageSource"].as_str()),
        (Some(FAILING), Some("none")),
        "{row}"
    );
    assert_eq!(row["completionTokens"], 0, "{row}");
    assert_other_model_works(&stack, &app).await;
    stack.stop().await;
}

#[tokio::test]
async fn an_upstream_that_stalls_mid_stream_is_cut_off_and_the_row_keeps_the_tokens_so_far() {
    // The role chunk and two tokens, then nothing.
    let (stack, app) = failing_stack(Fault::StallAfter { frames: 3 }).await;
    let seen = match send_chat(stack.http(), &stack.gateway_url, &app.api_key, &chat(FAILING, 20, true)).await {
        Ok(seen) => seen,
        Err(e) => panic!(
            "a stream whose upstream stopped sending was not ended by the gateway ({e}); Envoy's timeouts: {}",
            configured_timeouts(&stack).await
        ),
    };
    assert_eq!(seen.status, 200, "{seen:?}");
    assert!(seen.broke, "the client sees a broken stream, not a clean end: {seen:?}");
    assert_eq!(seen.content_events(), 2, "{seen:?}");

    let row = row_of(&stack, &seen.request_id).await;
    assert_eq!(row["status"], 200, "{row}");
    assert!(has_flag(&row, &TIMED_OUT), "the row says it timed out: {row}");
    assert_eq!(row["usageSource"], "reported", "{row}");
    assert_eq!(
        (row["promptTokens"].as_u64(), row["completionTokens"].as_u64()),
        (Some(PROMPT_TOKENS), Some(2)),
        "{row}"
    );
    assert_other_model_works(&stack, &app).await;
    assert_client_stayed(&row);
    stack.stop().await;
}
