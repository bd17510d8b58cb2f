//! `GET /api/usage/reconcile`: per model and upstream, the gateway's totals over a window beside
//! vLLM's own counters (`vllm:prompt_tokens_total`, `vllm:generation_tokens_total`) over the
//! same window, the difference and its likely causes.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::time_range::{format_ms, parse_range};
use super::{ApiError, AppState};
use crate::reconcile::report::{likely_causes, GatewaySide, Increase};
use crate::reconcile::{LastScrape, Upstream};
use crate::store::now_ms;
use crate::store::samples;
use crate::store::usage::{self, ModelTotals};

const HOUR_MS: i64 = 3_600_000;
/// Longest window one request may reconcile.
const MAX_DAYS: i64 = 31;

/// The window of `GET /api/usage/reconcile`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReconcileQuery {
    /// Start (inclusive): RFC 3339 or Unix milliseconds. Default: one hour before `to`.
    from: Option<String>,
    /// End (exclusive): RFC 3339 or Unix milliseconds. Default: now. At most 31 days after
    /// `from`. When it is now (or within one scrape interval of now), upstreams whose latest
    /// sample is older are scraped first.
    to: Option<String>,
}

/// The reconciliation.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    /// Start of the window (inclusive), RFC 3339 UTC.
    from: String,
    /// End of the window (exclusive), RFC 3339 UTC.
    to: String,
    /// One record per configured upstream (`--upstream NAME=URL`), then one per other model
    /// the gateway forwarded requests for in the window.
    records: Vec<ReconcileRecord>,
}

/// One model on one upstream.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileRecord {
    /// The model.
    model: String,
    /// The vLLM server's base URL; `null` for a model no upstream is configured for.
    upstream: Option<String>,
    /// What the gateway logged for requests that started in the window.
    gateway: ModelTotals,
    /// What vLLM counted between the samples nearest the window's edges; `null` without any
    /// sample.
    vllm: Option<VllmCounters>,
    /// vLLM minus gateway; `null` without vLLM's side.
    difference: Option<Difference>,
    /// The latest scrape of this upstream since the control plane started.
    last_scrape: Option<ScrapeStatus>,
    /// Short reasons for the difference, most likely first; empty when both sides agree.
    likely_causes: Vec<String>,
}

/// vLLM's counter increase.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VllmCounters {
    /// Increase of `vllm:prompt_tokens_total` (summed over engines).
    prompt_tokens: i64,
    /// Increase of `vllm:generation_tokens_total` (summed over engines).
    generation_tokens: i64,
    /// Samples used.
    samples: u64,
    /// The first sample used (at or before `from` when one was taken shortly before), RFC 3339.
    first_sample_at: String,
    /// The last sample used (at or after `to` when one was taken shortly after), RFC 3339.
    last_sample_at: String,
    /// Whether the samples span the whole window.
    covers_window: bool,
    /// Times the counters went down between samples: vLLM restarted (its new count is added).
    counter_resets: u64,
}

/// vLLM minus gateway: positive when vLLM counted more.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Difference {
    /// `vllm.promptTokens - gateway.promptTokens`.
    prompt_tokens: i64,
    /// `vllm.generationTokens - gateway.completionTokens`.
    completion_tokens: i64,
}

/// The outcome of a scrape.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScrapeStatus {
    /// When, RFC 3339.
    at: String,
    /// Why it gave no sample; `null` when it did.
    error: Option<String>,
}

/// The gateway's token totals per model and upstream beside vLLM's own counters.
#[utoipa::path(get, path = "/api/usage/reconcile", tag = "logs", params(ReconcileQuery),
    responses((status = 200, body = ReconcileReport), (status = 400, body = ErrorBody)))]
