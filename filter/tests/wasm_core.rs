//! The filter's pure core through its public API, run natively (`cargo test`) and compiled to
//! `wasm32-unknown-unknown` under Node with `wasm-bindgen-test` (`cargo xtask test`), so that what
//! Envoy runs — the same code as wasm — is checked too: the SSE parser, the JSON scanner and usage
//! accounting over the recorded streams in `shared/fixtures` split at every byte boundary, the
//! stream rewriter, key lookup, credentials, request bodies, plugin configuration and error
//! bodies.

use serde_json::{json, Value};
use vllm_gateway_filter::config::PluginConfig;
use vllm_gateway_filter::credential::{self, Credential};
use vllm_gateway_filter::error::GatewayError;
use vllm_gateway_filter::feed::hash_key;
use vllm_gateway_filter::inject::{StreamRewriter, UsageAsk};
use vllm_gateway_filter::keys::KeyState;
use vllm_gateway_filter::request_body;
use vllm_gateway_filter::sse::{SseParser, SsePiece};
use vllm_gateway_filter::usage::{
    Accounting, BodyAccounting, PromptLayout, StreamAccounting, Usage, UsageSource,
};
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test;

#[path = "wasm_core/accounting.rs"]
mod accounting;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/", $name))
    };
}

const VLLM_STREAM: &[u8] = fixture!("vllm-chat-stream-include-usage.sse");
const OPENAI_STREAM: &[u8] = fixture!("openai-chat-stream-usage.sse");
const OPENAI_TOOL_STREAM: &[u8] = fixture!("openai-chat-stream-tool-call-usage.sse");
const RECORDED_STREAMS: [&[u8]; 3] = [VLLM_STREAM, OPENAI_STREAM, OPENAI_TOOL_STREAM];

/// Calls `check` with the stream cut in two at every byte boundary, then byte by byte.
fn for_every_split(stream: &[u8], mut check: impl FnMut(&[&[u8]], &str)) {
    for cut in 0..=stream.len() {
        let (a, b) = stream.split_at(cut);
        check(&[a, b], &format!("split at {cut}"));
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    check(&bytes, "byte by byte");
}

/// The recording's events (blank-line separated), read without the parser.
fn events_of(stream: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(stream).unwrap();
    text.split("\n\n").filter(|e| !e.is_empty()).map(str::to_owned).collect()
}

/// The `data` of every event of a recording, read without the parser.
fn data_of(stream: &[u8]) -> Vec<String> {
    events_of(stream).iter().map(|e| e.strip_prefix("data: ").unwrap().to_owned()).collect()
}

/// The usage object of the recording's last event that has one, read without the parser.
fn reported_usage_of(stream: &[u8]) -> Usage {
    let last = data_of(stream).into_iter().rfind(|d| d.contains("\"usage\":{")).unwrap();
    let document: Value = serde_json::from_str(&last).unwrap();
    serde_json::from_value(document["usage"].clone()).unwrap()
}

fn parse_in(chunks: &[&[u8]]) -> Vec<String> {
    let mut parser = SseParser::default();
    let (mut out, mut data) = (Vec::new(), Vec::new());
    let mut take = |piece: SsePiece, data: &mut Vec<u8>| match piece {
        SsePiece::Data(bytes) => data.extend_from_slice(bytes),
        SsePiece::End => out.push(String::from_utf8(std::mem::take(data)).unwrap()),
    };
    for chunk in chunks {
        parser.feed(chunk);
        while let Some(piece) = parser.next() {
            take(piece, &mut data);
        }
    }
    if let Some(piece) = parser.finish() {
        take(piece, &mut data);
    }
    out
}

fn count_stream(chunks: &[&[u8]]) -> Accounting {
    count_stream_as(PromptLayout::default(), chunks)
}

fn count_stream_as(layout: PromptLayout, chunks: &[&[u8]]) -> Accounting {
    let mut accounting = StreamAccounting::new(layout);
    for chunk in chunks {
        accounting.feed(chunk);
    }
    accounting.finish()
}

fn count_body(body: &[u8], chunk: usize) -> Accounting {
    let mut accounting = BodyAccounting::new();
    for piece in body.chunks(chunk) {
        accounting.feed(piece);
    }
    accounting.finish()
}

fn rewrite_in(chunks: &[&[u8]], ask: UsageAsk) -> Vec<u8> {
    let mut rewriter = StreamRewriter::new(ask);
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend(rewriter.feed(chunk));
    }
    out.extend(rewriter.finish());
    out
}

