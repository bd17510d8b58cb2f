//! What issue 12 added to the pure core, run natively and as wasm like the rest of `wasm_core`:
//! the JSON scanner, bodies of any size, streams with `n` choices and Responses API events, and a
//! caller's stream kept byte for byte.

use vllm_gateway_filter::json_scan::JsonScanner;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test;

use super::*;

#[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), test)]
fn the_json_scanner_keeps_only_top_level_usage_at_every_split() {
    const PATHS: &[&[&str]] = &[&["usage"]];
    let doc = "{\"choices\":[{\"usage\":1,\"text\":\"\\\"usage\\\": é 你好\"}],\"us\\u0061ge\":{\"prompt_tokens\":3}}";
    for_every_split(doc.as_bytes(), |chunks, how| {
        let mut scanner = JsonScanner::new(PATHS, 1024);
        for chunk in chunks {
            scanner.feed(chunk);
        }
        let scan = scanner.finish();
        assert_eq!(scan.value(0), Some(&br#"{"prompt_tokens":3}"#[..]), "{how}");
    });
}

#[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), test)]
fn a_huge_body_with_logprobs_before_its_usage_counts_exactly() {
    let entry = r#"{"token":"é\"x","logprob":-0.25,"bytes":[195,169],"top_logprobs":[]},"#;
    let mut body = String::from(r#"{"choices":[{"text":"x","logprobs":{"content":["#);
    while body.len() < 4 << 20 {
        body.push_str(entry);
    }
    body.push_str(
        r#"null]}}],"usage":{"prompt_tokens":3,"total_tokens":10,"completion_tokens":7}}"#,
    );
    let accounting = count_body(body.as_bytes(), 16 * 1024 + 1);
    assert_eq!(
        accounting.usage,
        Usage { prompt_tokens: 3, completion_tokens: 7, total_tokens: 10 }
    );
}

#[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), test)]
fn n_choices_and_responses_streams_count_at_every_split() {
    let chunk = |i: u32, c: u32| {
        format!("data: {{\"choices\":[{{\"index\":{i},\"delta\":{{\"content\":\"x\"}}}}],\"usage\":{{\"prompt_tokens\":7,\"total_tokens\":{},\"completion_tokens\":{c}}}}}\n\n", 7 + c)
    };
    let chat = [chunk(0, 1), chunk(1, 1), chunk(2, 1), chunk(0, 2), chunk(1, 2)].concat();
    for_every_split(chat.as_bytes(), |chunks, how| {
        assert_eq!(
            count_stream_as(PromptLayout::Single, chunks).usage,
            Usage { prompt_tokens: 7, completion_tokens: 5, total_tokens: 12 },
            "{how}"
        );
    });
    let responses = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hé\"}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"output\":[{\"usage\":1}],\"usage\":{\"input_tokens\":8,\"output_tokens\":2,\"total_tokens\":10}}}\n\n";
    for_every_split(responses.as_bytes(), |chunks, how| {
        assert_eq!(
            count_stream(chunks).usage,
            Usage { prompt_tokens: 8, completion_tokens: 2, total_tokens: 10 },
            "{how}"
        );
    });
}

#[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), wasm_bindgen_test)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), test)]
fn null_usage_from_an_upstream_reaches_a_caller_that_asked_for_usage_byte_for_byte() {
    let ask = UsageAsk { include_usage: true, continuous: false };
    for stream in [OPENAI_STREAM, OPENAI_TOOL_STREAM] {
        for_every_split(stream, |chunks, how| assert_eq!(rewrite_in(chunks, ask), stream, "{how}"));
    }
}
