//! Entry decoding, including the filter state as Envoy sends it (`Any` wrapping `BytesValue`).
//! Entries are built as `envoy-types`' full messages and read off their encoding, as the sink
//! reads Envoy's.

use envoy_types::pb::envoy::config::core::v3::SocketAddress;
use envoy_types::pb::envoy::data::accesslog::v3::{
    AccessLogCommon, HttpAccessLogEntry, HttpRequestProperties, HttpResponseProperties,
};
use envoy_types::pb::google::protobuf::{Any, BytesValue, StringValue, UInt32Value};

use super::super::wire::LogsMessage;
use super::*;

/// The row the sink makes of `entry` as Envoy would send it.
fn to_row(entry: HttpAccessLogEntry) -> AccessLog {
    super::to_row(HttpEntry::decode(entry.encode_to_vec().as_slice()).unwrap())
}

pub(crate) fn entry(request_id: &str, usage_json: Option<&str>) -> HttpAccessLogEntry {
    let mut common = AccessLogCommon {
        start_time: Some(Timestamp { seconds: 1_700_000_000, nanos: 250_000_000 }),
        duration: Some(Duration { seconds: 1, nanos: 5_000_000 }),
        upstream_cluster: "model_0_a".into(),
        upstream_remote_address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "127.0.0.1".into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(7001)),
                ..Default::default()
            })),
        }),
        response_flags: Some(ResponseFlags {
            upstream_connection_failure: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    if let Some(json) = usage_json {
        let bytes = BytesValue { value: json.as_bytes().to_vec() }.encode_to_vec();
        let any =
            Any { type_url: "type.googleapis.com/google.protobuf.BytesValue".into(), value: bytes };
        common.filter_state_objects.insert(USAGE_STATE_KEY.into(), any);
    }
    HttpAccessLogEntry {
        common_properties: Some(common),
        request: Some(HttpRequestProperties {
            request_id: request_id.into(),
            request_method: RequestMethod::Post as i32,
            path: "/v1/chat/completions?token=sk-live-secret&x=1".into(),
            ..Default::default()
        }),
        response: Some(HttpResponseProperties {
            response_code: Some(UInt32Value { value: 200 }),
            response_body_bytes: 1234,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn envoy_facts_and_the_usage_record_make_one_row() {
    let usage = r#"{"app_id":3,"key_id":4,"user_id":9,"model":"m","cluster":"model_0_a","stream":true,"status":200,"prompt_tokens":5,"completion_tokens":6,"total_tokens":11,"usage_source":"reported","ttft_ms":12,"duration_ms":30,"client_disconnected":false,"gateway_error":null,"upstream_error":null}"#;
    let row = to_row(entry("req-1", Some(usage)));
    assert_eq!(row.request_id, "req-1");
    assert_eq!(row.started_at_ms, 1_700_000_000_250);
    assert_eq!(row.duration_ms, Some(1005));
    assert_eq!(row.method.as_deref(), Some("POST"));
    assert_eq!(
        row.path.as_deref(),
        Some("/v1/chat/completions?x=1"),
        "the token never reaches the log"
    );
    assert_eq!(row.status, Some(200));
    assert_eq!(row.upstream_host.as_deref(), Some("127.0.0.1:7001"));
    assert_eq!(row.response_flags.as_deref(), Some("UF"));
    assert_eq!(row.bytes_sent, Some(1234));
    assert_eq!((row.app_id, row.key_id, row.user_id), (Some(3), Some(4), Some(9)));
    assert_eq!(
        (row.prompt_tokens, row.completion_tokens, row.total_tokens),
        (Some(5), Some(6), Some(11))
    );
    assert_eq!(row.usage_source.as_deref(), Some("reported"));
    assert_eq!(row.stream, Some(true));
    assert_eq!(row.ttft_ms, Some(12));
}

#[test]
fn entries_without_usage_or_with_garbage_still_make_rows() {
    let row = to_row(entry("req-2", None));
    assert_eq!(row.status, Some(200));
    assert_eq!(row.app_id, None);
    let row = to_row(entry("req-3", Some("not json")));
    assert_eq!(row.request_id, "req-3");
    assert_eq!(row.model, None);
    let row = to_row(HttpAccessLogEntry::default());
    assert!(row.request_id.starts_with("envoy-"));
}

#[test]
fn the_clients_request_id_comes_from_its_header_and_never_keys_the_row() {
    let mut e = entry("gateway-id", None);
    let request = e.request.as_mut().unwrap();
    request.request_headers.insert("x-client-request-id".into(), "client-7".into());
    let row = to_row(e);
    assert_eq!(row.request_id, "gateway-id");
    assert_eq!(row.client_request_id.as_deref(), Some("client-7"));
    assert_eq!(to_row(entry("gateway-id", None)).client_request_id, None);
}

#[test]
fn connections_cut_before_their_headers_get_one_row_each_with_the_file_logs_id() {
    let peer = |port: u32| {
        Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "10.0.0.7".into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                ..Default::default()
            })),
        })
    };
    let ids: Vec<String> = [40001, 40002]
        .into_iter()
        .map(|port| {
            let mut e = entry("", None);
            e.common_properties.as_mut().unwrap().downstream_remote_address = peer(port);
            to_row(e).request_id
        })
        .collect();
    assert_eq!(ids, ["envoy-1700000000250-10.0.0.7:40001", "envoy-1700000000250-10.0.0.7:40002"]);
    let line = br#"{"request_id":null,"start_ms":"1700000000250","downstream_peer":"10.0.0.7:40001","status":408}"#;
    let crate::file_log::line::Parsed::Row(facts) = crate::file_log::line::parse_line(line) else {
        panic!("not a row")
    };
    assert_eq!(facts.request_id, ids[0], "both paths name it alike");
}

