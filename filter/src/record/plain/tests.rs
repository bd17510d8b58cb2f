//! The plain reading against serde: records as the filter writes them must be read without
//! serde, and anything (tricky inputs, then generated mutations of real records) must read as
//! serde reads it or be left to serde.

use super::*;
use crate::json_reader::mutations::mutations;
use crate::usage::Usage;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// A record with every fact set.
fn full() -> UsageRecord {
    UsageRecord {
        app_id: Some(7),
        key_id: Some(9),
        user_id: Some(i64::MAX),
        model: Some("Qwen/Qwen2.5-7B-Instruct".into()),
        cluster: Some("model_0_qwen".into()),
        stream: true,
        status: 200,
        usage: Usage { prompt_tokens: 12, completion_tokens: u64::MAX, total_tokens: 0 },
        usage_source: UsageSource::Estimated,
        ttft_ms: Some(0),
        duration_ms: Some(830),
        client_disconnected: true,
        gateway_error: Some("tokens_per_day_exceeded".into()),
        upstream_error: Some("BadRequestError".into()),
        limited: Some("tokens_per_day".into()),
        cut_off: true,
    }
}

/// Records as the filter writes them, and as earlier filters wrote them (with `null`s).
fn written() -> Vec<Vec<u8>> {
    let error = UsageRecord {
        status: 401,
        gateway_error: Some("invalid_api_key".into()),
        ..Default::default()
    };
    let mut out: Vec<Vec<u8>> =
        [full(), error, UsageRecord::default()].iter().map(UsageRecord::to_bytes).collect();
    out.push(br#"{"app_id":1,"key_id":2,"user_id":null,"model":"m","cluster":"c","stream":false,"status":200,"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"usage_source":"reported","ttft_ms":null,"duration_ms":5,"client_disconnected":false,"gateway_error":null,"upstream_error":null}"#.to_vec());
    out.push(
        " { \"status\" : 200 ,\t\"model\" : \"é\" , \"later\" : {\"x\":[1,-2.5e3]} }\n"
            .as_bytes()
            .to_vec(),
    );
    out
}

/// Plain reading agrees with serde on `bytes`, or leaves it to serde; `true` when it read it.
fn check(bytes: &[u8]) -> bool {
    let by_serde = serde_json::from_slice::<UsageRecord>(bytes).ok();
    let plain = read(bytes);
    if let Some(record) = &plain {
        assert_eq!(Some(record), by_serde.as_ref(), "{}", String::from_utf8_lossy(bytes));
    }
    assert_eq!(UsageRecord::from_json(bytes).ok(), by_serde);
    plain.is_some()
}

#[test]
fn records_as_the_filter_writes_them_are_read_without_serde() {
    for bytes in written() {
        assert!(check(&bytes), "{}", String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn the_members_are_those_the_filter_writes() {
    let written = full().to_bytes();
    let mut keys = Vec::new();
    Reader::new(&written)
        .members(|r, key| {
            keys.push(String::from_utf8_lossy(key).into_owned());
            r.skip_value()
        })
        .unwrap();
    let members: Vec<&str> = MEMBERS.iter().map(|(name, _)| *name).collect();
    assert_eq!(keys, members, "the members, in the order the filter writes them");
}

#[test]
fn anything_odd_is_read_as_serde_reads_it_or_left_to_serde() {
    let odd: &[&[u8]] = &[
        br#"{"status":200,"status":201}"#,
        br#"{"app_id":-1}"#,
        br#"{"app_id":9223372036854775808}"#,
        br#"{"status":65536}"#,
        br#"{"prompt_tokens":null}"#,
        br#"{"prompt_tokens":1.0}"#,
        br#"{"prompt_tokens":01}"#,
        br#"{"model":"a\"b"}"#,
        br#"{"model":"\u0041"}"#,
        br#"{"model":7}"#,
        br#"{"stream":null}"#,
        br#"{"stream":1}"#,
        br#"{"usage_source":"Reported"}"#,
        br#"{"usage_source":null}"#,
        br#"{"st\u0061tus":200}"#,
        br#"{"status":200} x"#,
        br#"{"status":200"#,
        b"[200]",
        b"null",
        b"",
        b"{\"model\":\"\xff\"}",
        b"{\"model\":\"a\x01\"}",
    ];
    for bytes in odd {
        assert!(!check(bytes), "read without serde: {}", String::from_utf8_lossy(bytes));
    }
}

#[test]
fn mutated_records_are_read_as_serde_reads_them() {
    let written = written();
    let bases: Vec<&[u8]> = written.iter().map(Vec::as_slice).collect();
    let inputs = mutations(&bases, 20_000, 0x2545_f491_4f6c_dd1d);
    let plain = inputs.iter().filter(|input| check(input)).count();
    assert!(plain > 2_000, "only {plain} of 20,000 read without serde");
}