#[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), test)]
fn the_parser_reads_every_recorded_stream_the_same_at_every_split() {
    for stream in RECORDED_STREAMS {
        let expected = data_of(stream);
        assert_eq!(expected.last().map(String::as_str), Some("[DONE]"));
        for_every_split(stream, |chunks, how| assert_eq!(parse_in(chunks), expected, "{how}"));
    }
}

#[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), test)]
fn the_parser_takes_crlf_comments_and_split_characters() {
    let stream = ": keep-alive\r\n\r\ndata: {\"t\":\"你好🚀\"}\r\n\r\nevent: x\rdata: a\rdata: b\r\rdata: [DONE]\n\n";
    for_every_split(stream.as_bytes(), |chunks, how| {
        assert_eq!(parse_in(chunks), ["{\"t\":\"你好🚀\"}", "a\nb", "[DONE]"], "{how}");
    });
    assert_eq!(parse_in(&[b"data: tail"]), ["tail"], "finish flushes an unterminated event");
}

#[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), test)]
fn the_parser_streams_a_huge_event_without_holding_it() {
    let mut parser = SseParser::new();
    parser.feed(b"data: ");
    let mut data = 0;
    for _ in 0..1000 {
        parser.feed(&[b'x'; 1000]);
        while let Some(piece) = parser.next() {
            if let SsePiece::Data(bytes) = piece {
                data += bytes.len();
            }
        }
        assert_eq!(parser.buffered_bytes(), 0);
    }
    parser.feed(b"\n\ndata: after\n\n");
    assert_eq!(parser.next(), Some(SsePiece::End));
    assert_eq!(parser.next(), Some(SsePiece::Data(b"after")));
    assert_eq!(parser.next(), Some(SsePiece::End));
    assert_eq!(data, 1_000_000);
}

#[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), test)]
fn every_recorded_stream_counts_its_reported_usage_at_every_split() {
    for stream in RECORDED_STREAMS {
        let expected = reported_usage_of(stream);
        assert!(expected.total_tokens > 0);
        for_every_split(stream, |chunks, how| {
            let accounting = count_stream(chunks);
            assert_eq!(accounting.usage, expected, "{how}");
            assert_eq!(accounting.source, UsageSource::Reported, "{how}");
            assert_eq!(accounting.error, None, "{how}");
        });
    }
}

#[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), test)]
fn the_vllm_recording_reports_its_exact_usage() {
    let expected = Usage { prompt_tokens: 46, completion_tokens: 14, total_tokens: 60 };
    assert_eq!(count_stream(&[VLLM_STREAM]).usage, expected);
}

#[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), test)]
fn a_stream_without_usage_is_estimated_from_its_content_chunks() {
    let no_usage: String = events_of(VLLM_STREAM)
        .into_iter()
        .filter(|e| !e.contains("\"usage\""))
        .map(|e| e + "\n\n")
        .collect();
    let accounting = count_stream(&[no_usage.as_bytes()]);
    assert_eq!(accounting.source, UsageSource::Estimated);
    assert_eq!(
        accounting.usage,
        Usage { prompt_tokens: 0, completion_tokens: 13, total_tokens: 13 }
    );
}

