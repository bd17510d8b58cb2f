//! The driver over a fake host: whatever decides a refusal (the exchange, the body's size, the
//! worker's budget), the reply, the record and the metrics all say what the error says.

use std::cell::RefCell;
use std::rc::Rc;

use super::waiting::SharedUpkeep;
use super::*;
use crate::body_budget::BodyBudget;
use crate::config::StateFeed;
use crate::control_plane::{CallAnswer, CallRequest};
use crate::exchange::Host;
use crate::feed::hash_key;
use crate::limits::float::Float;
use crate::metrics::Observation;
use crate::record::UsageRecord;
use crate::state_sync::testing::FakeShared;
use crate::state_sync::SharedData;
use crate::worker::Worker;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

const KEY: &str = "sk-live-good";

/// One request's stream: what the driver sent, stored and counted.
#[derive(Default)]
struct FakeStream {
    shared: FakeShared,
    replies: Vec<(u16, serde_json::Value)>,
    records: Vec<UsageRecord>,
    counted: Vec<String>,
    /// The request body Envoy holds (spaces when empty).
    body: Vec<u8>,
    /// The cluster the request was routed to.
    cluster: Option<String>,
}

impl Host for FakeStream {
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        if name == crate::config::DEFAULT_CLUSTER_HEADER {
            self.cluster = value.map(str::to_owned);
        }
    }
    fn clear_route_cache(&mut self) {}
    fn set_request_body(&mut self, _: &[u8]) {}
}

impl Calls for FakeStream {
    fn now_ms(&self) -> u64 {
        1_000
    }
    fn emit(&mut self, observations: &[Observation]) {
        self.counted.extend(observations.iter().map(|o| o.name.clone()));
    }
    fn dispatch(&mut self, _: &StateFeed, _: &CallRequest) -> Option<u32> {
        None
    }
    fn shared(&mut self) -> &mut dyn SharedData {
        &mut self.shared
    }
}

impl StreamHost for FakeStream {
    fn activate(&self) -> bool {
        true
    }
    fn request_body(&mut self, len: usize) -> Vec<u8> {
        match self.body.get(..len) {
            Some(body) if !body.is_empty() => body.to_vec(),
            _ => vec![b' '; len],
        }
    }
    fn response_body(&mut self, _: usize) -> Vec<u8> {
        Vec::new()
    }
    fn replace_response_body(&mut self, _: usize, _: &[u8]) {}
    fn set_response_header(&mut self, _: &str, _: &str) {}
    fn remove_response_header(&mut self, _: &str) {}
    fn send_reply(&mut self, status: u16, body: &[u8], _: &[(&str, String)]) {
        self.replies.push((status, serde_json::from_slice(body).unwrap()));
    }
    fn resume_request(&mut self) {}
    fn reset_response(&mut self) {}
    fn store_record(&mut self, bytes: &[u8]) {
        self.records.push(serde_json::from_slice(bytes).unwrap());
    }
    fn response_flags(&self) -> u64 {
        0
    }
}

fn config() -> Rc<PluginConfig> {
    let config = serde_json::json!({
        "models": {"model-a": {"cluster": "cluster_a"}},
        "state": {"cluster": "cp", "token": "0123456789abcdef"},
        "max_request_body_bytes": 64,
        "max_buffered_request_bytes": 100
    });
    Rc::new(PluginConfig::parse(config.to_string().as_bytes()).unwrap())
}

/// A worker holding credentials with [`KEY`].
fn worker(config: &PluginConfig) -> SharedWorker<FakeStream> {
    let document = serde_json::json!({"epoch": "e", "version": 1, "keys": [
        {"hash": hash_key(KEY), "appId": 7, "keyId": 70, "status": "enabled", "expiresAt": null}
    ]});
    let mut shared = FakeShared::default();
    let mut worker = Worker::new(&config.state);
    worker.next_state_call(&mut shared, 0).unwrap();
    worker.state_call_sent(1);
    let answer = CallAnswer {
        status: Some(200),
        etag: Some("\"v1\"".into()),
        delta: false,
        body: document.to_string().into_bytes(),
    };
    worker.state_call_answered(&mut shared, 0, 1, &answer);
    assert!(worker.authority().is_some());
    Rc::new(RefCell::new(worker))
}

