//! Defaults, and refusals that name the wrong field.

use super::*;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn valid() -> serde_json::Value {
    serde_json::json!({
        "models": {"qwen": {"cluster": "model_qwen"}},
        "state": {"cluster": "control_plane", "token": "0123456789abcdef0123"}
    })
}

fn error_of(value: serde_json::Value) -> String {
    match PluginConfig::parse(value.to_string().as_bytes()) {
        Ok(_) => String::from("accepted"),
        Err(e) => e.0,
    }
}

#[test]
fn fills_defaults() {
    let config = PluginConfig::parse(valid().to_string().as_bytes()).unwrap();
    assert_eq!(config.max_request_body_bytes, DEFAULT_MAX_REQUEST_BODY_BYTES);
    assert_eq!(config.cluster_header, "x-gateway-cluster");
    assert_eq!(config.state.path, "/internal/state");
    assert_eq!(config.state.long_poll_ms, 20_000);
    assert_eq!(config.state.lookup_negative_ttl_ms, 2_000);
    assert_eq!(config.state.lookups_per_second, 20);
    assert_eq!(config.route("qwen").unwrap().cluster, "model_qwen");
    assert!(config.route("other").is_none());
    assert_eq!(
        config.endpoints,
        ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"]
    );
    assert!(config.forwards("/v1/responses") && !config.forwards("/v1/load_lora_adapter"));
    assert!(!config.forwards("/v1/Chat/completions") && !config.forwards("/v1/chat/completions/"));
}

#[test]
fn endpoints_are_validated_and_named_by_index() {
    let with = |endpoints: &[&str]| {
        let mut v = valid();
        v["endpoints"] = serde_json::json!(endpoints);
        error_of(v)
    };
    assert_eq!(
        with(&["/v1/completions", "/v1/x", "/v2/chat"]),
        "endpoints[2]: must start with /v1/"
    );
    assert_eq!(with(&["v1/chat"]), "endpoints[0]: must start with /v1/");
    assert_eq!(with(&["/v1/"]), "endpoints[0]: must name an endpoint after /v1/");
    assert_eq!(
        with(&["/v1/chat?x=1"]),
        "endpoints[0]: must not contain '?' or '#' (it is compared without the query string)"
    );
    assert_eq!(
        with(&["/v1/chat#x"]),
        "endpoints[0]: must not contain '?' or '#' (it is compared without the query string)"
    );
    assert_eq!(
        with(&["/v1/a b"]),
        "endpoints[0]: must not contain whitespace or control characters"
    );
    for bad in ["/v1//chat", "/v1/./chat", "/v1/../admin", "/v1/a/..", "/v1/a/."] {
        assert_eq!(
            with(&[bad]),
            "endpoints[0]: must be a normalised path (no //, /./ or /../)",
            "{bad}"
        );
    }
    assert_eq!(with(&["/v1/a", "/v1/b", "/v1/a"]), "endpoints[2]: duplicate of endpoints[0]");
    assert_eq!(with(&["/v1/audio/transcriptions", "/v1/rerank"]), "accepted");
    assert_eq!(with(&[]), "accepted", "an empty list forwards nothing but /v1/models answers");
    let mut v = valid();
    v["endpoints"] = "/v1/chat/completions".into();
    assert!(error_of(v).starts_with("not valid: invalid type"));
}

#[test]
fn names_the_wrong_field() {
    let mut v = valid();
    v["models"]["qwen"]["cluster"] = "".into();
    assert_eq!(error_of(v), "models.qwen.cluster: must not be empty");

    let mut v = valid();
    v["models"] = serde_json::json!({});
    assert_eq!(error_of(v), "models: at least one model is required");

    let mut v = valid();
    v["state"]["refresh_ms"] = 5.into();
    assert!(error_of(v).starts_with("state.refresh_ms:"));

    let mut v = valid();
    v["state"]["token"] = "short".into();
    assert!(error_of(v).starts_with("state.token:"));

    let mut v = valid();
    v["default_model"] = "nope".into();
    assert_eq!(error_of(v), "default_model: must be one of the configured models");

    let mut v = valid();
    v["models"]["qwen"]["api_key"] = "a\nb".into();
    assert!(error_of(v).starts_with("models.qwen.api_key:"));

    let mut v = valid();
    v["cluster_header"] = "X-Bad Header".into();
    assert!(error_of(v).starts_with("cluster_header:"));
}

#[test]
fn the_long_poll_and_the_lookups_are_bounded() {
    let with = |field: &str, value: u64| {
        let mut v = valid();
        v["state"][field] = value.into();
        error_of(v)
    };
    for ok in [0, 1_000, 20_000, 30_000] {
        assert_eq!(with("long_poll_ms", ok), "accepted", "{ok}");
    }
    for bad in [1, 999, 30_001] {
        assert_eq!(
            with("long_poll_ms", bad),
            "state.long_poll_ms: must be 0 (off) or between 1000 and 30000"
        );
    }
    assert_eq!(with("lookup_negative_ttl_ms", 0), "accepted");
    assert_eq!(with("lookup_negative_ttl_ms", 60_000), "accepted");
    assert_eq!(
        with("lookup_negative_ttl_ms", 60_001),
        "state.lookup_negative_ttl_ms: must be between 0 and 60000"
    );
    assert_eq!(with("lookups_per_second", 0), "accepted");
    assert_eq!(with("lookups_per_second", 10_000), "accepted");
    assert_eq!(
        with("lookups_per_second", 10_001),
        "state.lookups_per_second: must be between 0 (off) and 10000"
    );
    let mut v = valid();
    v["state"]["lookups_per_second"] = (-1).into();
    assert!(error_of(v).starts_with("not valid: invalid value"));
}

#[test]
fn refuses_unknown_fields_and_garbage() {
    let mut v = valid();
    v["modles"] = serde_json::json!({});
    assert!(error_of(v).contains("unknown field `modles`"));
    assert!(PluginConfig::parse(b"not json").is_err());
    assert!(PluginConfig::parse(b"").is_err());
}
