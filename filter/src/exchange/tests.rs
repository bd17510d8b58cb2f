//! The exchange state machine driven through a recording fake host.

use std::collections::BTreeMap;

use super::*;
use crate::config::ModelRoute;
use crate::feed::hash_key;
use crate::usage::UsageSource;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod accounting;
mod endpoints;
mod limited;

#[derive(Default)]
struct FakeHost {
    headers: BTreeMap<String, Option<String>>,
    route_cache_cleared: u32,
    body: Option<Vec<u8>>,
}

impl Host for FakeHost {
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        self.headers.insert(name.to_owned(), value.map(str::to_owned));
    }
    fn clear_route_cache(&mut self) {
        self.route_cache_cleared += 1;
    }
    fn set_request_body(&mut self, body: &[u8]) {
        self.body = Some(body.to_vec());
    }
}

fn config() -> Rc<PluginConfig> {
    let mut models = BTreeMap::new();
    models.insert("model-a".to_owned(), ModelRoute { cluster: "cluster_a".into(), api_key: None });
    models.insert(
        "model-b".to_owned(),
        ModelRoute { cluster: "cluster_b".into(), api_key: Some("upstream-secret".into()) },
    );
    Rc::new(PluginConfig::for_tests(models, 64, "x-gateway-cluster", "/internal/state"))
}

fn keys() -> Credentials {
    let doc = serde_json::json!({"keys": [
        {"hash": hash_key("sk-live-good"), "appId": 7, "keyId": 70, "status": "enabled", "expiresAt": null},
        {"hash": hash_key("sk-live-off"), "appId": 8, "keyId": 80, "status": "disabled", "expiresAt": null},
        {"hash": hash_key("sk-live-only-a"), "appId": 9, "keyId": 90, "status": "enabled", "expiresAt": null, "models": ["model-a"]}
    ]});
    Credentials::parse(doc.to_string().as_bytes()).unwrap()
}

fn head(method: &str, path: &str, auth: Option<&str>) -> RequestHead {
    RequestHead { method: method.into(), path: path.into(), authorization: auth.map(Into::into) }
}

fn start(host: &mut FakeHost, h: &RequestHead) -> (Exchange, Step) {
    let mut ex = Exchange::new(config(), 1_000);
    let step = ex.on_request_headers(host, h, Some(Authority::new(&keys(), None)), 0);
    (ex, step)
}

