//! The shared state of a mock server: its configuration and the requests it has seen.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::config::MockConfig;
use crate::error::ApiError;

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
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
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
    started: u64,
    seen: Mutex<Vec<SeenRequest>>,
}

impl MockState {
    /// A fresh state that has seen nothing.
    pub fn new(config: MockConfig) -> Self {
        let inner = Inner {
            token_delay_ns: AtomicU64::new(u64::try_from(config.token_delay.as_nanos()).unwrap_or(u64::MAX)),
            config,
            started: unix_now(),
            seen: Mutex::new(Vec::new()),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &MockConfig {
        &self.inner.config
    }

    /// The pause between two frames of a streamed body now.
    pub fn token_delay(&self) -> Duration {
        Duration::from_nanos(self.inner.token_delay_ns.load(Ordering::Relaxed))
    }

    /// Changes the pause between streamed frames for the responses that start from now on (a
    /// benchmark paces a running mock like a real server, then lets it go flat out again).
    pub fn set_token_delay(&self, delay: Duration) {
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.inner.token_delay_ns.store(nanos, Ordering::Relaxed);
    }

    /// Every request received so far, oldest first.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen_lock().clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_seen(&self) {
        self.seen_lock().clear();
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
            None => models
                .first()
                .cloned()
                .ok_or_else(|| ApiError::ModelNotFound("None".to_owned())),
        }
    }

    fn seen_lock(&self) -> MutexGuard<'_, Vec<SeenRequest>> {
        // A panic while holding the lock leaves the list intact: keep using it.
        self.inner
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
