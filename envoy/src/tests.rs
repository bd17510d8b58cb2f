//! Rendering checks; the rendered file is also validated by the real Envoy in the e2e tests.

use std::collections::BTreeMap;

use super::*;

fn spec(models: &[&str]) -> GatewaySpec {
    GatewaySpec {
        listen: "127.0.0.1:5000".parse().unwrap(),
        admin_port: 9901,
        control_plane_http: "127.0.0.1:8081".parse().unwrap(),
        control_plane_als: "127.0.0.1:8082".parse().unwrap(),
        filter: crate::FilterBuild::Wasm("/tmp/it's \"here\".wasm".into()),
        models: models.iter().map(|m| m.parse().unwrap()).collect(),
        state_token: "0123456789abcdef0123".into(),
        state_refresh_ms: 1000,
        cors_origins: DEFAULT_CORS_ORIGINS.iter().map(|o| o.to_string()).collect(),
        default_model: None,
        upstream_keys: BTreeMap::new(),
        access_log_file: "/var/log/vllm-gateway/access.jsonl".into(),
    }
}

#[test]
fn parses_model_urls() {
    let m: ModelUpstream = "Qwen3-32B=http://10.0.0.5:8000/".parse().unwrap();
    assert_eq!(m.name, "Qwen3-32B");
    assert_eq!(m.upstream, Upstream { tls: false, host: "10.0.0.5".into(), port: 8000 });
    let m: ModelUpstream = "a=https://vllm.internal".parse().unwrap();
    assert_eq!((m.upstream.tls, m.upstream.port), (true, 443));
    let m: ModelUpstream = "a=http://[::1]:9".parse().unwrap();
    assert_eq!(m.upstream.host, "::1");
    for bad in [
        "noequals",
        "=http://x:1",
        "a=ftp://x",
        "a=http://x:1/v1",
        "a=http://x:port",
        "a=http://",
        "a=http://x y:1",
    ] {
        assert!(bad.parse::<ModelUpstream>().is_err(), "{bad}");
    }
}

#[test]
fn renders_every_placeholder() {
    let yaml =
        render(&spec(&["model-a=http://127.0.0.1:7001", "Model/B=http://localhost:7002"])).unwrap();
    assert!(yaml.contains("port_value: 5000"));
    assert!(yaml.contains("name: model_0_model_a"));
    assert!(yaml.contains("name: model_1_model_b"));
    assert!(yaml.contains("type: STRICT_DNS"), "host names resolve through DNS");
    assert!(yaml.contains(r#"filename: "/tmp/it's \"here\".wasm""#));
    assert!(yaml.contains(r#""Model/B":{"cluster":"model_1_model_b"}"#));
    assert!(!yaml.contains("{{"));
    assert!(yaml.contains(r#"- exact: "http://localhost:5173""#));
}

#[test]
fn plugin_config_round_trips_through_the_filter_parser() {
    let yaml = render(&spec(&["m=http://127.0.0.1:1"])).unwrap();
    let line = yaml.lines().find(|l| l.trim_start().starts_with("value: '")).unwrap();
    let json =
        line.trim_start().trim_start_matches("value: '").trim_end_matches('\'').replace("''", "'");
    let parsed = PluginConfig::parse(json.as_bytes()).unwrap();
    assert_eq!(parsed, plugin_config(&spec(&["m=http://127.0.0.1:1"])).unwrap());
}

#[test]
fn refuses_duplicate_or_missing_models() {
    assert!(matches!(render(&spec(&[])), Err(RenderError::NoModels)));
    let dup = render(&spec(&["m=http://127.0.0.1:1", "m=http://127.0.0.1:2"]));
    assert!(matches!(dup, Err(RenderError::DuplicateModel(_))));
}

#[test]
fn upstream_keys_and_the_default_model_reach_the_plugin_config() {
    let mut s = spec(&["a=http://127.0.0.1:1", "b=http://127.0.0.1:2"]);
    s.upstream_keys.insert("b".into(), "vllm-key".into());
    s.default_model = Some("a".into());
    let config = plugin_config(&s).unwrap();
    assert_eq!(config.models["b"].api_key.as_deref(), Some("vllm-key"));
    assert_eq!(config.models["a"].api_key, None);
    assert_eq!(config.default_model.as_deref(), Some("a"));
    s.upstream_keys.insert("c".into(), "k".into());
    assert!(matches!(plugin_config(&s), Err(RenderError::UnknownKeyModel(_))));
    s.upstream_keys.remove("c");
    s.default_model = Some("zzz".into());
    assert!(matches!(plugin_config(&s), Err(RenderError::Plugin(_))));
}

#[test]
fn control_plane_by_host_name_resolves_through_dns() {
    let http: Endpoint = "control-plane:8081".parse().unwrap();
    let als: Endpoint = "10.1.2.3:8082".parse().unwrap();
    assert_eq!(
        (http.host.as_str(), http.port, http.cluster_type()),
        ("control-plane", 8081, "STRICT_DNS")
    );
    assert_eq!(als.cluster_type(), "STATIC");
    let yaml = render_with_control_plane(&spec(&["m=http://127.0.0.1:1"]), &http, &als).unwrap();
    assert!(yaml.contains("- name: control_plane\n    type: STRICT_DNS"), "{yaml}");
    assert!(yaml.contains("socket_address: { address: control-plane, port_value: 8081 }"));
    assert!(yaml.contains("- name: gateway_als\n    type: STATIC"));
    for bad in ["control-plane", "x:port", ":1", "a b:1", "-x:1"] {
        assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
    }
    let by_ip = render(&spec(&["m=http://127.0.0.1:1"])).unwrap();
    assert!(by_ip.contains("- name: control_plane\n    type: STATIC"));
}

#[test]
fn the_access_loggers_read_the_filter_state_the_filter_writes() {
    let yaml = render(&spec(&["m=http://127.0.0.1:1"])).unwrap();
    let key = vllm_gateway_filter::record::LOG_KEY;
    assert!(yaml.contains(&format!("filter_state_objects_to_log: [\"{key}\"]")), "the gRPC logger");
    assert!(yaml.contains(&format!("%FILTER_STATE({key}:PLAIN)%")), "the file and stdout loggers");
    assert_eq!(key, format!("wasm.{}", vllm_gateway_filter::record::PROPERTY));
}
