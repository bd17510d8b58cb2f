//! One request/response exchange through the gateway, as a pure state machine.
//!
//! The request driver ([`crate::request`], for both glues) calls one method per Envoy callback
//! and does what the returned [`Step`] says; header edits go through the [`Host`] trait, so all
//! of this runs (and is tested) natively.
//!
//! A `/v1/*` request is tracked: its credential is checked, its `accept-encoding` removed (so the
//! upstream answers uncompressed and the counter can read it; Envoy compresses towards the client
//! itself), and it is forwarded only to the endpoints the configuration lists
//! ([`PluginConfig::endpoints`]); `GET /v1/models` is answered here, any other path gets 404.
//! Every other path passes untouched.

use std::rc::Rc;

use crate::auth::{Authority, Refusal};
use crate::config::{PluginConfig, UsageInjection};
use crate::credential::{self, path_only, strip_token_param};
use crate::error::GatewayError;
use crate::feed::limits::Subject;
use crate::inject::{ask_for_usage, UsageAsk};
use crate::keys::{AppRules, Credentials};
use crate::lookup::LookupKey;
use crate::record::UsageRecord;
use crate::request_body::{self, BodyEdit, RequestFacts};
use crate::usage::{BodyAccounting, StreamAccounting};

pub use response::{Ending, DOWNSTREAM_CONNECTION_TERMINATION};

/// The host's side of request editing.
pub trait Host {
    /// Sets (`Some`) or removes (`None`) a request header, replacing any value the client sent.
    fn set_request_header(&mut self, name: &str, value: Option<&str>);
    /// Makes Envoy pick the route again after a header the route depends on changed.
    fn clear_route_cache(&mut self);
    /// Replaces the (buffered) request body.
    fn set_request_body(&mut self, body: &[u8]);
}

/// What the glue should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Let the request go on.
    Continue,
    /// Buffer the whole request body, then call [`Exchange::on_request_body`].
    ReadBody,
    /// Answer with this error instead of forwarding.
    Refuse(GatewayError),
    /// Answer with this JSON body and status 200.
    Answer(Vec<u8>),
}

/// The request line and the headers the gateway looks at.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    /// `:method`.
    pub method: String,
    /// `:path`, with its query.
    pub path: String,
    /// `authorization`.
    pub authorization: Option<String>,
}

#[derive(Debug)]
enum Counting {
    Stream(Box<StreamAccounting>),
    Body(Box<BodyAccounting>),
    /// A reply still compressed (`content-encoding`): its bytes are not text, nothing is read.
    Opaque,
}

/// What kind of endpoint a request goes to, as far as counting is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// `/v1/chat/completions`: every choice answers one prompt.
    Chat,
    /// `/v1/responses`: no `stream_options` (nothing is injected), usage in its own events.
    Responses,
    /// `/v1/embeddings`: a prompt, no completion.
    Embeddings,
    /// Anything else listed: completions-like (choice `index` answers prompt `index / n`).
    Other,
}

impl Endpoint {
    fn of(path: &str) -> Self {
        match path {
            "/v1/chat/completions" => Self::Chat,
            "/v1/responses" => Self::Responses,
            "/v1/embeddings" => Self::Embeddings,
            _ => Self::Other,
        }
    }
}

/// The state of one exchange.
pub struct Exchange {
    config: Rc<PluginConfig>,
    /// Whether this is a `/v1/*` request the gateway accounts for.
    tracked: bool,
    endpoint: Endpoint,
    /// The request's `n` (choices per prompt).
    n: u64,
    record: UsageRecord,
    /// What the gateway answered the exchange with: its refusal, or the error event that cut its
    /// stream off (see [`Self::error`]).
    error: Option<GatewayError>,
    started_ms: u64,
    counting: Option<Counting>,
    /// What the caller asked for, when usage was injected into its request.
    injected: Option<UsageAsk>,
    /// The models the caller's app may use (empty: all).
    rules: Rc<AppRules>,
    /// When the credential was refused: what a lookup could lift the refusal with.
    lookup: Option<LookupKey>,
    finished: bool,
    /// The caller's limits, and what the request was granted of them.
    limited: limited::Limited,
}