#[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), test)]
fn an_error_mid_stream_is_seen_in_both_shapes() {
    let nested = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"boom\",\"type\":\"InternalServerError\",\"param\":null,\"code\":500}}\n\ndata: [DONE]\n\n";
    let accounting = count_stream(&[nested]);
    assert_eq!(accounting.error.unwrap().kind, "InternalServerError");
    assert_eq!(accounting.source, UsageSource::Estimated);
    let flat = b"data: {\"object\":\"error\",\"message\":\"m\",\"type\":\"BadRequestError\",\"param\":null,\"code\":400}\n\n";
    assert_eq!(count_stream(&[flat]).error.unwrap().kind, "BadRequestError");
}

#[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), test)]
fn recorded_bodies_report_their_usage() {
    let chat = count_body(fixture!("vllm-chat.json"), 7);
    assert_eq!(chat.usage, Usage { prompt_tokens: 12, completion_tokens: 100, total_tokens: 112 });
    assert_eq!(chat.source, UsageSource::Reported);
    for body in [&fixture!("vllm-completions.json")[..], &fixture!("vllm-embeddings.json")[..]] {
        let recorded: Value = serde_json::from_slice(body).unwrap();
        let accounting = count_body(body, 3);
        assert_eq!(
            accounting.usage.prompt_tokens,
            recorded["usage"]["prompt_tokens"].as_u64().unwrap()
        );
        assert_eq!(
            accounting.usage.total_tokens,
            recorded["usage"]["total_tokens"].as_u64().unwrap()
        );
    }
    let error = count_body(fixture!("vllm-error.json"), 5);
    assert_eq!(error.error.unwrap().kind, "BadRequestError");
    assert_eq!(error.source, UsageSource::None);
    assert_eq!(count_body(b"<html>oops", 1).source, UsageSource::None);
}

/// The vLLM recording as vLLM sends it when asked for continuous usage: a running `usage` on
/// every chunk that has choices, and the usage-only chunk last.
fn with_continuous_usage(stream: &[u8]) -> Vec<u8> {
    let mut generated = 0;
    let mut out = String::new();
    for event in events_of(stream) {
        match event
            .strip_prefix("data: ")
            .filter(|e| e.starts_with('{') && !e.contains("\"usage\""))
        {
            Some(json) => {
                generated += 1;
                let usage = format!("\"usage\":{{\"prompt_tokens\":46,\"total_tokens\":{},\"completion_tokens\":{generated}}}", 46 + generated);
                out += &format!("data: {},{usage}}}", json.strip_suffix('}').unwrap());
            }
            None => out += &event,
        }
        out += "\n\n";
    }
    out.into_bytes()
}

#[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), test)]
fn a_caller_that_asked_nothing_gets_no_usage_at_any_split() {
    let upstream = with_continuous_usage(VLLM_STREAM);
    let expected: String = events_of(VLLM_STREAM)
        .into_iter()
        .filter(|e| !e.contains("\"usage\""))
        .map(|e| e + "\n\n")
        .collect();
    assert!(!expected.contains("usage") && expected.ends_with("data: [DONE]\n\n"));
    for_every_split(&upstream, |chunks, how| {
        assert_eq!(rewrite_in(chunks, UsageAsk::default()), expected.as_bytes(), "{how}");
    });
}

#[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), test)]
fn a_caller_that_asked_for_usage_gets_exactly_what_it_asked_for_at_any_split() {
    let upstream = with_continuous_usage(VLLM_STREAM);
    let final_only = UsageAsk { include_usage: true, continuous: false };
    let continuous = UsageAsk { include_usage: true, continuous: true };
    for_every_split(&upstream, |chunks, how| {
        assert_eq!(rewrite_in(chunks, final_only), VLLM_STREAM, "{how}");
        assert_eq!(rewrite_in(chunks, continuous), upstream, "{how}");
    });
}