/// A message as Envoy sends it, with every field the rows are not made from set too (they are
/// skipped), the record wrapped as a `StringValue` and a second, unrelated filter state: the
/// sink's wire types read the same facts `envoy-types`' full messages carry.
#[test]
fn a_full_message_is_read_for_the_facts_a_row_is_made_of() {
    use envoy_types::pb::envoy::data::accesslog::v3::TlsProperties;
    use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
        HttpAccessLogEntries, Identifier, LogEntries, TcpAccessLogEntries,
    };
    use envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;

    let usage =
        r#"{"app_id":3,"model":"m","status":200,"total_tokens":11,"usage_source":"reported"}"#;
    let mut e = entry("req-9", None);
    let common = e.common_properties.as_mut().unwrap();
    common.sample_rate = 1.0;
    common.tls_properties =
        Some(TlsProperties { tls_sni_hostname: "gw".into(), ..Default::default() });
    common.route_name = "to_models".into();
    common.stream_id = "stream-1".into();
    let wrapped = StringValue { value: usage.into() }.encode_to_vec();
    let any = |type_url: &str, value: Vec<u8>| Any { type_url: type_url.into(), value };
    common.filter_state_objects.insert(
        USAGE_STATE_KEY.into(),
        any("type.googleapis.com/google.protobuf.StringValue", wrapped),
    );
    common.filter_state_objects.insert("other".into(), any("x", b"{}".to_vec()));
    let request = e.request.as_mut().unwrap();
    request.user_agent = "openai-python/1.0".into();
    request.authority = "gateway".into();
    request.request_headers.insert("X-Client-Request-Id".into(), "mine".into());
    request.request_headers.insert("user-agent".into(), "x".into());
    let response = e.response.as_mut().unwrap();
    response.response_headers.insert("content-type".into(), "application/json".into());
    response.response_code_details = "via_upstream".into();
    let message = |entries| StreamAccessLogsMessage {
        identifier: Some(Identifier { log_name: "vllm-gateway".into(), node: None }),
        log_entries: Some(entries),
    };
    let http = message(LogEntries::HttpLogs(HttpAccessLogEntries { log_entry: vec![e] }));
    let read = LogsMessage::decode(http.encode_to_vec().as_slice()).unwrap();
    let [entry] = <[HttpEntry; 1]>::try_from(read.http_logs.unwrap().log_entry).unwrap();
    let row = super::to_row(entry);
    assert_eq!(
        (row.request_id.as_str(), row.status, row.bytes_sent),
        ("req-9", Some(200), Some(1234))
    );
    assert_eq!(row.client_request_id.as_deref(), Some("mine"));
    assert_eq!(
        (row.app_id, row.model.as_deref(), row.total_tokens),
        (Some(3), Some("m"), Some(11))
    );
    assert_eq!(
        (row.upstream_host.as_deref(), row.response_flags.as_deref()),
        (Some("127.0.0.1:7001"), Some("UF"))
    );
    let tcp =
        message(LogEntries::TcpLogs(TcpAccessLogEntries { log_entry: vec![Default::default()] }));
    let read = LogsMessage::decode(tcp.encode_to_vec().as_slice()).unwrap();
    assert_eq!(read.http_logs, None, "TCP entries are skipped");
}