pub async fn reconcile(
    State(state): State<AppState>,
    query: Result<Query<ReconcileQuery>, QueryRejection>,
) -> Result<Json<ReconcileReport>, ApiError> {
    let Query(q) = query.map_err(ApiError::from_query)?;
    let (from, to) = parse_range(q.from.as_deref(), q.to.as_deref())?;
    let now = now_ms();
    let to = to.unwrap_or(now);
    let from = from.unwrap_or(to.saturating_sub(HOUR_MS));
    if to <= from {
        return Err(ApiError::invalid("to", "must be after from"));
    }
    if to.saturating_sub(from) > MAX_DAYS * 24 * HOUR_MS {
        return Err(ApiError::invalid(
            "from",
            format!("the window may span at most {MAX_DAYS} days"),
        ));
    }
    let scraper = state.scraper();
    let interval_ms = i64::try_from(scraper.interval().as_millis()).unwrap_or(i64::MAX);
    if to >= now.saturating_sub(interval_ms.max(5_000)) {
        scrape_behind(&state, to).await?;
    }
    let slack_ms = i64::try_from(scraper.interval().max(Duration::from_secs(30)).as_millis() * 2)
        .unwrap_or(i64::MAX);
    let mut gateway = usage::by_model(state.db(), from, to).await?;
    let mut records = Vec::new();
    for upstream in scraper.upstreams() {
        let totals =
            gateway.iter().find(|t| t.model == upstream.model).cloned().unwrap_or_default();
        let increase = samples::increase(state.db(), upstream, from, to, slack_ms).await?;
        records.push(record(upstream, totals, increase, scraper.last_scrape(upstream), (from, to)));
    }
    // A model nobody serves that was only refused (a client's made-up name) is left out.
    gateway.retain(|t| t.requests > 0 && !scraper.upstreams().iter().any(|u| u.model == t.model));
    records.extend(gateway.into_iter().map(unconfigured));
    Ok(Json(ReconcileReport { from: format_ms(from), to: format_ms(to), records }))
}

/// Scrapes the upstreams whose latest sample is older than `to`, so a call about "until now"
/// sees what vLLM counted until now.
async fn scrape_behind(state: &AppState, to: i64) -> Result<(), ApiError> {
    let mut behind: Vec<&Upstream> = Vec::new();
    for upstream in state.scraper().upstreams() {
        if samples::latest_at(state.db(), upstream).await?.is_none_or(|at| at < to) {
            behind.push(upstream);
        }
    }
    state.scraper().scrape(state.db(), state.metrics(), &behind).await;
    Ok(())
}

fn record(
    upstream: &Upstream,
    gateway: ModelTotals,
    increase: Option<Increase>,
    last: Option<LastScrape>,
    window: (i64, i64),
) -> ReconcileRecord {
    let side = GatewaySide {
        prompt: gateway.prompt_tokens,
        completion: gateway.completion_tokens,
        estimated: gateway.estimated_requests,
        without_usage: gateway.without_usage_requests,
        client_disconnected: gateway.client_disconnected_requests,
    };
    let no_samples = match last.as_ref().and_then(|l| l.error.as_deref()) {
        Some(error) => format!("no vLLM samples in the window: the latest scrape failed ({error})"),
        None => "no vLLM samples in the window: the upstream was unreachable or not scraped then"
            .to_owned(),
    };
    let likely_causes = likely_causes(side, increase, window, &no_samples);
    let vllm = increase.map(|v| VllmCounters {
        prompt_tokens: v.prompt,
        generation_tokens: v.generation,
        samples: v.samples,
        first_sample_at: format_ms(v.first_at_ms),
        last_sample_at: format_ms(v.last_at_ms),
        covers_window: v.first_at_ms <= window.0 && v.last_at_ms >= window.1,
        counter_resets: v.resets,
    });
    let difference = increase.map(|v| Difference {
        prompt_tokens: v.prompt - gateway.prompt_tokens,
        completion_tokens: v.generation - gateway.completion_tokens,
    });
    let last_scrape = last.map(|l| ScrapeStatus { at: format_ms(l.at_ms), error: l.error });
    ReconcileRecord {
        model: upstream.model.clone(),
        upstream: Some(upstream.url.clone()),
        gateway,
        vllm,
        difference,
        last_scrape,
        likely_causes,
    }
}

fn unconfigured(gateway: ModelTotals) -> ReconcileRecord {
    ReconcileRecord {
        model: gateway.model.clone(),
        upstream: None,
        gateway,
        vllm: None,
        difference: None,
        last_scrape: None,
        likely_causes: vec!["no upstream is configured for this model (--upstream NAME=URL): vLLM's counters are not read".to_owned()],
    }
}
