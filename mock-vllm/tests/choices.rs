//! Several choices in one reply, as vLLM sends them: `n > 1` for chat and completions, batched
//! prompts for completions, streamed (one choice per chunk, running usage per choice) and not.

mod common;

use std::collections::BTreeMap;

use common::{chunk_kind, chunks, post, state, state_with, MODEL};
use mock_vllm::{completion_text, MockConfig};
use serde_json::{json, Value};

fn chat(n: u32, max_tokens: u32) -> Value {
    json!({"model": MODEL, "n": n, "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": "你好, gateway"}]})
}

/// Per choice index: the text its chunks carry (content or text).
fn texts(chunks: &[Value]) -> BTreeMap<u64, String> {
    let mut texts = BTreeMap::new();
    for choice in chunks.iter().flat_map(|c| c["choices"].as_array().unwrap()) {
        let piece = choice["delta"]["content"].as_str().or(choice["text"].as_str()).unwrap_or("");
        texts.entry(choice["index"].as_u64().unwrap()).or_insert_with(String::new).push_str(piece);
    }
    texts
}

#[tokio::test]
async fn a_chat_reply_has_n_choices_and_sums_their_tokens() {
    let v = post(&state(), "/v1/chat/completions", &chat(3, 6)).await.json();
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (i, choice) in choices.iter().enumerate() {
        assert_eq!(choice["index"], i);
        assert_eq!(
            choice["message"]["content"],
            completion_text(6 - i),
            "choice {i} stops {i} tokens earlier"
        );
        assert_eq!(choice["finish_reason"], if i == 0 { "length" } else { "stop" });
    }
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 3, "total_tokens": 3 + 6 + 5 + 4, "completion_tokens": 15, "prompt_tokens_details": null})
    );
}

#[tokio::test]
async fn a_chat_stream_of_n_choices_carries_each_choice_s_running_usage() {
    let mut body = chat(2, 4);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true, "continuous_usage_stats": true});
    let chunks = chunks(&post(&state(), "/v1/chat/completions", &body).await);
    assert!(
        chunks.iter().all(|c| c["choices"].as_array().unwrap().len() <= 1),
        "one choice per chunk"
    );
    let kinds: Vec<(&str, Value)> =
        chunks.iter().map(|c| (chunk_kind(c), c["choices"][0]["index"].clone())).collect();
    assert_eq!(
        kinds[..2],
        [("first", json!(0)), ("first", json!(1))],
        "one role chunk per choice first"
    );
    let mut so_far = [0u64; 2];
    for chunk in &chunks[..chunks.len() - 1] {
        let choice = &chunk["choices"][0];
        let i = choice["index"].as_u64().unwrap() as usize;
        if chunk_kind(chunk) == "content" {
            so_far[i] += 1;
        }
        let usage = &chunk["usage"];
        assert_eq!(usage["prompt_tokens"], 3, "{chunk}");
        assert_eq!(usage["completion_tokens"], so_far[i], "that choice's tokens so far: {chunk}");
        assert_eq!(usage["total_tokens"], 3 + so_far[i]);
    }
    assert_eq!(so_far, [4, 3]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 3, "the prompt once");
    assert_eq!(last["usage"]["completion_tokens"], 7, "every choice");
    let plain = post(&state(), "/v1/chat/completions", &chat(2, 4)).await.json();
    for (i, text) in texts(&chunks) {
        assert_eq!(plain["choices"][i as usize]["message"]["content"], text.as_str());
    }
}

#[tokio::test]
async fn choices_are_interleaved_round_robin() {
    let mut body = chat(3, 3);
    body["stream"] = json!(true);
    let chunks = chunks(&post(&state(), "/v1/chat/completions", &body).await);
    let order: Vec<String> =
        chunks.iter().map(|c| format!("{} {}", chunk_kind(c), c["choices"][0]["index"])).collect();
    // Choice i has 3 - i tokens; each finishes in the round after its last token.
    let expected = [
        "first 0",
        "first 1",
        "first 2",
        "content 0",
        "content 1",
        "content 2",
        "content 0",
        "content 1",
        "finish 2",
        "content 0",
        "finish 1",
        "finish 0",
    ];
    assert_eq!(order, expected);
}

fn completions(prompt: Value, n: u32) -> Value {
    json!({"model": MODEL, "prompt": prompt, "n": n, "max_tokens": 3})
}

#[tokio::test]
async fn a_batch_of_prompts_gets_choices_for_every_prompt_times_n() {
    for prompt in [json!(["one two", "three four five"]), json!([[1, 2], [3, 4, 5]])] {
        let v = post(&state(), "/v1/completions", &completions(prompt.clone(), 2)).await.json();
        let choices = v["choices"].as_array().unwrap();
        let got: Vec<(u64, String)> = choices
            .iter()
            .map(|c| (c["index"].as_u64().unwrap(), c["text"].as_str().unwrap().to_owned()))
            .collect();
        let expected = [
            (0, completion_text(3)),
            (1, completion_text(2)),
            (2, completion_text(3)),
            (3, completion_text(2)),
        ];
        assert_eq!(got, expected, "index = prompt * n + output ({prompt})");
        assert_eq!(v["usage"]["prompt_tokens"], 2 + 3, "each prompt once");
        assert_eq!(v["usage"]["completion_tokens"], 3 + 2 + 3 + 2);
    }
    let one = post(&state(), "/v1/completions", &completions(json!(["only one"]), 1)).await.json();
    assert_eq!(one["choices"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_streamed_batch_carries_each_choice_s_prompt_and_tokens() {
    let mut body = completions(json!(["one two", "three four five"]), 2);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true, "continuous_usage_stats": true});
    let chunks = chunks(&post(&state(), "/v1/completions", &body).await);
    let mut so_far = [0u64; 4];
    for chunk in &chunks[..chunks.len() - 1] {
        let choice = &chunk["choices"][0];
        let i = choice["index"].as_u64().unwrap() as usize;
        if choice["finish_reason"].is_null() {
            so_far[i] += 1;
        }
        let usage = &chunk["usage"];
        assert_eq!(usage["prompt_tokens"], if i < 2 { 2 } else { 3 }, "the prompt of choice {i}");
        assert_eq!(usage["completion_tokens"], so_far[i]);
    }
    assert_eq!(so_far, [3, 2, 3, 2]);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(
        (usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64()),
        (Some(5), Some(10))
    );
    let plain =
        post(&state(), "/v1/completions", &completions(json!(["one two", "three four five"]), 2))
            .await
            .json();
    for (i, text) in texts(&chunks) {
        assert_eq!(plain["choices"][i as usize]["text"], text.as_str());
    }
}

#[tokio::test]
async fn several_choices_split_at_random_bytes_are_the_same_stream() {
    let mut body = completions(json!(["a b", "c"]), 3);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let whole = chunks(&post(&state(), "/v1/completions", &body).await);
    let split = post(
        &state_with(MockConfig { split_seed: Some(9), ..MockConfig::default() }),
        "/v1/completions",
        &body,
    )
    .await;
    assert!(split.frames.len() > whole.len() + 1);
    assert_eq!(texts(&chunks(&split)), texts(&whole));
}

#[tokio::test]
async fn n_below_one_and_a_batch_over_the_window_are_400() {
    let reply = post(&state(), "/v1/chat/completions", &chat(0, 3)).await;
    assert_eq!(reply.status, 400);
    let state = state_with(MockConfig { max_model_len: 10, ..MockConfig::default() });
    let body = completions(json!(["short", "word ".repeat(10)]), 1);
    assert_eq!(post(&state, "/v1/completions", &body).await.status, 400);
}
