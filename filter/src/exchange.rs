//! One request/response exchange through the gateway, as a pure state machine.
//!
//! The wasm glue calls one method per Envoy callback and does what the returned [`Step`] says;
//! header edits go through the [`Host`] trait, so all of this runs (and is tested) natively.
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
use crate::inject::{ask_for_usage, StreamRewrite, UsageAsk};
use crate::keys::{AppRules, Credentials};
use crate::lookup::LookupKey;
use crate::record::UsageRecord;
use crate::request_body::{self, BodyEdit, RequestFacts};
use crate::usage::{Accounting, BodyAccounting, PromptLayout, StreamAccounting};

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
    /// The stream is rewritten for the caller (by its counting, with the same parse).
    rewrites: bool,
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
            rewrites: false,
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

    /// Response headers from the upstream (or a local reply). Returns true when the body will be
    /// rewritten for the caller (the glue then drops `content-length`).
    /// A reply with a `content-encoding` other than `identity` is not read (its bytes are not
    /// text): it counts as unknown, and passes unchanged.
    pub fn on_response_headers(
        &mut self,
        status: u16,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
    ) -> bool {
        self.record.status = status;
        let is_sse = content_type.is_some_and(|t| t.trim_start().starts_with("text/event-stream"));
        let encoded = content_encoding
            .is_some_and(|e| e.split(',').any(|e| !e.trim().eq_ignore_ascii_case("identity")));
        let cut_may_come = self.cut_may_come(is_sse);
        let rewrite = match self.injected {
            _ if encoded || self.finished || !is_sse => None,
            Some(ask) if ask.needs_rewrite() || cut_may_come => Some(StreamRewrite::new(ask)),
            // Passed unchanged, but whole events at a time: the stream may be cut between two.
            None if cut_may_come => {
                Some(StreamRewrite::new(UsageAsk { include_usage: true, continuous: true }))
            }
            _ => None,
        };
        self.rewrites = rewrite.is_some();
        self.counting = Some(match (encoded, is_sse) {
            (true, _) => Counting::Opaque,
            (false, true) => {
                let counting = StreamAccounting::new(self.prompt_layout());
                Counting::Stream(Box::new(match rewrite {
                    Some(rewrite) => counting.rewriting(rewrite),
                    None => counting,
                }))
            }
            (false, false) => Counting::Body(Box::default()),
        });
        self.rewrites
    }

    /// How the stream's choices map to prompts, for counting a stream cut off half-way.
    fn prompt_layout(&self) -> PromptLayout {
        match self.endpoint {
            Endpoint::Chat => PromptLayout::Single,
            Endpoint::Responses | Endpoint::Embeddings | Endpoint::Other => {
                PromptLayout::Batched { n: self.n }
            }
        }
    }

    /// Whether the next response bytes are the first (the only ones whose time is recorded).
    pub fn awaits_first_byte(&self) -> bool {
        self.tracked && !self.finished && self.record.ttft_ms.is_none()
    }

    /// A piece of the response body. `now_ms` is read only while [`Self::awaits_first_byte`].
    /// Returns the bytes to send instead of `chunk` when the
    /// stream is rewritten for the caller; `None` means pass `chunk` on unchanged.
    pub fn on_response_body(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
        now_ms: u64,
    ) -> Option<Vec<u8>> {
        if !self.tracked || self.finished {
            return None;
        }
        if self.record.ttft_ms.is_none() && !chunk.is_empty() {
            self.record.ttft_ms = Some(now_ms.saturating_sub(self.started_ms));
        }
        let (rewritten, held) = match &mut self.counting {
            Some(Counting::Stream(acc)) => {
                let rewritten = acc.feed(chunk);
                (rewritten, if end_of_stream { acc.finish_rewrite() } else { Vec::new() })
            }
            Some(Counting::Body(acc)) => {
                acc.feed(chunk);
                (None, Vec::new())
            }
            Some(Counting::Opaque) | None => (None, Vec::new()),
        };
        if !self.rewrites {
            return None;
        }
        let mut out = rewritten.unwrap_or_else(|| chunk.to_vec());
        out.extend(held);
        if !self.check_grant(&mut out) {
            out.clear();
        }
        // Most events pass as they came: the host then keeps the chunk it has (no copy back).
        (out != chunk).then_some(out)
    }

    /// Whether the exchange has given its record already (or has none to give).
    pub fn is_finished(&self) -> bool {
        !self.tracked || self.finished
    }

    /// Ends the exchange and returns its record, once; `None` for untracked or already-finished
    /// exchanges. When the response did not reach its end (the client went away, the upstream
    /// reset or stalled) what was read until then still counts — a stream's usage so far, a
    /// body's `usage` if it had been read whole — and the record says whether the client left.
    pub fn finish(&mut self, now_ms: u64, ending: Ending) -> Option<UsageRecord> {
        if !self.tracked || self.finished {
            return None;
        }
        self.finished = true;
        let accounting = match self.counting.take() {
            Some(Counting::Stream(mut acc)) => acc.finish(),
            Some(Counting::Body(mut acc)) => acc.finish(),
            Some(Counting::Opaque) | None => Accounting::default(),
        };
        self.record.usage = accounting.usage;
        self.record.usage_source = accounting.source;
        self.record.upstream_error = accounting.error.map(|e| e.kind);
        self.record.client_disconnected = ending == Ending::ClientGone;
        self.record.duration_ms = Some(now_ms.saturating_sub(self.started_ms));
        Some(self.record.clone())
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

/// How an exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The response reached its end.
    Complete,
    /// The client went away before it did.
    ClientGone,
    /// It was cut short otherwise: the upstream reset or stalled, a timeout.
    Cut,
}

/// Envoy's response flag `DC` (downstream connection termination) in the `response.flags`
/// property's bits.
pub const DOWNSTREAM_CONNECTION_TERMINATION: u64 = 1 << 14;

impl Ending {
    /// How a request Envoy logs before its response reached its end ended, from Envoy's
    /// response flags: the client's doing only when Envoy says the client's connection ended.
    pub fn unfinished(response_flags: u64) -> Self {
        if response_flags & DOWNSTREAM_CONNECTION_TERMINATION != 0 {
            Ending::ClientGone
        } else {
            Ending::Cut
        }
    }
}

mod limited;
#[cfg(test)]
mod tests;
