//! Streams built in the shapes vLLM writes (`serving_chat.py`, `serving_completion.py`,
//! `serving_responses.py`), cut at every byte boundary and checked against an oracle that knows
//! where in the stream each report ends.

use std::collections::BTreeMap;

use super::*;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// What one event reports, for the oracle.
#[derive(Clone, Copy)]
enum Fact {
    /// Running usage of one choice (`index`, prompt tokens, completion tokens so far).
    Choice(u64, u64, u64),
    /// The whole request's usage.
    Total(Usage),
    /// Generated content without usage.
    Content,
}

/// A stream and, per event, where its report is complete (an offset into the stream) and what
/// it says.
struct Built {
    bytes: Vec<u8>,
    facts: Vec<(usize, Fact)>,
}

impl Built {
    fn new() -> Self {
        Self { bytes: Vec::new(), facts: Vec::new() }
    }

    /// Appends an event with its reports, each complete where the text `marker` ends.
    fn event(&mut self, text: &str, facts: &[(&str, Fact)]) {
        for (marker, fact) in facts {
            let at = text.rfind(marker).unwrap() + marker.len();
            self.facts.push((self.bytes.len() + at, *fact));
        }
        self.bytes.extend_from_slice(text.as_bytes());
    }

    /// What the stream cut after `cut` bytes must count, with `prompt_of` mapping choices to
    /// prompts.
    fn expected(&self, cut: usize, prompt_of: impl Fn(u64) -> u64) -> (Usage, UsageSource) {
        let seen = self.facts.iter().filter(|(end, _)| *end <= cut).map(|(_, f)| *f);
        let mut total = None;
        let (mut completions, mut prompts, mut content) = (BTreeMap::new(), BTreeMap::new(), 0);
        for fact in seen {
            match fact {
                Fact::Total(usage) => total = Some(usage),
                Fact::Choice(index, prompt, completion) => {
                    completions.insert(index, completion);
                    prompts.insert(prompt_of(index), prompt);
                }
                Fact::Content => content += 1,
            }
        }
        if let Some(total) = total {
            return (total, UsageSource::Reported);
        }
        if !completions.is_empty() {
            let (p, c): (u64, u64) = (prompts.values().sum(), completions.values().sum());
            return (
                Usage { prompt_tokens: p, completion_tokens: c, total_tokens: p + c },
                UsageSource::Reported,
            );
        }
        match content {
            0 => (Usage::default(), UsageSource::None),
            n => (
                Usage { prompt_tokens: 0, completion_tokens: n, total_tokens: n },
                UsageSource::Estimated,
            ),
        }
    }
}

fn usage_json(prompt: u64, completion: u64) -> String {
    format!(
        r#"{{"prompt_tokens":{prompt},"total_tokens":{},"completion_tokens":{completion}}}"#,
        prompt + completion
    )
}

/// Every cut of `built` counts what the oracle says.
fn check_every_cut(built: &Built, layout: PromptLayout, prompt_of: impl Fn(u64) -> u64) {
    for cut in 0..=built.bytes.len() {
        let (a, b) = built.bytes.split_at(cut);
        let whole = count_stream_as(layout, &[a, b]);
        assert_eq!(
            whole.usage,
            built.expected(built.bytes.len(), &prompt_of).0,
            "whole stream, split at {cut}"
        );
        let cut_off = count_stream_as(layout, &[a]);
        let (usage, source) = built.expected(cut, &prompt_of);
        assert_eq!((cut_off.usage, cut_off.source), (usage, source), "cut after {cut} bytes");
    }
}

/// A chat stream with `n` choices and continuous usage, as vLLM interleaves them: a role chunk
/// per choice (usage 0 so far), then one token per chunk, round robin, then the usage-only chunk.
fn chat_with_n(n: u64, tokens: u64, prompt: u64) -> Built {
    let mut built = Built::new();
    let head = r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":"#;
    for i in 0..n {
        let text = format!("{head}[{{\"index\":{i},\"delta\":{{\"role\":\"assistant\",\"content\":\"\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":{}}}\n\n", usage_json(prompt, 0));
        built.event(&text, &[(&usage_json(prompt, 0), Fact::Choice(i, prompt, 0))]);
    }
    for t in 1..=tokens {
        for i in 0..n {
            let text = format!("{head}[{{\"index\":{i},\"delta\":{{\"content\":\"t{t}\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":{}}}\n\n", usage_json(prompt, t));
            built.event(
                &text,
                &[("}]", Fact::Content), (&usage_json(prompt, t), Fact::Choice(i, prompt, t))],
            );
        }
    }
    let total = usage_json(prompt, n * tokens);
    let text = format!(
        "{head}[],\"usage\":{total},\"system_fingerprint\":\"vllm-0\"}}\n\ndata: [DONE]\n\n"
    );
    built.event(
        &text,
        &[(
            &total,
            Fact::Total(Usage {
                prompt_tokens: prompt,
                completion_tokens: n * tokens,
                total_tokens: prompt + n * tokens,
            }),
        )],
    );
    built
}

