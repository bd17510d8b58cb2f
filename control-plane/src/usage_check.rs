//! The sanity check of the token counts a usage record reports, before they are stored.
//!
//! A count that cannot be true is kept out of the sums but the row is kept, flagged with the
//! reason (the `anomaly` column): a negative count is stored as 0, a count above
//! [`MAX_TOKENS_PER_REQUEST`] (or not a whole number) as `NULL`, and a total that is not the
//! sum of the prompt and completion counts is kept as reported but flagged.

use serde_json::Value;
use vllm_gateway_filter::record::UsageRecord;

/// No single request is accounted more tokens than this (ten million): a larger count is
/// absurd, stored as `NULL` and flagged.
pub const MAX_TOKENS_PER_REQUEST: u64 = 10_000_000;

/// The token-count fields of the filter's record.
const COUNT_FIELDS: [&str; 3] = ["prompt_tokens", "completion_tokens", "total_tokens"];

/// The filter's record as read from the access log, with what reading it had to correct.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedUsage {
    /// The record; a negative count is 0 here, a count that was no whole number `u64::MAX`.
    pub record: UsageRecord,
    /// The count fields that were negative.
    pub negative: Vec<&'static str>,
}

/// The counts to store, and why the row is flagged (if it is).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckedCounts {
    /// Prompt tokens (`None` when absurd).
    pub prompt: Option<i64>,
    /// Completion tokens (`None` when absurd).
    pub completion: Option<i64>,
    /// Total tokens (`None` when absurd).
    pub total: Option<i64>,
    /// Every reason the counts cannot be true, `; `-separated.
    pub anomaly: Option<String>,
}

/// The filter's record from its JSON bytes; unreadable bytes are logged and give `None`. A
/// record whose counts are negative, fractional or beyond `u64` is still read (see
/// [`LoggedUsage`]).
pub fn parse(bytes: &[u8]) -> Option<LoggedUsage> {
    if let Ok(record) = UsageRecord::from_json(bytes) {
        return Some(LoggedUsage { record, negative: Vec::new() });
    }
    let read = serde_json::from_slice::<Value>(bytes).and_then(|mut value| {
        let negative = correct_counts(&mut value);
        serde_json::from_value::<UsageRecord>(value).map(|record| LoggedUsage { record, negative })
    });
    match read {
        Ok(usage) => Some(usage),
        Err(e) => {
            tracing::warn!(error = %e, "unreadable usage record in the access log");
            None
        }
    }
}

/// Makes every count field a `u64`: a negative number 0 (its name is returned), any other
/// number that is no `u64` (a fraction, beyond `u64`) `u64::MAX`, which [`check`] flags.
fn correct_counts(value: &mut Value) -> Vec<&'static str> {
    let Some(map) = value.as_object_mut() else { return Vec::new() };
    let mut negative = Vec::new();
    for field in COUNT_FIELDS {
        let Some(Value::Number(n)) = map.get(field) else { continue };
        if n.is_u64() {
            continue;
        }
        let below_zero = n.as_f64().is_some_and(|f| f < 0.0);
        if below_zero {
            negative.push(field);
        }
        map.insert(field.to_owned(), Value::from(if below_zero { 0 } else { u64::MAX }));
    }
    negative
}

/// The counts to store for `usage`, and the reasons to flag the row.
pub fn check(usage: &LoggedUsage) -> CheckedCounts {
    let u = &usage.record.usage;
    let mut reasons: Vec<String> = usage.negative.iter().map(|f| format!("{f} < 0")).collect();
    let mut keep = |field: &str, n: u64| {
        let plausible = (n <= MAX_TOKENS_PER_REQUEST).then(|| i64::try_from(n).ok()).flatten();
        if plausible.is_none() {
            reasons.push(format!("{field} > {MAX_TOKENS_PER_REQUEST}"));
        }
        plausible
    };
    let (prompt, completion, total) = (
        keep("prompt_tokens", u.prompt_tokens),
        keep("completion_tokens", u.completion_tokens),
        keep("total_tokens", u.total_tokens),
    );
    if let (Some(p), Some(c), Some(t)) = (prompt, completion, total) {
        if reasons.is_empty() && p + c != t {
            reasons.push("total_tokens != prompt_tokens + completion_tokens".to_owned());
        }
    }
    let anomaly = (!reasons.is_empty()).then(|| reasons.join("; "));
    CheckedCounts { prompt, completion, total, anomaly }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(prompt: &str, completion: &str, total: &str) -> String {
        format!(
            r#"{{"app_id":1,"status":200,"prompt_tokens":{prompt},"completion_tokens":{completion},"total_tokens":{total},"usage_source":"reported"}}"#
        )
    }

    fn checked(prompt: &str, completion: &str, total: &str) -> CheckedCounts {
        check(&parse(record(prompt, completion, total).as_bytes()).unwrap())
    }

    #[test]
    fn plausible_counts_are_stored_as_reported() {
        assert_eq!(
            checked("3", "4", "7"),
            CheckedCounts { prompt: Some(3), completion: Some(4), total: Some(7), anomaly: None }
        );
        let at_limit = MAX_TOKENS_PER_REQUEST.to_string();
        assert_eq!(checked(&at_limit, "0", &at_limit).anomaly, None);
        assert_eq!(checked("0", "0", "0").anomaly, None);
    }

    #[test]
    fn negative_counts_are_stored_as_zero_and_flagged() {
        let c = checked("-5", "4", "-1");
        assert_eq!((c.prompt, c.completion, c.total), (Some(0), Some(4), Some(0)));
        assert_eq!(c.anomaly.as_deref(), Some("prompt_tokens < 0; total_tokens < 0"));
        assert_eq!(
            parse(record("-5", "4", "-1").as_bytes()).unwrap().record.app_id,
            Some(1),
            "the rest of the record is kept"
        );
    }

    #[test]
    fn absurd_counts_are_stored_as_null_and_flagged() {
        let max = i64::MAX.to_string();
        let c = checked(&max, "1", &max);
        assert_eq!((c.prompt, c.completion, c.total), (None, Some(1), None));
        assert_eq!(c.anomaly.as_deref(), Some("prompt_tokens > 10000000; total_tokens > 10000000"));
        for (p, t) in [
            (u64::MAX.to_string(), "1"),
            ("1e30".to_owned(), "1"),
            ("2.5".to_owned(), "1"),
            ("10000001".to_owned(), "1"),
        ] {
            let c = checked(&p, "0", t);
            assert_eq!(
                (c.prompt, c.anomaly.as_deref()),
                (None, Some("prompt_tokens > 10000000")),
                "{p}"
            );
        }
    }

    #[test]
    fn an_inconsistent_total_is_kept_and_flagged() {
        let c = checked("3", "4", "8");
        assert_eq!((c.prompt, c.completion, c.total), (Some(3), Some(4), Some(8)));
        assert_eq!(c.anomaly.as_deref(), Some("total_tokens != prompt_tokens + completion_tokens"));
    }

    #[test]
    fn unreadable_records_give_none() {
        assert!(parse(b"not json").is_none());
        assert!(parse(br#"{"prompt_tokens":"many"}"#).is_none());
    }
}
