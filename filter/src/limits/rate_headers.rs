//! OpenAI's rate-limit headers (`x-ratelimit-limit-requests`, `…-remaining-tokens`,
//! `…-reset-requests`, …) and `Retry-After`, from where a caller's limits stand: the requests
//! headers speak of its tightest request limit (per minute, else concurrency), the tokens headers
//! of its tightest token limit (the one with the least remaining).

use super::Standing;

/// The `x-ratelimit-*` headers for `standing` (none when nothing is limited).
pub fn headers(standing: &[Standing]) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let tightest = |tokens: bool| {
        standing
            .iter()
            .filter(|s| s.kind.counts_tokens() == tokens)
            .min_by_key(|s| (s.remaining, s.limit))
    };
    if let Some(s) = tightest(false) {
        out.push(("x-ratelimit-limit-requests", s.limit.to_string()));
        out.push(("x-ratelimit-remaining-requests", s.remaining.to_string()));
        out.push(("x-ratelimit-reset-requests", duration(s.resets_in_ms)));
    }
    if let Some(s) = tightest(true) {
        out.push(("x-ratelimit-limit-tokens", s.limit.to_string()));
        out.push(("x-ratelimit-remaining-tokens", s.remaining.to_string()));
        out.push(("x-ratelimit-reset-tokens", duration(s.resets_in_ms)));
    }
    out
}

/// A duration as OpenAI writes it in its reset headers: `20ms`, `6s`, `1m30s`, `2h0m5s`.
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = ms.div_ceil(1000);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::limits::LimitKind;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn durations_read_like_openais() {
        assert_eq!(duration(20), "20ms");
        assert_eq!(duration(6_000), "6s");
        assert_eq!(duration(5_001), "6s");
        assert_eq!(duration(90_000), "1m30s");
        assert_eq!(duration(7_205_000), "2h0m5s");
    }

    #[test]
    fn each_family_speaks_of_its_tightest_limit() {
        let s = |kind, limit, remaining| Standing { kind, limit, remaining, resets_in_ms: 30_000 };
        let standing = [
            s(LimitKind::RequestsPerMinute, 60, 59),
            s(LimitKind::TokensPerMinute, 1000, 900),
            s(LimitKind::TokensPerDay, 100_000, 500),
        ];
        let headers = headers(&standing);
        let get = |name| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("x-ratelimit-limit-requests"), Some("60"));
        assert_eq!(get("x-ratelimit-remaining-requests"), Some("59"));
        assert_eq!(get("x-ratelimit-limit-tokens"), Some("100000"));
        assert_eq!(get("x-ratelimit-remaining-tokens"), Some("500"));
        assert_eq!(get("x-ratelimit-reset-tokens"), Some("30s"));
        assert!(super::headers(&[]).is_empty());
    }
}
