//! `usage_record`: the filter's usage record as the control plane reads it for every access-log
//! row ([`UsageRecord::from_json`], which reads a plainly written record without serde): it must
//! read exactly what `serde_json` reads, and refuse exactly what it refuses.

use vllm_gateway_filter::record::UsageRecord;

use super::{outcome, Target};

/// The record's members and the shapes of their values.
const RECORD_TOKENS: &[&[u8]] = &[
    b"\"app_id\":",
    b"\"key_id\":",
    b"\"user_id\":",
    b"\"model\":",
    b"\"cluster\":",
    b"\"stream\":",
    b"\"status\":",
    b"\"prompt_tokens\":",
    b"\"completion_tokens\":",
    b"\"total_tokens\":",
    b"\"usage_source\":",
    b"\"ttft_ms\":",
    b"\"duration_ms\":",
    b"\"client_disconnected\":",
    b"\"gateway_error\":",
    b"\"upstream_error\":",
    b"\"limited\":",
    b"\"cut_off\":",
    b"\"reported\"",
    b"\"estimated\"",
    b"\"none\"",
    b"null",
    b"true",
    b"false",
    b"18446744073709551615",
    b"9223372036854775808",
    b"65536",
    b"-1",
    b"1.5e3",
    b"\"\\u00e9\"",
    b"\"\\\"\"",
];

pub const TARGET: Target = Target {
    name: "usage_record",
    about: "the usage record read without serde when plain: exactly what serde_json reads",
    run,
    dictionary: RECORD_TOKENS,
};

fn run(input: &[u8]) -> u64 {
    let by_serde = serde_json::from_slice::<UsageRecord>(input);
    let read = UsageRecord::from_json(input);
    match (&read, &by_serde) {
        (Ok(record), Ok(reference)) => assert_eq!(record, reference, "read otherwise than serde"),
        (Err(_), Err(_)) => {}
        _ => panic!("read {read:?} where serde_json read {by_serde:?}"),
    }
    let Ok(record) = read else { return outcome(&[0]) };
    outcome(&[
        1,
        u64::from(record.status),
        record.usage_source as u64,
        u64::from(record.model.is_some()),
        u64::from(record.stream),
        record.usage.total_tokens.min(3),
    ])
}
