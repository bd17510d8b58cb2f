//! Token limits: a daily budget lowers `max_tokens` to what remains (the upstream sees the
//! lowered value) and refuses with `insufficient_quota` only what cannot fit; the admin API's
//! `limitUsage` agrees with the access log. An upstream that ignores `max_tokens`: a
//! non-streamed reply is charged as it was; a stream is cut off at its grant with an OpenAI
//! error event, its row marked, and the upstream request reset. A limit on one model leaves the
//! other alone.

use std::time::Duration;

use gateway_e2e::eventually;
use gateway_stack::Stack;
use mock_vllm::Fault;
use serde_json::{json, Value};

use super::support::{
    assert_limited, assert_rate_headers, burst_held, chat, header_number, limited_total,
    noon_time_zone, prometheus_sum, rows_of, send, split, stack, total_tokens, upstream_max_tokens,
    Reply, MODEL, OTHER, WAIT,
};

/// The daily budget of the budget test.
const BUDGET: i64 = 100;

/// What the upstream generates when it ignores `max_tokens`.
const OVERRUN: u32 = 200;

/// Asserts that `limitUsage` of `tokens_per_day` agrees with the access log's `rows`: the
/// ledger counts at least what was used (units leased and not spent yet come on top, never past
/// the limit unless a reply overran its grant), and `remaining` is what is left of the limit.
async fn assert_usage_matches_rows(stack: &Stack, app: i64, limit: i64, rows: &[Value]) -> Value {
    let logged = total_tokens(rows);
    // An overrun is charged when the Envoy next reports to the ledger: wait for it.
    let caught_up = eventually("the ledger counting every token the rows show", WAIT, || async {
        let standing = stack.limit_standing(app, false, "tokens_per_day", None).await?;
        Ok((standing["used"].as_i64().unwrap_or(0) >= logged).then_some(standing))
    })
    .await;
    let standing = match caught_up {
        Ok(standing) => standing,
        Err(e) => panic!(
            "{e}: rows {logged}, {:?}",
            stack.limit_standing(app, false, "tokens_per_day", None).await
        ),
    };
    let used = standing["used"].as_i64().unwrap();
    assert_eq!(standing["limit"], limit, "{standing}");
    assert!(used >= logged, "the ledger counts every token the rows show ({logged}): {standing}");
    assert!(
        used <= limit.max(logged),
        "nothing beyond the limit but real overruns ({logged}): {standing}"
    );
    assert_eq!(standing["remaining"], (limit - used).max(0), "{standing}");
    assert!(standing["windowStart"].is_string() && standing["windowEnd"].is_string(), "{standing}");
    standing
}

#[tokio::test]
async fn a_daily_budget_lowers_max_tokens_to_what_remains_and_refuses_what_cannot_fit() {
    let stack = stack().await;
    let limits = json!({"tokensPerDay": BUDGET, "timeZone": noon_time_zone()});
    let app = stack.create_app_with_limits("budget", limits).await.unwrap();
    let mock = &stack.mock(MODEL).state;
    let post = |body: Value| {
        let (stack, key) = (&stack, app.api_key.clone());
        async move { send(stack.http(), &stack.gateway_url, &key, &body).await }
    };

    // A prompt larger than the whole budget cannot fit.
    let long_prompt = "budget ".repeat(300);
    let huge = json!({"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": long_prompt}]});
    let refused = post(huge).await;
    assert_limited(&refused, "insufficient_quota", "day", "tokens");
    assert_eq!(refused.json()["error"]["type"], "insufficient_quota", "{refused:?}");
    assert!(mock.seen().is_empty(), "a refused request never reaches the upstream");

    // Room enough: passed as asked.
    let first = post(chat(MODEL, 30, false)).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_rate_headers(&first, "tokens");
    assert_eq!(upstream_max_tokens(&mock.seen()[0]), Some(30));
    let mut spent = first.json()["usage"]["total_tokens"].as_i64().unwrap();

    // More than remains: lowered (max_completion_tokens too), and the reply is what was granted.
    let mut asks_much = chat(MODEL, 500, false);
    asks_much["max_completion_tokens"] = json!(500);
    let mut lowered = Vec::new();
    let mut last: Option<Reply> = None;
    for _ in 0..20 {
        mock.clear_seen();
        let reply = post(asks_much.clone()).await;
        if reply.status != 200 {
            last = Some(reply);
            break;
        }
        let seen = upstream_max_tokens(&mock.seen()[0]).unwrap();
        assert!(
            seen < 500 && seen as i64 <= BUDGET - spent,
            "lowered to at most what remains ({spent} spent): {seen}"
        );
        assert_eq!(reply.json()["usage"]["completion_tokens"], seen, "{reply:?}");
        spent += reply.json()["usage"]["total_tokens"].as_i64().unwrap();
        lowered.push(seen);
    }
    assert!(!lowered.is_empty(), "a request asking more than remains is lowered, not refused");
    let exhausted = last.expect("the budget runs out");
    assert_limited(&exhausted, "insufficient_quota", "day", "tokens");
    assert_eq!(header_number(&exhausted, "x-ratelimit-limit-tokens"), Some(BUDGET as u64));

    let rows = rows_of(&stack, app.id, false, lowered.len() + 3).await;
    let refused_rows: Vec<_> = rows.iter().filter(|r| r["status"] == 429).collect();
    assert_eq!(refused_rows.len(), 2, "{rows:#?}");
    assert!(refused_rows.iter().all(|r| r["limited"] == "tokens_per_day"), "{refused_rows:#?}");
    let served: Vec<Value> = rows.iter().filter(|r| r["status"] == 200).cloned().collect();
    assert!(total_tokens(&served) <= BUDGET, "admitted tokens stay within the budget: {served:#?}");
    assert_usage_matches_rows(&stack, app.id, BUDGET, &served).await;
    assert_eq!(limited_total(stack.envoy_admin, "tokens_per_day", 2.0).await, 2.0);
    stack.stop().await;
}

