//! Reading vLLM's token counters from its `/metrics` (Prometheus text format), with no I/O.
//!
//! vLLM (v1) exposes, per engine, `vllm:prompt_tokens_total{engine="0",model_name="m"} 123.0`
//! and `vllm:generation_tokens_total{…}`. A model's totals are the sums over every series whose
//! `model_name` is the model; comments, other metrics and malformed lines are passed over.

/// The prompt-token counter.
pub const PROMPT_TOKENS: &str = "vllm:prompt_tokens_total";
/// The generated-token counter.
pub const GENERATION_TOKENS: &str = "vllm:generation_tokens_total";

/// One model's counters at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenTotals {
    /// Prompt tokens counted since the server started.
    pub prompt: i64,
    /// Generated tokens counted since the server started.
    pub generation: i64,
}

/// The model's totals, or `None` when the text has no series of either counter for it.
pub fn token_totals(text: &str, model: &str) -> Option<TokenTotals> {
    let (mut prompt, mut generation) = (None::<f64>, None::<f64>);
    for line in text.lines() {
        let Some(sample) = parse_sample(line) else { continue };
        let slot = match sample.name {
            PROMPT_TOKENS => &mut prompt,
            GENERATION_TOKENS => &mut generation,
            _ => continue,
        };
        let ours =
            sample.labels.iter().any(|(name, value)| *name == "model_name" && value == model);
        if ours && sample.value.is_finite() {
            *slot = Some(slot.unwrap_or(0.0) + sample.value);
        }
    }
    Some(TokenTotals { prompt: prompt?.round() as i64, generation: generation?.round() as i64 })
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// The metric name.
    pub name: &'a str,
    /// Label names and (unescaped) values.
    pub labels: Vec<(&'a str, String)>,
    /// The value.
    pub value: f64,
}

/// A sample line (`name{labels} value [timestamp]`); `None` for comments, blank or malformed
/// lines.
pub fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample { name, labels, value })
}

/// Labels up to the closing brace, and what follows it.
fn parse_labels(mut s: &str) -> Option<(Vec<(&str, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let name = s[..eq].trim();
        let quoted = s[eq + 1..].trim_start().strip_prefix('"')?;
        let (value, after) = unquote(quoted)?;
        labels.push((name, value));
        s = after;
    }
}

/// A label value up to its closing quote (`\\`, `\"` and `\n` unescaped), and what follows.
fn unquote(s: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const VLLM: &str = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 0.0
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="m"} 1.23e+06
vllm:prompt_tokens_total{engine="1",model_name="m"} 7.0
vllm:prompt_tokens_total{engine="0",model_name="other"} 99.0
vllm:prompt_tokens_created{engine="0",model_name="m"} 1.7e9
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{model_name="m",engine="0"} 456.0 1700000000000
vllm:generation_tokens_total{engine="1",model_name="a \"quoted\", name"} 5
vllm:generation_tokens_total{engine="2",model_name="m"} NaN
"#;

    #[test]
    fn sums_a_models_counters_over_engines() {
        assert_eq!(
            token_totals(VLLM, "m"),
            Some(TokenTotals { prompt: 1_230_007, generation: 456 })
        );
        assert_eq!(token_totals(VLLM, "a \"quoted\", name"), None, "no prompt series");
        assert_eq!(token_totals(VLLM, "absent"), None);
        assert_eq!(token_totals("", "m"), None);
        let zero = "vllm:prompt_tokens_total{model_name=\"z\"} 0\nvllm:generation_tokens_total{model_name=\"z\"} 0\n";
        assert_eq!(token_totals(zero, "z"), Some(TokenTotals { prompt: 0, generation: 0 }));
    }

    #[test]
    fn reads_sample_lines() {
        let s = parse_sample(r#"x{a="1",b="q\"\\\n"} 2.5e3 123"#).unwrap();
        assert_eq!((s.name, s.value), ("x", 2500.0));
        assert_eq!(s.labels, vec![("a", "1".to_owned()), ("b", "q\"\\\n".to_owned())]);
        assert_eq!(parse_sample("up 1").unwrap().labels, vec![]);
        for bad in ["# TYPE x counter", "", "x{a=\"1\" 2", "x{a=1} 2", "x", "x{} nope"] {
            assert_eq!(parse_sample(bad), None, "{bad:?}");
        }
    }
}