/// A request whose worker buffers at most `budget` request bytes.
fn request(budget: usize) -> (Rc<RefCell<Request<FakeStream>>>, SharedWorker<FakeStream>) {
    let config = config();
    let worker = worker(&config);
    let budget = Rc::new(RefCell::new(BodyBudget::new(budget)));
    let limits = Rc::new(RefCell::new(LimitsGlue::new(
        "envoy-1".into(),
        SharedUpkeep::default(),
        Float::default(),
    )));
    (Request::shared(FakeStream::default(), config, budget, limits), worker)
}

fn post(authorization: Option<&str>) -> RequestHead {
    RequestHead {
        method: "POST".into(),
        path: "/v1/completions".into(),
        authorization: authorization.map(str::to_owned),
    }
}

/// Refused with `status` and `code`: the reply, the record and the requests counted by status
/// class say so.
fn assert_refused(host: &FakeStream, status: u16, code: &str) {
    let [(replied, body)] = &host.replies[..] else { panic!("one reply: {:?}", host.replies) };
    assert_eq!((*replied, body["error"]["code"].as_str()), (status, Some(code)));
    let [record] = &host.records[..] else { panic!("one record: {:?}", host.records) };
    assert_eq!((record.status, record.gateway_error.as_deref()), (status, Some(code)));
    let class = format!("status_class={}xx", status / 100);
    assert!(host.counted[0].ends_with(&class), "{:?}", host.counted);
}

#[test]
fn a_body_over_the_limit_is_recorded_and_counted_with_its_status() {
    let (request, worker) = request(1_000);
    let mut request = request.borrow_mut();
    let head = post(Some(&format!("Bearer {KEY}")));
    assert!(matches!(request.on_headers(&worker, head, false), Headers::Done(Flow::Pause)));
    assert_eq!(request.on_body(40, false), Flow::Pause, "still within the limit");
    assert!(request.host.replies.is_empty());
    assert_eq!(request.on_body(65, false), Flow::Pause);
    assert_refused(&request.host, 413, "request_too_large");
    assert_eq!(request.host.counted[0], "vllm_gateway_requests_total;model=none;status_class=4xx");
}

#[test]
fn a_busy_worker_is_recorded_and_counted_with_its_status() {
    let (request, worker) = request(10);
    let mut request = request.borrow_mut();
    let head = post(Some(&format!("Bearer {KEY}")));
    assert!(matches!(request.on_headers(&worker, head, false), Headers::Done(Flow::Pause)));
    assert_eq!(request.on_body(20, false), Flow::Pause);
    assert_refused(&request.host, 503, "overloaded");
}

#[test]
fn an_authentication_failure_is_counted_as_the_error_says() {
    let (request, worker) = request(1_000);
    let mut request = request.borrow_mut();
    assert!(matches!(request.on_headers(&worker, post(None), false), Headers::Done(Flow::Pause)));
    assert_refused(&request.host, 401, "missing_api_key");
    assert_eq!(request.host.counted[1], "vllm_gateway_auth_failures_total;reason=missing_api_key");
}

/// A body that ends with trailers (HTTP/2 or chunked): no body callback with the end of the
/// stream comes, so the trailers end it and the request is routed then, not held until Envoy's
/// timeout.
#[test]
fn a_body_ended_by_trailers_is_read_and_routed() {
    let (request, worker) = request(1_000);
    let mut request = request.borrow_mut();
    request.host.body = br#"{"model":"model-a","prompt":"hi"}"#.to_vec();
    let head = post(Some(&format!("Bearer {KEY}")));
    assert!(matches!(request.on_headers(&worker, head, false), Headers::Done(Flow::Pause)));
    assert_eq!(request.on_body(10, false), Flow::Pause);
    let whole = request.host.body.len();
    assert_eq!(request.on_body(whole, false), Flow::Pause);
    assert_eq!(request.on_trailers(), Flow::Continue);
    assert_eq!(request.host.cluster.as_deref(), Some("cluster_a"));
    assert!(request.host.replies.is_empty(), "{:?}", request.host.replies);
    assert_eq!(request.on_trailers(), Flow::Continue, "decided: later trailers pass");
}

/// Trailers after a body that is not JSON: refused as any such body is, at once.
#[test]
fn a_bad_body_ended_by_trailers_is_refused_at_once() {
    let (request, worker) = request(1_000);
    let mut request = request.borrow_mut();
    let head = post(Some(&format!("Bearer {KEY}")));
    assert!(matches!(request.on_headers(&worker, head, false), Headers::Done(Flow::Pause)));
    assert_eq!(request.on_body(8, false), Flow::Pause);
    request.on_trailers();
    let [(status, _)] = &request.host.replies[..] else { panic!("{:?}", request.host.replies) };
    assert_eq!(*status, 400);
}