impl Exchange {
    /// A new exchange starting at `now_ms`.
    pub fn new(config: Rc<PluginConfig>, now_ms: u64) -> Self {
        Self {
            config,
            tracked: false,
            endpoint: Endpoint::Other,
            n: 1,
            record: UsageRecord::default(),
            error: None,
            started_ms: now_ms,
            counting: None,
            injected: None,
            rules: Rc::default(),
            lookup: None,
            finished: false,
            limited: limited::Limited::default(),
        }
    }

    /// When the exchange started (Unix milliseconds).
    pub fn started_ms(&self) -> u64 {
        self.started_ms
    }

    /// Whether the gateway accounts for this exchange (it is a `/v1/*` request).
    pub fn is_tracked(&self) -> bool {
        self.tracked
    }

    /// When the credential was refused for a reason a newer state could lift: the credential to
    /// look up at the control plane before believing the refusal.
    pub fn credential_lookup(&self) -> Option<LookupKey> {
        self.lookup
    }

    /// Request headers: authenticate, strip the credential, decide whether the body is needed.
    /// `keys` is `None` until the worker has a state (the request is refused as not ready).
    pub fn on_request_headers(
        &mut self,
        host: &mut dyn Host,
        head: &RequestHead,
        keys: Option<Authority<'_>>,
        now_secs: i64,
    ) -> Step {
        // A cluster header from the client never routes anything.
        host.set_request_header(&self.config.cluster_header, None);
        let path = path_only(&head.path);
        if !path.starts_with("/v1/") {
            return Step::Continue;
        }
        self.tracked = true;
        self.endpoint = Endpoint::of(path);
        // The upstream answers uncompressed, so what it says can be counted.
        host.set_request_header("accept-encoding", None);
        if let Err(e) = self.authenticate(head, keys, now_secs) {
            return self.refuse(e);
        }
        host.set_request_header("authorization", None);
        if let Some(clean) = strip_token_param(&head.path) {
            host.set_request_header(":path", Some(&clean));
        }
        if head.method == "GET" && path == "/v1/models" {
            self.record.status = 200;
            return Step::Answer(self.models_list());
        }
        if !self.config.forwards(path) {
            return self.refuse(GatewayError::UnknownPath(path.to_owned()));
        }
        if head.method == "POST" {
            return Step::ReadBody;
        }
        match self.config.default_model.clone() {
            Some(model) => {
                self.record.model = Some(model.clone());
                self.route_to(host, &model)
            }
            None => self.refuse(GatewayError::UnknownPath(path.to_owned())),
        }
    }

    fn authenticate(
        &mut self,
        head: &RequestHead,
        keys: Option<Authority<'_>>,
        now_secs: i64,
    ) -> Result<(), GatewayError> {
        let credential = credential::find(head.authorization.as_deref(), &head.path)
            .ok_or(GatewayError::MissingCredential)?;
        let keys = keys.ok_or(GatewayError::NotReady)?;
        let token = credential.token();
        if Credentials::is_jwt(token) {
            let (user_id, user) =
                keys.authorize_jwt(token, now_secs).map_err(|r| self.refused(r))?;
            self.record.user_id = Some(user_id);
            self.limit_caller(Subject::User(user_id), user.limits.clone());
            return Ok(());
        }
        let key = keys.authorize_key(token, now_secs).map_err(|r| self.refused(r))?;
        self.record.app_id = Some(key.app_id);
        self.record.key_id = Some(key.key_id);
        self.rules = key.rules.clone();
        self.limit_caller(Subject::App(key.app_id), key.rules.limits.clone());
        Ok(())
    }

    /// Remembers what could lift a credential's refusal; the refusal itself.
    fn refused(&mut self, refusal: Refusal) -> GatewayError {
        self.lookup = refusal.lookup;
        refusal.error
    }

    fn allows(&self, model: &str) -> bool {
        self.rules.allows(model)
    }

