//! The endpoint allow-list, `default_model`, and what happens to request headers.

use super::*;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn with(change: impl FnOnce(&mut PluginConfig)) -> Rc<PluginConfig> {
    let mut cfg = (*config()).clone();
    change(&mut cfg);
    Rc::new(cfg)
}

fn step_for(cfg: Rc<PluginConfig>, method: &str, path: &str) -> (Step, FakeHost) {
    let mut host = FakeHost::default();
    let mut ex = Exchange::new(cfg, 0);
    let step = ex.on_request_headers(
        &mut host,
        &head(method, path, Some("Bearer sk-live-good")),
        Some(Authority::new(&keys(), None)),
        0,
    );
    (step, host)
}

#[test]
fn listed_endpoints_read_the_body_and_others_get_404() {
    for path in [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/responses?stream=x&token=sk-live-nope",
    ] {
        assert_eq!(step_for(config(), "POST", path).0, Step::ReadBody, "{path}");
    }
    for path in [
        "/v1/load_lora_adapter",
        "/v1/unload_lora_adapter",
        "/v1/files",
        "/v1/Chat/completions",
        "/v1/chat/completions/",
        "/v1/chat/completions;x",
        "/v1/responses/resp_1",
        "/v1/responses/resp_1/cancel",
        "/v1/models/model-a",
        "/v1/",
    ] {
        let (step, host) = step_for(config(), "POST", path);
        assert_eq!(step, Step::Refuse(GatewayError::UnknownPath(path.into())), "{path}");
        assert_eq!(host.headers.get("x-gateway-cluster"), Some(&None), "never routed: {path}");
        let (step, _) = step_for(config(), "GET", &format!("{path}?a=1"));
        assert_eq!(step, Step::Refuse(GatewayError::UnknownPath(path.into())), "GET {path}");
    }
}

#[test]
fn an_unlisted_path_still_needs_a_credential_first() {
    let mut host = FakeHost::default();
    let (_, step) = start(&mut host, &head("POST", "/v1/load_lora_adapter", None));
    assert_eq!(step, Step::Refuse(GatewayError::MissingCredential));
    let mut host = FakeHost::default();
    let (mut ex, step) =
        start(&mut host, &head("POST", "/v1/load_lora_adapter", Some("Bearer sk-live-good")));
    assert_eq!(step, Step::Refuse(GatewayError::UnknownPath("/v1/load_lora_adapter".into())));
    let record = ex.finish(1, Ending::Complete).unwrap();
    assert_eq!((record.status, record.gateway_error.as_deref()), (404, Some("unknown_url")));
}

#[test]
fn the_list_is_configurable() {
    let cfg = with(|c| c.endpoints = vec!["/v1/rerank".into()]);
    assert_eq!(step_for(cfg.clone(), "POST", "/v1/rerank").0, Step::ReadBody);
    assert_eq!(
        step_for(cfg.clone(), "POST", "/v1/chat/completions").0,
        Step::Refuse(GatewayError::UnknownPath("/v1/chat/completions".into()))
    );
    assert!(
        matches!(step_for(cfg, "GET", "/v1/models").0, Step::Answer(_)),
        "the model list is the gateway's own"
    );
    let none = with(|c| c.endpoints.clear());
    assert!(matches!(step_for(none, "GET", "/v1/models").0, Step::Answer(_)));
}

#[test]
fn the_default_model_serves_only_listed_endpoints_that_are_not_posts() {
    let cfg = with(|c| c.default_model = Some("model-a".into()));
    let (step, host) = step_for(cfg.clone(), "GET", "/v1/embeddings");
    assert_eq!(step, Step::Continue);
    assert_eq!(host.headers["x-gateway-cluster"].as_deref(), Some("cluster_a"));
    let (step, host) = step_for(cfg.clone(), "GET", "/v1/files");
    assert_eq!(step, Step::Refuse(GatewayError::UnknownPath("/v1/files".into())));
    assert_eq!(host.headers["x-gateway-cluster"], None);
    assert_eq!(
        step_for(cfg, "POST", "/v1/completions").0,
        Step::ReadBody,
        "a POST routes by its body"
    );
    assert_eq!(
        step_for(config(), "GET", "/v1/embeddings").0,
        Step::Refuse(GatewayError::UnknownPath("/v1/embeddings".into()))
    );
}

#[test]
fn tracked_requests_ask_upstreams_for_identity_and_others_are_untouched() {
    let (_, host) = step_for(config(), "POST", "/v1/chat/completions");
    assert_eq!(host.headers.get("accept-encoding"), Some(&None));
    let (_, host) = step_for(config(), "POST", "/v1/nope");
    assert_eq!(
        host.headers.get("accept-encoding"),
        Some(&None),
        "whatever the path, nothing compressed comes back"
    );
    for path in ["/api/apps", "/user/user_login", "/v2/chat/completions", "/", "/v1"] {
        let (step, host) = step_for(config(), "POST", path);
        assert_eq!(step, Step::Continue, "{path}");
        let touched: Vec<&String> = host.headers.keys().collect();
        assert_eq!(
            touched,
            ["x-gateway-cluster"],
            "{path}: only the spoofable cluster header is removed"
        );
    }
}

#[test]
fn a_stream_flag_that_is_not_a_boolean_is_refused_before_routing() {
    for body in [
        &br#"{"model":"model-a","stream":"true"}"#[..],
        br#"{"model":"model-a","stream":1}"#,
        br#"{"model":"model-a","stream":true,"stream_options":"yes"}"#,
    ] {
        let mut host = FakeHost::default();
        let (mut ex, _) =
            start(&mut host, &head("POST", "/v1/chat/completions", Some("Bearer sk-live-good")));
        let Step::Refuse(e) = ex.on_request_body(&mut host, body) else {
            panic!("expected a refusal")
        };
        assert_eq!((e.status(), e.code()), (400, "invalid_type"));
        assert_eq!(host.headers["x-gateway-cluster"], None, "never routed");
        assert_eq!(host.body, None, "nothing injected");
        assert_eq!(
            ex.finish(1, Ending::Complete).unwrap().gateway_error.as_deref(),
            Some("invalid_type")
        );
    }
}
