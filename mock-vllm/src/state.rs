//! The shared state of a mock server: its configuration and the requests it has seen.

use std::sync::{Arc, Mutex, MutexGuard};
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
    started: u64,
    seen: Mutex<Vec<SeenRequest>>,
}

impl MockState {
    /// A fresh state that has seen nothing.
    pub fn new(config: MockConfig) -> Self {
        let inner = Inner {
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