    /// Points the request at `model`'s cluster (replacing any client value) and sets the
    /// upstream's own key, if the model has one.
    fn route_to(&mut self, host: &mut dyn Host, model: &str) -> Step {
        let Some(route) = self.config.route(model) else {
            return self.refuse(GatewayError::UnknownModel(model.to_owned()));
        };
        if !self.allows(model) {
            return self.refuse(GatewayError::ModelNotAllowed(model.to_owned()));
        }
        let (cluster, api_key) = (route.cluster.clone(), route.api_key.clone());
        host.set_request_header(&self.config.cluster_header, Some(&cluster));
        if let Some(key) = api_key {
            host.set_request_header("authorization", Some(&format!("Bearer {key}")));
        }
        host.clear_route_cache();
        self.record.cluster = Some(cluster);
        Step::Continue
    }

    /// Whether a body of `size` bytes so far is still within the limit (the caller refuses the
    /// request with the error if not).
    pub fn check_body_size(&self, size: usize) -> Result<(), GatewayError> {
        let limit = self.config.max_request_body_bytes;
        if size > limit {
            return Err(GatewayError::BodyTooLarge(limit));
        }
        Ok(())
    }

    /// The whole request body: route by its `model`.
    pub fn on_request_body(&mut self, host: &mut dyn Host, body: &[u8]) -> Step {
        if let Err(e) = self.check_body_size(body.len()) {
            return self.refuse(e);
        }
        let facts = match request_body::read(body) {
            Ok(facts) => facts,
            Err(e) => return self.refuse(e),
        };
        self.record.model = Some(facts.model.clone());
        self.record.stream = facts.stream;
        self.n = facts.n;
        let step = self.route_to(host, &facts.model);
        if step != Step::Continue {
            return step;
        }
        let mut edit = BodyEdit::default();
        // The Responses API has no `stream_options`: its streams always end with the usage.
        if facts.stream && self.endpoint != Endpoint::Responses {
            self.inject_usage(body, &facts, &mut edit);
        }
        if !edit.is_empty() {
            let body = edit.apply(body, &facts.members);
            host.set_request_body(&body);
            host.set_request_header("content-length", Some(&body.len().to_string()));
        }
        self.note_limit_ask(body, &facts, &edit);
        Step::Continue
    }

    /// Makes a streamed request ask the upstream for usage (see [`crate::inject`]), as the
    /// configuration says.
    fn inject_usage(&mut self, body: &[u8], facts: &RequestFacts, edit: &mut BodyEdit) {
        let continuous = match self.config.usage_injection {
            UsageInjection::Off => return,
            UsageInjection::Continuous => true,
            UsageInjection::Final => false,
        };
        ask_for_usage(body, &facts.members, continuous, edit);
        self.injected = Some(UsageAsk::of(facts));
    }

    /// Refuses the request with `error` (see [`Self::note_refusal`]).
    fn refuse(&mut self, error: GatewayError) -> Step {
        self.note_refusal(&error);
        Step::Refuse(error)
    }

    /// The request is refused with `error`: the one place a refusal is recorded, whoever decided
    /// it (this exchange, or the driver answering for it: [`crate::request::Request::refuse`]).
    /// The record's status and `gateway_error` are the error's, and the metrics count it as the
    /// error says ([`Self::error`]).
    pub fn note_refusal(&mut self, error: &GatewayError) {
        self.record.gateway_error = Some(error.code().to_owned());
        self.record.status = error.status();
        self.error = Some(error.clone());
    }

    /// What the gateway answered the exchange with, for the metrics: its refusal, or the error
    /// event that cut its stream off; `None` when it was not refused.
    pub fn error(&self) -> Option<&GatewayError> {
        self.error.as_ref()
    }

    fn models_list(&self) -> Vec<u8> {
        let data: Vec<serde_json::Value> = self
            .config
            .models
            .keys()
            .filter(|id| self.allows(id))
            .map(|id| {
                serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "vllm-gateway"})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({"object": "list", "data": data})).unwrap_or_default()
    }
}

mod limited;
mod response;
#[cfg(test)]
mod tests;
