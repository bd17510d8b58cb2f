//! Shared helpers of the integration tests: calling the router in-process, reading the recorded
//! fixtures, and the *shape* of a JSON text (its keys in order, at every level, and value kinds).

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::fmt;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use mock_vllm::{MockConfig, MockState};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use tower::ServiceExt;

/// The model the tests' mock serves.
pub const MODEL: &str = "test-model";

/// A state serving [`MODEL`] with the default knobs.
pub fn state() -> MockState {
    state_with(MockConfig::default())
}

/// A state serving [`MODEL`] with `config`'s knobs.
pub fn state_with(config: MockConfig) -> MockState {
    MockState::new(MockConfig { models: vec![MODEL.to_owned()], ..config })
}

/// A recorded fixture from `shared/fixtures/`.
pub fn fixture(name: &str) -> String {
    let path = format!("{}/../../shared/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// A whole reply, its body as the frames it came in.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub frames: Vec<Bytes>,
}

impl Reply {
    pub fn body(&self) -> Vec<u8> {
        self.frames.concat()
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body()).expect("UTF-8 body")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body()).expect("JSON body")
    }

    pub fn content_type(&self) -> &str {
        self.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The `data:` payloads of an SSE body, checking vLLM's framing on the way.
    pub fn events(&self) -> Vec<String> {
        events(&self.text())
    }
}

/// The `data:` payloads of an SSE text: each event exactly `data: <payload>\n\n`, LF only.
pub fn events(text: &str) -> Vec<String> {
    assert!(!text.contains('\r'), "LF only");
    assert!(text.ends_with("\n\n"), "ends with a blank line");
    text.strip_suffix("\n\n")
        .unwrap()
        .split("\n\n")
        .map(|event| {
            let payload = event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data line: {event:?}"));
            assert!(!payload.contains('\n'), "one line per event: {event:?}");
            payload.to_owned()
        })
        .collect()
}

/// The named events of a Responses stream, parsed (see [`named_event_data`]).
pub fn named_events(text: &str) -> Vec<Value> {
    named_event_data(text).iter().map(|data| serde_json::from_str(data).unwrap()).collect()
}

/// The `data` of each named event of a Responses stream: each exactly
/// `event: <type>\ndata: <json>\n\n`, LF only, the JSON's `type` equal to the event name.
pub fn named_event_data(text: &str) -> Vec<String> {
    assert!(!text.contains('\r'), "LF only");
    assert!(text.ends_with("\n\n"), "ends with a blank line");
    text.strip_suffix("\n\n")
        .unwrap()
        .split("\n\n")
        .map(|event| {
            let (name, data) = event
                .strip_prefix("event: ")
                .and_then(|e| e.split_once("\ndata: "))
                .unwrap_or_else(|| panic!("not a named event: {event:?}"));
            assert!(!data.contains('\n'), "one data line: {event:?}");
            let value: Value = serde_json::from_str(data).unwrap();
            assert_eq!(value["type"], name, "{event}");
            data.to_owned()
        })
        .collect()
}

/// The shape of the value at `path` (object keys, or array indexes) in a JSON text.
pub fn shape_at(json: &str, path: &[&str]) -> Shape {
    let mut at = shape(json);
    for step in path {
        at = match at {
            Shape::Object(entries) => entries.into_iter().find(|(k, _)| k == step).expect(step).1,
            Shape::Array(items) => items.into_iter().nth(step.parse().unwrap()).expect(step),
            other => panic!("{step}: not a container: {other:?}"),
        };
    }
    at
}

/// The keys, in order, of the object at `path` in a JSON text.
pub fn keys_at(json: &str, path: &[&str]) -> Vec<String> {
    match shape_at(json, path) {
        Shape::Object(entries) => entries.into_iter().map(|(k, _)| k).collect(),
        other => panic!("not an object: {other:?}"),
    }
}

/// The JSON chunks of a `data:` stream (without `[DONE]`, which must be last).
pub fn chunks(reply: &Reply) -> Vec<Value> {
    assert_eq!(reply.status, 200, "{}", reply.text());
    let mut events = reply.events();
    assert_eq!(events.pop().as_deref(), Some("[DONE]"), "[DONE] last");
    events.iter().map(|e| serde_json::from_str(e).unwrap()).collect()
}

/// `POST path` with a JSON body and extra headers.
pub async fn post_with(
    state: &MockState,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(state, request.body(Body::from(body.to_string())).unwrap()).await
}

/// Sends `request` to a fresh router on `state`.
pub async fn send(state: &MockState, request: Request<Body>) -> Reply {
    let response = mock_vllm::app(state.clone()).oneshot(request).await.unwrap();
    let (parts, mut body) = response.into_parts();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            frames.push(data);
        }
    }
    Reply { status: parts.status, headers: parts.headers, frames }
}

/// `POST path` with a JSON body.
pub async fn post(state: &MockState, path: &str, body: &Value) -> Reply {
    post_raw(state, path, body.to_string()).await
}

/// `POST path` with any body.
pub async fn post_raw(state: &MockState, path: &str, body: impl Into<Body>) -> Reply {
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap();
    send(state, request).await
}

/// `GET path`.
pub async fn get(state: &MockState, path: &str) -> Reply {
    send(state, Request::get(path).body(Body::empty()).unwrap()).await
}

/// The shape of a JSON value: keys in their order at every level, array items, value kinds.
#[derive(PartialEq)]
pub enum Shape {
    Null,
    Bool,
    Number,
    String,
    Array(Vec<Shape>),
    Object(Vec<(String, Shape)>),
}

/// The shape of a JSON text.
pub fn shape(json: &str) -> Shape {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

impl fmt::Debug for Shape {
    /// Compact, JSON-like, so that a failed `assert_eq!` shows where two shapes part.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("null"),
            Self::Bool => f.write_str("bool"),
            Self::Number => f.write_str("number"),
            Self::String => f.write_str("string"),
            Self::Array(items) => f.debug_list().entries(items).finish(),
            Self::Object(entries) => {
                f.debug_map().entries(entries.iter().map(|(k, v)| (k, v))).finish()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ShapeVisitor)
    }
}

struct ShapeVisitor;

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Shape, E> {
        Ok(Shape::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::Bool)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::Number)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::Number)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::Number)
    }
    fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
        Ok(Shape::String)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Shape::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<String, Shape>()? {
            entries.push(entry);
        }
        Ok(Shape::Object(entries))
    }
}

/// The kind of a streamed chat chunk: `first` (role), `content`, `finish` or `usage`.
pub fn chunk_kind(chunk: &Value) -> &'static str {
    let choices = chunk["choices"].as_array().expect("choices");
    match choices.first() {
        None => "usage",
        Some(choice) if choice["finish_reason"].is_string() => "finish",
        Some(choice) if choice["delta"].get("role").is_some() => "first",
        Some(_) => "content",
    }
}
