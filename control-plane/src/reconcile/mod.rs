//! Reconciliation with vLLM's own counters. Every `--reconcile-interval-secs`, each upstream's
//! `GET {url}/metrics` is scraped and its model's `vllm:prompt_tokens_total` and
//! `vllm:generation_tokens_total` (summed over engines) are stored as a sample; `GET
//! /api/usage/reconcile` sets vLLM's increase over a window beside the gateway's totals (see
//! [`report`]). A failed scrape stores nothing and is remembered for the report.

pub mod prom;
pub mod report;

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::store::{now_ms, samples};
use crate::Db;

/// The default time between two scrapes.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// How long one scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);

/// A model and the vLLM server serving it (`NAME=URL`, as `cargo xtask up --model`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The model name, as clients send it and vLLM labels its metrics (`model_name`).
    pub model: String,
    /// The server's base URL (`http://host:port`), without a trailing slash.
    pub url: String,
}

/// A `NAME=URL` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected NAME=http://host:port, got `{0}`")]
pub struct BadUpstream(String);

impl FromStr for Upstream {
    type Err = BadUpstream;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadUpstream(s.to_owned());
        let (model, url) = s.trim().split_once('=').ok_or_else(bad)?;
        let url = url.trim().trim_end_matches('/');
        let host =
            url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).ok_or_else(bad)?;
        if model.trim().is_empty() || host.is_empty() || host.contains(char::is_whitespace) {
            return Err(bad());
        }
        Ok(Self { model: model.trim().to_owned(), url: url.to_owned() })
    }
}

/// The outcome of the latest scrape of one model's upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastScrape {
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// Why it gave no sample, when it did not.
    pub error: Option<String>,
}

/// The upstreams and how to scrape them; shared by the background task and the API.
#[derive(Debug)]
pub struct Scraper {
    client: reqwest::Client,
    upstreams: Vec<Upstream>,
    interval: Duration,
    last: Mutex<HashMap<String, LastScrape>>,
}

impl Default for Scraper {
    fn default() -> Self {
        Self::new(Vec::new(), DEFAULT_INTERVAL)
    }
}

impl Scraper {
    /// A scraper of `upstreams` every `interval` (zero: only on demand).
    pub fn new(upstreams: Vec<Upstream>, interval: Duration) -> Self {
        let client = reqwest::Client::builder().timeout(SCRAPE_TIMEOUT).build().unwrap_or_default();
        Self { client, upstreams, interval, last: Mutex::new(HashMap::new()) }
    }

    /// The configured upstreams.
    pub fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
    }

    /// The time between two background scrapes (zero: none).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The latest scrape of this upstream's model, if any since start.
    pub fn last_scrape(&self, upstream: &Upstream) -> Option<LastScrape> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner).get(&key(upstream)).cloned()
    }

    /// Scrapes `which` now (each URL once) and stores a sample per model found.
    pub async fn scrape(&self, db: &Db, metrics: &Metrics, which: &[&Upstream]) {
        let mut by_url: BTreeMap<&str, Vec<&Upstream>> = BTreeMap::new();
        for u in which {
            by_url.entry(u.url.as_str()).or_default().push(u);
        }
        let scrapes =
            by_url.into_iter().map(|(url, models)| self.scrape_url(db, metrics, url, models));
        for scrape in scrapes {
            scrape.await;
        }
    }

    async fn scrape_url(&self, db: &Db, metrics: &Metrics, url: &str, models: Vec<&Upstream>) {
        let at_ms = now_ms();
        let text = self.fetch(url).await;
        for upstream in models {
            let totals = text.as_ref().map_err(Clone::clone).and_then(|t| {
                prom::token_totals(t, &upstream.model).ok_or_else(|| {
                    format!(
                        "{url}/metrics has no {} and {} for model_name=\"{}\"",
                        prom::PROMPT_TOKENS,
                        prom::GENERATION_TOKENS,
                        upstream.model
                    )
                })
            });
            let error = match totals {
                Ok(t) => samples::insert(db, upstream, at_ms, t)
                    .await
                    .err()
                    .map(|e| format!("storing the sample: {e}")),
                Err(e) => Some(e),
            };
            match &error {
                None => metrics.upstream_scrapes_ok.fetch_add(1, Relaxed),
                Some(e) => {
                    tracing::debug!(model = %upstream.model, error = %e, "no vLLM sample");
                    metrics.upstream_scrapes_failed.fetch_add(1, Relaxed)
                }
            };
            let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            last.insert(key(upstream), LastScrape { at_ms, error });
        }
    }

    async fn fetch(&self, url: &str) -> Result<String, String> {
        let reply = self
            .client
            .get(format!("{url}/metrics"))
            .send()
            .await
            .map_err(|e| format!("{url}/metrics: {e}"))?;
        let reply = reply.error_for_status().map_err(|e| format!("{url}/metrics: {e}"))?;
        reply.text().await.map_err(|e| format!("{url}/metrics: {e}"))
    }
}

fn key(upstream: &Upstream) -> String {
    format!("{}\u{0}{}", upstream.model, upstream.url)
}

/// Starts the background scrapes (none without upstreams or with a zero interval): one at once,
/// then one every interval, until `stop` turns true.
pub fn spawn(
    scraper: Arc<Scraper>,
    db: Db,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    if scraper.upstreams.is_empty() || scraper.interval.is_zero() {
        return None;
    }
    Some(tokio::spawn(async move {
        let every: Vec<&Upstream> = scraper.upstreams.iter().collect();
        while !*stop.borrow() {
            scraper.scrape(&db, &metrics, &every).await;
            tokio::select! {
                () = tokio::time::sleep(scraper.interval) => {}
                _ = stop.changed() => {}
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_name_equals_url() {
        let u: Upstream = " m-1 = http://127.0.0.1:8000/ ".parse().unwrap();
        assert_eq!(u, Upstream { model: "m-1".into(), url: "http://127.0.0.1:8000".into() });
        assert_eq!("a=https://h".parse::<Upstream>().unwrap().url, "https://h");
        for bad in ["m", "=http://h", "m=h:1", "m=http://", "m=ftp://h"] {
            assert!(bad.parse::<Upstream>().is_err(), "{bad}");
        }
    }
}