#[test]
fn chat_with_n_choices_counts_every_choice_at_every_cut() {
    let built = chat_with_n(3, 3, 17);
    check_every_cut(&built, PromptLayout::Single, |_| 0);
    let whole = count_stream_as(PromptLayout::Single, &[&built.bytes]);
    assert_eq!(whole.usage, Usage { prompt_tokens: 17, completion_tokens: 9, total_tokens: 26 });
    // Cut after the second token of every choice: 3 × 2 tokens, the prompt once.
    let cut = built.facts[3 + 2 * 3 * 2 - 1].0;
    assert_eq!(
        count_stream_as(PromptLayout::Single, &[&built.bytes[..cut]]).usage,
        Usage { prompt_tokens: 17, completion_tokens: 6, total_tokens: 23 }
    );
}

/// A completions stream for `prompts` (their token counts) with `n` choices each: choice index
/// `prompt * n + output`, each chunk with that prompt's tokens and that choice's tokens so far.
fn completions_batched(prompts: &[u64], n: u64, tokens: u64) -> Built {
    let mut built = Built::new();
    let head =
        r#"data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":"#;
    for t in 1..=tokens {
        for (p, prompt) in prompts.iter().enumerate() {
            for o in 0..n {
                let index = p as u64 * n + o;
                let usage = usage_json(*prompt, t);
                let text = format!("{head}[{{\"index\":{index},\"text\":\"é{t}\",\"logprobs\":null,\"finish_reason\":null,\"stop_reason\":null}}],\"usage\":{usage}}}\n\n");
                built.event(
                    &text,
                    &[("}]", Fact::Content), (&usage, Fact::Choice(index, *prompt, t))],
                );
            }
        }
    }
    let (p, c) = (prompts.iter().sum::<u64>(), prompts.len() as u64 * n * tokens);
    let total = usage_json(p, c);
    built.event(
        &format!("{head}[],\"usage\":{total}}}\n\ndata: [DONE]\n\n"),
        &[(
            &total,
            Fact::Total(Usage { prompt_tokens: p, completion_tokens: c, total_tokens: p + c }),
        )],
    );
    built
}

#[test]
fn batched_prompts_with_n_count_each_prompt_once_at_every_cut() {
    let built = completions_batched(&[5, 11], 2, 2);
    check_every_cut(&built, PromptLayout::Batched { n: 2 }, |i| i / 2);
    let before_total = built.facts[built.facts.len() - 2].0;
    let cut = count_stream_as(PromptLayout::Batched { n: 2 }, &[&built.bytes[..before_total]]);
    assert_eq!(
        cut.usage,
        Usage { prompt_tokens: 16, completion_tokens: 8, total_tokens: 24 },
        "all four choices, both prompts once"
    );
}

#[test]
fn choices_past_the_cap_are_estimated_in_bounded_memory() {
    let extra = 10u64;
    let count = MAX_TRACKED_CHOICES as u64 + extra;
    let mut stream = String::new();
    for index in 0..count {
        stream += &format!(
            "data: {{\"choices\":[{{\"index\":{index},\"text\":\"x\"}}],\"usage\":{}}}\n\n",
            usage_json(1, 2)
        );
    }
    let mut acc = StreamAccounting::new(PromptLayout::Batched { n: 1 });
    acc.feed(stream.as_bytes());
    assert_eq!(acc.tracked_choices(), MAX_TRACKED_CHOICES);
    let out = acc.finish();
    assert_eq!(out.source, UsageSource::Estimated);
    let tracked = MAX_TRACKED_CHOICES as u64;
    assert_eq!(
        out.usage,
        Usage {
            prompt_tokens: tracked,
            completion_tokens: 2 * tracked + extra,
            total_tokens: 3 * tracked + extra
        }
    );
}