#[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), test)]
fn what_the_caller_asked_is_read_from_stream_options() {
    let ask = |mut body: Value| {
        body["model"] = json!("m");
        UsageAsk::of(&vllm_gateway_filter::request_body::read(body.to_string().as_bytes()).unwrap())
    };
    assert_eq!(ask(json!({})), UsageAsk::default());
    assert_eq!(
        ask(json!({"stream_options": {"include_usage": true}})),
        UsageAsk { include_usage: true, continuous: false }
    );
    assert_eq!(
        ask(json!({"stream_options": {}})),
        UsageAsk { include_usage: true, continuous: false },
        "vLLM's default"
    );
    assert_eq!(
        ask(json!({"stream_options": {"continuous_usage_stats": true}})),
        UsageAsk { include_usage: true, continuous: true }
    );
    assert_eq!(ask(json!({"stream_options": {"include_usage": null}})), UsageAsk::default());
    let everything =
        ask(json!({"stream_options": {"include_usage": true, "continuous_usage_stats": true}}));
    assert!(!everything.needs_rewrite());
    assert!(UsageAsk::default().needs_rewrite());
}

#[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), test)]
fn keys_are_looked_up_by_their_sha256() {
    assert_eq!(hash_key("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    let feed = json!({"version": 1, "keys": [
        {"hash": hash_key("sk-live-ok"), "appId": 1, "keyId": 10, "status": "enabled", "expiresAt": null},
        {"hash": hash_key("sk-live-off"), "appId": 2, "keyId": 20, "status": "disabled", "expiresAt": null},
        {"hash": hash_key("sk-live-old").to_uppercase(), "appId": 3, "keyId": 30, "status": "enabled", "expiresAt": 100}
    ]});
    let state = KeyState::parse(feed.to_string().as_bytes()).unwrap();
    assert_eq!(state.len(), 3);
    assert_eq!(state.authorize("sk-live-ok", 50).unwrap().app_id, 1);
    assert_eq!(state.authorize("sk-live-off", 50), Err(GatewayError::AppDisabled));
    assert_eq!(state.authorize("sk-live-old", 99).unwrap().key_id, 30);
    assert_eq!(state.authorize("sk-live-old", 100), Err(GatewayError::ExpiredCredential));
    assert_eq!(state.authorize("sk-live-nope", 0), Err(GatewayError::InvalidCredential));
    assert!(KeyState::parse(b"{}").is_err());
    assert!(KeyState::parse(br#"{"keys":[]}"#).unwrap().is_empty());
}

#[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), test)]
fn credentials_are_found_and_stripped() {
    assert_eq!(
        credential::find(Some("Bearer sk-live-a"), "/v1/models?token=other"),
        Some(Credential::Header("sk-live-a".into()))
    );
    assert_eq!(
        credential::find(Some("bearer   sk-live-b  "), "/v1/x").unwrap().token(),
        "sk-live-b"
    );
    assert_eq!(
        credential::find(None, "/v1/chat/completions?a=1&token=ab%2Ecd"),
        Some(Credential::Query("ab.cd".into()))
    );
    assert_eq!(credential::find(Some("Basic dXNlcg=="), "/v1/x?token=t").unwrap().token(), "t");
    assert_eq!(credential::find(Some("Bearer "), "/v1/models?token="), None);
    assert_eq!(credential::find(None, "/v1/models?tokens=x"), None);
    assert_eq!(
        credential::strip_token_param("/v1/x?a=1&token=a&b=2"),
        Some("/v1/x?a=1&b=2".into())
    );
    assert_eq!(credential::strip_token_param("/v1/x?token=a&token=b"), Some("/v1/x".into()));
    assert_eq!(credential::strip_token_param("/v1/x?to%6Ben=a&c=3"), Some("/v1/x?c=3".into()));
    assert_eq!(credential::strip_token_param("/v1/x?a=1"), None);
}

#[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), test)]
fn request_bodies_give_model_and_stream_flags() {
    let facts = request_body::read(
        br#"{"model":"qwen","stream":true,"stream_options":{"include_usage":true}}"#,
    )
    .unwrap();
    assert_eq!((facts.model.as_str(), facts.stream, facts.include_usage), ("qwen", true, true));
    let facts =
        request_body::read("{\"model\":\"模型\",\"stream\":null,\"n\":3}".as_bytes()).unwrap();
    assert_eq!(
        (facts.model.as_str(), facts.stream, facts.include_usage, facts.n),
        ("模型", false, false, 3)
    );
    for bad in [
        r#"{"model":"m","stream":"true"}"#,
        r#"{"model":"m","stream":1}"#,
        r#"{"model":"m","stream_options":[]}"#,
    ] {
        let e = request_body::read(bad.as_bytes()).unwrap_err();
        assert_eq!((e.status(), e.code()), (400, "invalid_type"), "{bad}");
    }
    assert!(matches!(request_body::read(b"{bad"), Err(GatewayError::BadJson(_))));
    assert!(matches!(request_body::read(b"[1]"), Err(GatewayError::BadJson(_))));
    assert_eq!(request_body::read(br#"{"model":7}"#), Err(GatewayError::MissingModel));
    assert_eq!(request_body::read(br#"{"model":""}"#), Err(GatewayError::MissingModel));
}

#[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), test)]
fn plugin_config_fills_defaults_and_names_the_wrong_field() {
    let valid = json!({
        "models": {"qwen": {"cluster": "model_qwen"}},
        "state": {"cluster": "control_plane", "token": "0123456789abcdef0123"}
    });
    let config = PluginConfig::parse(valid.to_string().as_bytes()).unwrap();
    assert_eq!(config.cluster_header, "x-gateway-cluster");
    assert_eq!(config.state.path, "/internal/state");
    assert_eq!(config.route("qwen").unwrap().cluster, "model_qwen");
    let error_of = |change: fn(&mut Value)| {
        let mut config = valid.clone();
        change(&mut config);
        PluginConfig::parse(config.to_string().as_bytes()).unwrap_err().0
    };
    assert_eq!(
        error_of(|c| c["models"]["qwen"]["cluster"] = "".into()),
        "models.qwen.cluster: must not be empty"
    );
    assert!(error_of(|c| c["state"]["refresh_ms"] = 5.into()).starts_with("state.refresh_ms:"));
    assert!(error_of(|c| c["modles"] = json!({})).contains("unknown field `modles`"));
    assert_eq!(
        error_of(|c| c["endpoints"] = json!(["/v1/a", "/v1/b", "/v2/c"])),
        "endpoints[2]: must start with /v1/"
    );
    assert_eq!(
        error_of(|c| c["endpoints"] = json!(["/v1/a", "/v1/a"])),
        "endpoints[1]: duplicate of endpoints[0]"
    );
    assert!(config.forwards("/v1/responses") && !config.forwards("/v1/load_lora_adapter"));
    assert!(PluginConfig::parse(b"not json").is_err());
}

#[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), test)]
fn error_bodies_are_openai_shaped() {
    let all = [
        GatewayError::MissingCredential,
        GatewayError::InvalidCredential,
        GatewayError::ExpiredCredential,
        GatewayError::AppDisabled,
        GatewayError::NotReady,
        GatewayError::BadJson("eof".into()),
        GatewayError::MissingModel,
        GatewayError::UnknownModel("gpt-\"x\"".into()),
        GatewayError::BodyTooLarge(10),
        GatewayError::UnknownPath("/v1/nope".into()),
        GatewayError::InvalidType {
            param: "stream",
            message: "`stream` must be a boolean or null.".into(),
        },
    ];
    for e in all {
        let body: Value = serde_json::from_slice(&e.body()).unwrap();
        let error = body["error"].as_object().unwrap();
        assert_eq!(error.len(), 4, "{body}");
        assert!(error["message"].is_string());
        assert_eq!(error["type"], e.kind());
        assert_eq!(error["code"], e.code());
        assert!(error.contains_key("param"));
    }
    let unknown: Value =
        serde_json::from_slice(&GatewayError::UnknownModel("m".into()).body()).unwrap();
    assert_eq!(
        unknown,
        json!({"error": {
            "message": "The model `m` does not exist.", "type": "invalid_request_error", "param": "model", "code": "model_not_found"
        }})
    );
    assert_eq!(GatewayError::NotReady.status(), 503);
}
