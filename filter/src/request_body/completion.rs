//! What a request body says about the completion it may generate: the members that cap it
//! (`max_tokens`, `max_completion_tokens`, `max_output_tokens`) exactly as given, and how many
//! prompts a batched `/v1/completions` request holds (vLLM generates `n` choices for each).
//! Which member the upstream honours depends on the endpoint; the limits read them
//! ([`crate::exchange`]) and never trust a member the upstream would not.

use serde_json::Value;

/// One capping member as the body gives it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Cap {
    /// Absent or `null`.
    #[default]
    Absent,
    /// A non-negative integer.
    Int(u64),
    /// Anything else (a string, a float, a negative number): what the upstream makes of it is
    /// not known, so it never counts as a cap.
    Other,
}

impl Cap {
    /// The member's value as the body gives it.
    pub fn of(value: Option<&Value>) -> Self {
        match value {
            None | Some(Value::Null) => Cap::Absent,
            Some(v) => v.as_u64().map_or(Cap::Other, Cap::Int),
        }
    }
}

/// The completion caps of a body, and its prompts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompletionAsk {
    /// `max_tokens`.
    pub max_tokens: Cap,
    /// `max_completion_tokens` (chat; vLLM prefers it to `max_tokens`).
    pub max_completion_tokens: Cap,
    /// `max_output_tokens` (the Responses API).
    pub max_output_tokens: Cap,
    /// Prompts in the body: a `prompt` list of strings or of token lists counts each; anything
    /// else is one.
    pub prompts: u64,
}

impl CompletionAsk {
    /// The cap the upstream honours among `members` (in the upstream's order of preference):
    /// `Some(cap)` when the first present one is an integer, `None` when none is present or one
    /// present is not an integer (then the gateway writes its own).
    pub fn honoured(&self, members: &[&str]) -> Option<u64> {
        if members.iter().any(|m| self.member(m) == Cap::Other) {
            return None;
        }
        members.iter().find_map(|m| match self.member(m) {
            Cap::Int(n) => Some(n),
            _ => None,
        })
    }

    fn member(&self, name: &str) -> Cap {
        match name {
            "max_tokens" => self.max_tokens,
            "max_completion_tokens" => self.max_completion_tokens,
            "max_output_tokens" => self.max_output_tokens,
            _ => Cap::Absent,
        }
    }
}

/// The number of prompts in a `prompt` member (its JSON text): a list of strings or of token
/// lists counts each element, anything else is one prompt. Scanned, not parsed: a prompt may be
/// long, and may hold what only a lenient reader accepts (a lone surrogate).
pub fn count_prompts(raw: &[u8]) -> u64 {
    let mut bytes = raw.iter().copied().skip_while(u8::is_ascii_whitespace);
    if bytes.next() != Some(b'[') {
        return 1;
    }
    let (mut depth, mut in_string, mut escaped) = (0u32, false, false);
    let (mut elements, mut seen_value, mut first) = (0u64, false, None);
    for b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        if first.is_none() && !b.is_ascii_whitespace() {
            first = Some(b);
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => depth += 1,
            b']' | b'}' if depth == 0 => break,
            b']' | b'}' => depth -= 1,
            b',' if depth == 0 => elements += 1,
            _ => {}
        }
        seen_value |= !b.is_ascii_whitespace();
    }
    let token_ids = first.is_some_and(|b| b == b'-' || b.is_ascii_digit());
    if token_ids || !seen_value {
        1
    } else {
        elements + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn prompts(json: &str) -> u64 {
        count_prompts(json.as_bytes())
    }

    #[test]
    fn prompts_are_counted_as_vllm_batches_them() {
        assert_eq!(prompts(r#""one""#), 1);
        assert_eq!(prompts(r#"["a","b","c"]"#), 3);
        assert_eq!(prompts("[1,2,3,4]"), 1, "token ids of one prompt");
        assert_eq!(prompts("[[1,2],[3],[4,5]]"), 3);
        assert_eq!(prompts("[]"), 1);
        assert_eq!(prompts(r#" [ "a,]" , "b\"]" ] "#), 2, "commas and brackets in strings");
        assert_eq!(prompts(r#"["\udfff", {"x": [1, 2]}]"#), 2);
    }

    #[test]
    fn only_the_member_the_upstream_honours_caps_and_only_when_it_is_an_integer() {
        let ask = |json: &str| {
            let v: Value = serde_json::from_str(json).unwrap();
            CompletionAsk {
                max_tokens: Cap::of(v.get("max_tokens")),
                max_completion_tokens: Cap::of(v.get("max_completion_tokens")),
                max_output_tokens: Cap::of(v.get("max_output_tokens")),
                prompts: 1,
            }
        };
        let chat = ["max_completion_tokens", "max_tokens"];
        assert_eq!(
            ask(r#"{"max_tokens":1,"max_completion_tokens":100000}"#).honoured(&chat),
            Some(100000)
        );
        assert_eq!(ask(r#"{"max_tokens":5}"#).honoured(&chat), Some(5));
        assert_eq!(
            ask(r#"{"max_tokens":5,"max_completion_tokens":"100000"}"#).honoured(&chat),
            None
        );
        assert_eq!(ask(r#"{"max_output_tokens":1}"#).honoured(&chat), None, "not a chat member");
        assert_eq!(
            ask(r#"{"max_tokens":null,"max_completion_tokens":7}"#).honoured(&chat),
            Some(7)
        );
        assert_eq!(ask(r#"{"max_tokens":-1}"#).honoured(&["max_tokens"]), None);
    }
}