#[test]
fn a_good_key_is_stripped_and_the_body_routes_by_model() {
    let mut host = FakeHost::default();
    let (mut ex, step) =
        start(&mut host, &head("POST", "/v1/chat/completions", Some("Bearer sk-live-good")));
    assert_eq!(step, Step::ReadBody);
    assert_eq!(host.headers["authorization"], None);
    let step = ex.on_request_body(&mut host, br#"{"model":"model-b","stream":true}"#);
    assert_eq!(step, Step::Continue);
    assert_eq!(host.headers["x-gateway-cluster"].as_deref(), Some("cluster_b"));
    assert_eq!(
        host.headers["authorization"].as_deref(),
        Some("Bearer upstream-secret"),
        "the model's own key"
    );
    assert_eq!(host.route_cache_cleared, 1);

    let injected: serde_json::Value = serde_json::from_slice(host.body.as_ref().unwrap()).unwrap();
    assert_eq!(injected["stream_options"]["include_usage"], true);
    assert_eq!(
        host.headers["content-length"].as_deref(),
        Some(&*host.body.as_ref().unwrap().len().to_string())
    );

    assert!(
        ex.on_response_headers(200, Some("text/event-stream; charset=utf-8"), None),
        "rewritten for the caller"
    );
    let first = ex.on_response_body(b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":{\"prompt_tokens\":4,\"total_tokens\":5,\"completion_tokens\":1}}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,", false, 1_005);
    assert_eq!(
        first.unwrap(),
        b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n".to_vec()
    );
    let rest = ex.on_response_body(
        b"\"total_tokens\":5,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n",
        true,
        1_009,
    );
    assert_eq!(rest.unwrap(), b"data: [DONE]\n\n".to_vec(), "the caller did not ask for usage");
    let record = ex.finish(1_010, Ending::Complete).unwrap();
    assert_eq!(record.app_id, Some(7));
    assert_eq!(record.key_id, Some(70));
    assert_eq!(record.model.as_deref(), Some("model-b"));
    assert_eq!(record.cluster.as_deref(), Some("cluster_b"));
    assert!(record.stream);
    assert_eq!(record.status, 200);
    assert_eq!((record.usage.prompt_tokens, record.usage.completion_tokens), (4, 1));
    assert_eq!(record.usage_source, UsageSource::Reported);
    assert_eq!(record.ttft_ms, Some(5));
    assert_eq!(record.duration_ms, Some(10));
    assert!(ex.finish(1_011, Ending::Complete).is_none(), "a record is given once");
}

#[test]
fn a_spoofed_cluster_header_is_always_removed() {
    let mut host = FakeHost::default();
    let (_, step) = start(&mut host, &head("POST", "/api/apps", None));
    assert_eq!(step, Step::Continue);
    assert_eq!(host.headers["x-gateway-cluster"], None);
    let mut host = FakeHost::default();
    let (_, step) = start(&mut host, &head("POST", "/v1/chat/completions", None));
    assert_eq!(step, Step::Refuse(GatewayError::MissingCredential));
    assert_eq!(host.headers["x-gateway-cluster"], None);
}

#[test]
fn credentials_are_checked() {
    let cases = [
        (None, "/v1/completions", GatewayError::MissingCredential),
        (Some("Bearer sk-live-bad"), "/v1/completions", GatewayError::InvalidCredential),
        (Some("Bearer sk-live-off"), "/v1/completions", GatewayError::AppDisabled),
        (None, "/v1/completions?token=sk-live-nope", GatewayError::InvalidCredential),
    ];
    for (auth, path, expected) in cases {
        let mut host = FakeHost::default();
        let (mut ex, step) = start(&mut host, &head("POST", path, auth));
        assert_eq!(step, Step::Refuse(expected.clone()));
        assert_eq!(ex.error(), Some(&expected), "what the metrics count");
        let record = ex.finish(1_001, Ending::Complete).unwrap();
        assert_eq!(record.status, expected.status());
        assert_eq!(record.gateway_error.as_deref(), Some(expected.code()));
        assert_eq!(record.app_id, None);
    }
}

#[test]
fn before_any_state_keys_get_not_ready() {
    let mut host = FakeHost::default();
    let mut ex = Exchange::new(config(), 0);
    let step = ex.on_request_headers(
        &mut host,
        &head("POST", "/v1/x", Some("Bearer sk-live-good")),
        None,
        0,
    );
    assert_eq!(step, Step::Refuse(GatewayError::NotReady));
}

#[test]
fn a_query_token_is_removed_from_the_path() {
    let mut host = FakeHost::default();
    let (_, step) =
        start(&mut host, &head("POST", "/v1/chat/completions?token=sk-live-good&x=1", None));
    assert_eq!(step, Step::ReadBody);
    assert_eq!(host.headers[":path"].as_deref(), Some("/v1/chat/completions?x=1"));
}

#[test]
fn bodies_that_cannot_route_are_refused() {
    let cases: [(&[u8], GatewayError); 3] = [
        (b"{nope", GatewayError::BadJson(String::new())),
        (br#"{"messages":[]}"#, GatewayError::MissingModel),
        (br#"{"model":"gpt-9"}"#, GatewayError::UnknownModel("gpt-9".into())),
    ];
    for (body, expected) in cases {
        let mut host = FakeHost::default();
        let (mut ex, _) =
            start(&mut host, &head("POST", "/v1/completions", Some("Bearer sk-live-good")));
        match ex.on_request_body(&mut host, body) {
            Step::Refuse(e) => assert_eq!(e.status(), expected.status()),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(host.headers["x-gateway-cluster"], None, "never routed");
    }
    let mut host = FakeHost::default();
    let (ex, _) = start(&mut host, &head("POST", "/v1/completions", Some("Bearer sk-live-good")));
    assert_eq!(ex.check_body_size(65), Err(GatewayError::BodyTooLarge(64)));
}

#[test]
fn a_body_over_the_limit_is_recorded_like_any_refusal() {
    let mut host = FakeHost::default();
    let (mut ex, _) =
        start(&mut host, &head("POST", "/v1/completions", Some("Bearer sk-live-good")));
    let body = format!(r#"{{"model":"model-a","prompt":"{}"}}"#, "x".repeat(64));
    let step = ex.on_request_body(&mut host, body.as_bytes());
    assert_eq!(step, Step::Refuse(GatewayError::BodyTooLarge(64)));
    assert_eq!(ex.error(), Some(&GatewayError::BodyTooLarge(64)));
    let record = ex.finish(1_001, Ending::Complete).unwrap();
    assert_eq!(
        (record.status, record.gateway_error.as_deref()),
        (413, Some("request_too_large")),
        "a status, not 0: counted as 4xx and logged as the 413 it is"
    );
    assert_eq!(host.headers["x-gateway-cluster"], None, "never routed");
}

#[test]
fn an_expired_jwt_is_refused_as_an_expired_token() {
    use crate::jwt::testing::{sign, KEY_A, NOW};
    let doc = serde_json::json!({
        "keys": [],
        "users": [{"id": 42, "status": "enabled", "tokenVersion": 3}],
        "jwtKeys": [{"kid": "k1", "alg": "EdDSA", "publicKeyHex": KEY_A.1}]
    });
    let credentials = Credentials::parse(doc.to_string().as_bytes()).unwrap();
    let expired = sign(KEY_A.0, "k1", "42", Some(NOW - 600), None);
    let mut host = FakeHost::default();
    let mut ex = Exchange::new(config(), 1_000);
    let h = head("POST", "/v1/completions", Some(&format!("Bearer {expired}")));
    let step = ex.on_request_headers(&mut host, &h, Some(Authority::new(&credentials, None)), NOW);
    assert_eq!(step, Step::Refuse(GatewayError::ExpiredToken));
    assert_eq!(ex.credential_lookup(), None, "no newer credentials renew it");
    let record = ex.finish(1_001, Ending::Complete).unwrap();
    assert_eq!((record.status, record.gateway_error.as_deref()), (401, Some("expired_token")));
}

#[test]
fn models_are_listed_by_the_gateway() {
    let mut host = FakeHost::default();
    let (_, step) = start(&mut host, &head("GET", "/v1/models", Some("Bearer sk-live-good")));
    let Step::Answer(body) = step else { panic!("expected an answer") };
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> =
        v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["model-a", "model-b"]);
    let mut host = FakeHost::default();
    let (_, step) = start(&mut host, &head("GET", "/v1/files", Some("Bearer sk-live-good")));
    assert_eq!(step, Step::Refuse(GatewayError::UnknownPath("/v1/files".into())));
}

#[test]
fn a_cut_off_non_streamed_body_counts_nothing_but_is_recorded() {
    let mut host = FakeHost::default();
    let (mut ex, _) =
        start(&mut host, &head("POST", "/v1/completions", Some("Bearer sk-live-good")));
    ex.on_request_body(&mut host, br#"{"model":"model-a"}"#);
    assert!(!ex.on_response_headers(200, Some("application/json"), None));
    assert_eq!(ex.on_response_body(b"{\"usage\":{\"prompt_tokens\":1", false, 1_002), None);
    let record = ex.finish(1_003, Ending::ClientGone).unwrap();
    assert!(record.client_disconnected);
    assert_eq!(record.usage_source, UsageSource::None);
}

#[test]
fn only_envoys_downstream_termination_flag_blames_the_client() {
    assert_eq!(Ending::unfinished(DOWNSTREAM_CONNECTION_TERMINATION), Ending::ClientGone);
    assert_eq!(Ending::unfinished(DOWNSTREAM_CONNECTION_TERMINATION | 0x10), Ending::ClientGone);
    // UR (upstream reset), UC, SI (stream idle timeout), UPE (upstream protocol error): the upstream's.
    for flags in [0, 0x10, 0x40, 0x1_0000, 0x80_0000] {
        assert_eq!(Ending::unfinished(flags), Ending::Cut, "{flags:#x}");
    }
    let mut host = FakeHost::default();
    let (mut ex, _) =
        start(&mut host, &head("POST", "/v1/completions", Some("Bearer sk-live-good")));
    ex.on_request_body(&mut host, br#"{"model":"model-a"}"#);
    assert!(!ex.on_response_headers(200, Some("application/json"), None));
    let record = ex.finish(1_003, Ending::Cut).unwrap();
    assert!(!record.client_disconnected, "the upstream stopped, not the client");
}

#[test]
fn an_app_uses_only_its_allowed_models() {
    let mut host = FakeHost::default();
    let (mut ex, _) =
        start(&mut host, &head("POST", "/v1/chat/completions", Some("Bearer sk-live-only-a")));
    let step = ex.on_request_body(&mut host, br#"{"model":"model-b"}"#);
    assert_eq!(step, Step::Refuse(GatewayError::ModelNotAllowed("model-b".into())));
    assert_eq!(host.headers["x-gateway-cluster"], None);
    let (mut ex, _) =
        start(&mut host, &head("POST", "/v1/chat/completions", Some("Bearer sk-live-only-a")));
    assert_eq!(ex.on_request_body(&mut host, br#"{"model":"model-a"}"#), Step::Continue);
    assert_eq!(host.headers["authorization"], None, "model-a has no upstream key: nothing is sent");

    let (_, step) = start(&mut host, &head("GET", "/v1/models", Some("Bearer sk-live-only-a")));
    let Step::Answer(body) = step else { panic!("expected an answer") };
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "only the allowed model is listed");
}

#[test]
fn a_refused_credential_says_what_a_lookup_could_lift() {
    let mut host = FakeHost::default();
    let (ex, step) = start(&mut host, &head("GET", "/v1/models", Some("Bearer sk-live-new")));
    assert_eq!(step, Step::Refuse(GatewayError::InvalidCredential));
    assert_eq!(
        ex.credential_lookup(),
        Some(LookupKey::Key(crate::feed::key_digest("sk-live-new")))
    );
    let (ex, step) = start(&mut host, &head("GET", "/v1/models", Some("Bearer sk-live-off")));
    assert_eq!(
        (step, ex.credential_lookup()),
        (
            Step::Refuse(GatewayError::AppDisabled),
            Some(LookupKey::Key(crate::feed::key_digest("sk-live-off")))
        )
    );
    let (ex, _) = start(&mut host, &head("GET", "/v1/models", Some("Bearer sk-live-good")));
    assert_eq!(ex.credential_lookup(), None);
    let (ex, _) = start(&mut host, &head("GET", "/v1/models", None));
    assert_eq!(ex.credential_lookup(), None, "nothing to look up");
}
