//! The shared state of a mock server: its configuration, the requests it has seen, the streams
//! whose caller went away before their end, and its token counters (what `GET /metrics`
//! reports).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::config::MockConfig;
use crate::error::ApiError;
use crate::fault::Fault;
use crate::metrics::{Meter, TokenCounters};

/// One request as the mock received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path with the query string, e.g. `/v1/models?x=1`.
    pub path: String,
    /// Headers in arrival order, names lowercase, values decoded lossily as UTF-8.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Bytes,
}

impl SeenRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (any case), in arrival order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().filter(|(n, _)| *n == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// A mock server's state; cheap to clone (all clones share it).
#[derive(Debug, Clone)]
pub struct MockState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: MockConfig,
    /// The pause between streamed frames now, in nanoseconds (starts as the configured one).
    token_delay_ns: AtomicU64,
    /// The fault shown now ([`Fault::None`] at start); held requests watch it.
    fault: tokio::sync::watch::Sender<Fault>,
    started: u64,
    /// Unix time with fractions: the `_created` of the counters.
    created_at: f64,
    seen: Mutex<Vec<SeenRequest>>,
    /// Per stream whose caller went away before its end: the tokens it had sent.
    abandoned: Mutex<Vec<u32>>,
    /// One set of counters per configured model, in configuration order.
    meters: Vec<(String, Meter)>,
}

impl MockState {
    /// A fresh state that has seen nothing.
    pub fn new(config: MockConfig) -> Self {
        let mut meters: Vec<(String, Meter)> = Vec::new();
        for model in &config.models {
            if !meters.iter().any(|(m, _)| m == model) {
                meters.push((model.clone(), Meter::default()));
            }
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let inner = Inner {
            token_delay_ns: AtomicU64::new(
                u64::try_from(config.token_delay.as_nanos()).unwrap_or(u64::MAX),
            ),
            config,
            fault: tokio::sync::watch::Sender::new(Fault::None),
            started: now.as_secs(),
            created_at: now.as_secs_f64(),
            seen: Mutex::new(Vec::new()),
            abandoned: Mutex::new(Vec::new()),
            meters,
        };
        Self { inner: Arc::new(inner) }
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &MockConfig {
        &self.inner.config
    }

    /// The pause between two frames of a streamed body now.
    pub fn token_delay(&self) -> Duration {
        Duration::from_nanos(self.inner.token_delay_ns.load(Ordering::Relaxed))
    }

    /// Waits as long as generating `tokens` tokens takes at the current pace: a non-streamed
    /// reply is sent once all of it is generated, as vLLM does.
    pub(crate) async fn pace_generation(&self, tokens: u32) {
        let delay = self.token_delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay.saturating_mul(tokens)).await;
        }
    }

    /// Changes the pause between streamed frames for the responses that start from now on (a
    /// benchmark paces a running mock like a real server, then lets it go flat out again).
    pub fn set_token_delay(&self, delay: Duration) {
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.inner.token_delay_ns.store(nanos, Ordering::Relaxed);
    }

    /// Shows `fault` on the requests that arrive from now on ([`Fault::None`] to behave as
    /// vLLM does again); requests held by [`Fault::HoldBeforeHeaders`] go on under it.
    pub fn set_fault(&self, fault: Fault) {
        self.inner.fault.send_replace(fault);
    }

    /// The fault shown now.
    pub fn fault(&self) -> Fault {
        *self.inner.fault.borrow()
    }

    /// Waits until the fault is no longer [`Fault::HoldBeforeHeaders`].
    pub(crate) async fn wait_for_release(&self) {
        let mut watch = self.inner.fault.subscribe();
        // The sender lives as long as the state, so the wait ends only by a change.
        let _ = watch.wait_for(|f| *f != Fault::HoldBeforeHeaders).await;
    }

    /// Per stream whose caller went away (or whose connection was reset) before its end, oldest
    /// first: the completion tokens it had sent by then. A stream cut by [`Fault::ResetAfter`]
    /// is the mock's own doing and is not listed.
    pub fn abandoned_streams(&self) -> Vec<u32> {
        lock(&self.inner.abandoned).clone()
    }

    /// Notes a stream whose caller went away after `tokens` tokens.
    pub(crate) fn record_abandoned(&self, tokens: u32) {
        tracing::info!(tokens, "the caller went away mid-stream");
        lock(&self.inner.abandoned).push(tokens);
    }

    /// Every request received so far, oldest first.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen_lock().clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_seen(&self) {
        self.seen_lock().clear();
    }

    /// `(prompt, generation)` tokens counted so far over all models: the sums of
    /// `vllm:prompt_tokens_total` and `vllm:generation_tokens_total` on `GET /metrics`.
    pub fn token_totals(&self) -> (u64, u64) {
        self.inner
            .meters
            .iter()
            .map(|(_, m)| m.totals())
            .fold((0, 0), |(p, g), (mp, mg)| (p + mp, g + mg))
    }

    /// `(prompt, generation)` tokens counted so far for `model`; `None` if it is not served.
    pub fn model_token_totals(&self, model: &str) -> Option<(u64, u64)> {
        self.inner.meters.iter().find(|(m, _)| m == model).map(|(_, counters)| counters.totals())
    }

    /// The counters of a served model (one the request resolved with [`Self::resolve_model`]).
    pub(crate) fn meter(&self, model: &str) -> Meter {
        self.inner
            .meters
            .iter()
            .find(|(m, _)| m == model)
            .map_or_else(|| Arc::new(TokenCounters::default()), |(_, m)| Arc::clone(m))
    }

    /// Every model's counters, in configuration order.
    pub(crate) fn meters(&self) -> Vec<(String, Meter)> {
        self.inner.meters.clone()
    }

    /// Unix time (seconds, with fractions) at which the counters were created.
    pub(crate) fn created_at(&self) -> f64 {
        self.inner.created_at
    }

    pub(crate) fn record(&self, request: SeenRequest) {
        self.seen_lock().push(request);
    }

    /// Unix time (seconds) at which the state was created; the `created` of the models.
    pub(crate) fn started(&self) -> u64 {
        self.inner.started
    }

    /// The model a request names, if served; no name means the first served model.
    pub(crate) fn resolve_model(&self, requested: Option<&str>) -> Result<String, ApiError> {
        let models = &self.inner.config.models;
        match requested {
            Some(name) if models.iter().any(|m| m == name) => Ok(name.to_owned()),
            Some(name) => Err(ApiError::ModelNotFound(name.to_owned())),
            None => {
                models.first().cloned().ok_or_else(|| ApiError::ModelNotFound("None".to_owned()))
            }
        }
    }

    fn seen_lock(&self) -> MutexGuard<'_, Vec<SeenRequest>> {
        lock(&self.inner.seen)
    }
}

/// Locks `list`; a panic while holding the lock leaves a list intact: keep using it.
fn lock<T>(list: &Mutex<T>) -> MutexGuard<'_, T> {
    list.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