#[tokio::test]
async fn a_non_streamed_reply_past_its_grant_is_charged_as_it_was() {
    let stack = stack().await;
    let limits = json!({"tokensPerDay": 1000, "timeZone": noon_time_zone()});
    let app = stack.create_app_with_limits("overrun", limits).await.unwrap();
    stack.mock(MODEL).state.set_fault(Fault::IgnoreMaxTokens { tokens: OVERRUN });
    let reply = send(stack.http(), &stack.gateway_url, &app.api_key, &chat(MODEL, 20, false)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.json()["usage"]["completion_tokens"],
        OVERRUN,
        "the reply passes as the upstream sent it"
    );

    let rows = rows_of(&stack, app.id, false, 1).await;
    let row = &rows[0];
    assert_eq!(
        (row["completionTokens"].as_u64(), row["cutOff"].as_bool()),
        (Some(u64::from(OVERRUN)), Some(false)),
        "{row}"
    );
    let standing = assert_usage_matches_rows(&stack, app.id, 1000, &rows).await;
    assert!(
        standing["used"].as_i64().unwrap() >= i64::from(OVERRUN),
        "the overrun is charged: {standing}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_stream_past_its_grant_is_cut_off_with_an_error_event_and_the_upstream_request_is_reset()
{
    let stack = stack().await;
    let limits = json!({"tokensPerDay": 100_000, "timeZone": noon_time_zone()});
    let app = stack.create_app_with_limits("cut-off", limits).await.unwrap();
    let mock = &stack.mock(MODEL).state;
    mock.set_fault(Fault::IgnoreMaxTokens { tokens: OVERRUN });
    // Slow enough that the upstream is still generating when the gateway resets it.
    mock.set_token_delay(Duration::from_millis(10));
    const GRANTED: u64 = 50;
    let reply =
        send(stack.http(), &stack.gateway_url, &app.api_key, &chat(MODEL, GRANTED, true)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let events = reply.events();
    let error = &events.last().expect("events")["error"];
    assert!(
        error["message"].is_string() && error["type"].is_string() && error["code"].is_string(),
        "the stream ends with an OpenAI error event: {}",
        reply.body
    );
    let received = reply.content_events() as u64;
    assert!(
        (GRANTED..=GRANTED + 1).contains(&received),
        "cut within one chunk of the grant: {received} tokens reached the client: {}",
        reply.body
    );
    assert_eq!(upstream_max_tokens(&mock.seen()[0]), Some(GRANTED));

    let rows = rows_of(&stack, app.id, false, 1).await;
    let row = &rows[0];
    assert_eq!(row["cutOff"], true, "{row}");
    assert_eq!(row["limited"], "tokens_per_day", "{row}");
    assert_eq!(row["usageSource"], "reported", "{row}");
    // What the client got, and at most the chunk that came before the upstream was reset.
    let completion = row["completionTokens"].as_u64().unwrap();
    assert!(
        (received..=received + 1).contains(&completion),
        "the row counts what was generated ({received} sent on): {row}"
    );
    let abandoned = eventually("the upstream seeing its request reset", WAIT, || async {
        let abandoned = mock.abandoned_streams();
        Ok((!abandoned.is_empty()).then_some(abandoned))
    })
    .await
    .unwrap();
    assert_eq!(abandoned.len(), 1, "{abandoned:?}");
    assert!(
        (completion..u64::from(OVERRUN)).contains(&u64::from(abandoned[0])),
        "the upstream stopped before its end: {abandoned:?}"
    );
    let cut = prometheus_sum(
        stack.envoy_admin,
        "vllm_gateway_cut_off_total",
        "reason=\"tokens_per_day\"",
    )
    .await;
    assert_eq!(cut, 1.0, "vllm_gateway_cut_off_total counts the cut");
    stack.stop().await;
}

#[tokio::test]
async fn a_limit_on_one_model_leaves_the_other_unaffected() {
    let stack = stack().await;
    let limits = json!({"models": {MODEL: {"concurrentRequests": 2}}});
    let app = stack.create_app_with_limits("per-model", limits).await.unwrap();
    let (limited, held) = burst_held(&stack, &app.api_key, MODEL, 10).await;
    assert_eq!((held, split(&limited)), (2, (2, 8)), "the limited model admits its limit");
    for refused in limited.iter().filter(|r| r.status == 429) {
        assert_limited(refused, "rate_limit_exceeded", "concurrent", "requests");
    }
    let (free, held) = burst_held(&stack, &app.api_key, OTHER, 10).await;
    assert_eq!((held, split(&free)), (10, (10, 0)), "the other model is not limited");
    let usage = stack.limit_usage(app.id, false).await.unwrap();
    assert_eq!(usage.len(), 1, "{usage:?}");
    assert_eq!(
        (&usage[0]["kind"], &usage[0]["model"]),
        (&json!("concurrent_requests"), &json!(MODEL)),
        "{usage:?}"
    );
    stack.stop().await;
}