/// A `/v1/responses` stream as vLLM writes it: `event:` lines, `data` whose `type` is the event
/// name, text deltas, then `response.completed` whose `response` holds the whole output and the
/// usage.
fn responses_stream(deltas: &[&str], output_text: &str) -> Built {
    let mut built = Built::new();
    let response = |status: &str, usage: &str| {
        format!(
            r#"{{"id":"resp_1","object":"response","created_at":1,"model":"m","output":[],"status":"{status}","usage":{usage}}}"#
        )
    };
    for (seq, kind) in ["response.created", "response.in_progress"].iter().enumerate() {
        let text = format!("event: {kind}\ndata: {{\"response\":{},\"sequence_number\":{seq},\"type\":\"{kind}\"}}\n\n", response("in_progress", "null"));
        built.event(&text, &[]);
    }
    built.event("event: response.output_item.added\ndata: {\"item\":{\"id\":\"msg_1\",\"content\":[],\"role\":\"assistant\",\"status\":\"in_progress\",\"type\":\"message\"},\"output_index\":0,\"sequence_number\":2,\"type\":\"response.output_item.added\"}\n\n", &[]);
    for delta in deltas {
        let quoted = serde_json::to_string(delta).unwrap();
        let text = format!("event: response.output_text.delta\ndata: {{\"content_index\":0,\"delta\":{quoted},\"item_id\":\"msg_1\",\"logprobs\":[],\"output_index\":0,\"sequence_number\":3,\"type\":\"response.output_text.delta\"}}\n\n");
        // The type comes last here: the event counts once its data is whole.
        let marker = "\"type\":\"response.output_text.delta\"";
        let facts: Vec<(&str, Fact)> =
            if delta.is_empty() { vec![] } else { vec![(marker, Fact::Content)] };
        built.event(&text, &facts);
    }
    let usage = r#"{"input_tokens":21,"input_tokens_details":{"cached_tokens":0},"output_tokens":5,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":26}"#;
    let full = response("completed", usage).replace("\"output\":[]", &format!("\"output\":[{{\"type\":\"message\",\"content\":[{{\"type\":\"output_text\",\"text\":{}}}]}}]", serde_json::to_string(output_text).unwrap()));
    let text = format!("event: response.completed\ndata: {{\"response\":{full},\"sequence_number\":9,\"type\":\"response.completed\"}}\n\n");
    built.event(
        &text,
        &[(
            "\"type\":\"response.completed\"",
            Fact::Total(Usage { prompt_tokens: 21, completion_tokens: 5, total_tokens: 26 }),
        )],
    );
    built
}

#[test]
fn responses_streams_count_at_every_cut() {
    let built = responses_stream(&["Hel", "", "lo ", "wö", "rld"], "Hello wörld");
    check_every_cut(&built, PromptLayout::default(), |i| i);
    let whole = count_stream(&[&built.bytes]);
    assert_eq!(
        (whole.usage.prompt_tokens, whole.usage.completion_tokens, whole.source),
        (21, 5, UsageSource::Reported)
    );
}

#[test]
fn a_huge_final_response_event_still_counts() {
    let text = "long output ".repeat(300_000);
    let built = responses_stream(&["long"], &text);
    assert!(built.bytes.len() > 3 << 20);
    let chunks: Vec<&[u8]> = built.bytes.chunks(8 * 1024).collect();
    let out = count_stream(&chunks);
    assert_eq!(out.usage, Usage { prompt_tokens: 21, completion_tokens: 5, total_tokens: 26 });
}

#[test]
fn incomplete_responses_count_too() {
    let stream = b"event: response.incomplete\ndata: {\"type\":\"response.incomplete\",\"response\":{\"status\":\"incomplete\",\"usage\":{\"input_tokens\":4,\"output_tokens\":16,\"total_tokens\":20}}}\n\n";
    assert_eq!(
        count_stream(&[stream]).usage,
        Usage { prompt_tokens: 4, completion_tokens: 16, total_tokens: 20 }
    );
    let reasoning = b"event: response.reasoning_text.delta\ndata: {\"type\":\"response.reasoning_text.delta\",\"delta\":\"hmm\"}\n\n";
    assert_eq!(count_stream(&[reasoning, reasoning]).usage.completion_tokens, 2);
}

#[test]
fn a_non_streamed_responses_body_reads_input_and_output_tokens() {
    let body = br#"{"id":"resp_1","object":"response","output":[{"type":"message","content":[{"type":"output_text","text":"hi"}]}],"status":"completed","usage":{"input_tokens":12,"input_tokens_details":{"cached_tokens":0},"output_tokens":2,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":14}}"#;
    for cut in 0..=body.len() {
        let (a, b) = body.split_at(cut);
        let mut acc = BodyAccounting::new();
        acc.feed(a);
        acc.feed(b);
        assert_eq!(
            acc.finish().usage,
            Usage { prompt_tokens: 12, completion_tokens: 2, total_tokens: 14 }
        );
    }
}
