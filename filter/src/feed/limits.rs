//! The limits' contract: what an admin sets on an app or a user ([`Limits`]), and the lease call
//! by which an Envoy takes a share of a limit's window from the control plane's ledger
//! ([`LEASE_PATH`], [`LeaseRequest`], [`LeaseResponse`]). Declared once, here, and used by both
//! sides.
//!
//! **Windows.** Per-minute limits count in calendar minutes (UTC); daily and monthly token budgets
//! in calendar days and months of the limit set's `timeZone` (an IANA name, UTC by default). The
//! control plane alone computes windows: every grant names its window's start and end, so the
//! filter needs no calendar.
//!
//! **Leases.** The control plane's ledger counts, per subject, limit and window, the units leased
//! out to Envoys (and charged beyond a lease); it never leases more than the limit. An Envoy
//! spends its lease locally (shared by its workers) and asks for more when it runs out. So the
//! total admitted never passes a limit; what can pass it is only what the upstream generated past
//! a grant (a non-streamed reply that overran, the last chunk of a stream cut off), which is
//! charged as it was. Concurrency slots are held per Envoy instance and expire unless renewed
//! within [`CONCURRENCY_LEASE_TTL_SECS`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Path of the lease call (`POST`, a [`LeaseRequest`], answered with a [`LeaseResponse`]);
/// authenticated with the state token like the state feed.
pub const LEASE_PATH: &str = "/internal/limits/lease";

/// How long a concurrency lease lives without being renewed (any lease call of the same instance
/// naming the same subject and limit renews it).
pub const CONCURRENCY_LEASE_TTL_SECS: i64 = 60;

/// One set of limits; an absent limit is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Caps {
    /// Requests per calendar minute (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<i64>,
    /// Tokens (prompt and completion) per calendar minute (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<i64>,
    /// Requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent_requests: Option<i64>,
    /// Tokens per calendar day of [`Self::time_zone`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<i64>,
    /// Tokens per calendar month of [`Self::time_zone`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_month: Option<i64>,
    /// The IANA time zone of the daily and monthly budgets; `None` is UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

impl Caps {
    /// The limit of `kind`, if set.
    pub fn get(&self, kind: LimitKind) -> Option<i64> {
        match kind {
            LimitKind::RequestsPerMinute => self.requests_per_minute,
            LimitKind::TokensPerMinute => self.tokens_per_minute,
            LimitKind::ConcurrentRequests => self.concurrent_requests,
            LimitKind::TokensPerDay => self.tokens_per_day,
            LimitKind::TokensPerMonth => self.tokens_per_month,
        }
    }

    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        LimitKind::ALL.iter().all(|kind| self.get(*kind).is_none())
    }
}

/// The limits of an app or a user: over all its requests, and optionally per model. Written as
/// one flat object (`{"requestsPerMinute":…,"models":{…}}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "FlatLimits", into = "FlatLimits")]
pub struct Limits {
    /// Limits over every request of the subject.
    pub all: Caps,
    /// Limits over the subject's requests for one model (beside [`Self::all`]).
    pub models: BTreeMap<String, Caps>,
}

/// [`Limits`] as written: the subject-wide limits beside `models`. (Serde's `flatten` would
/// buffer every document of the state feed; this reads it in one pass.)
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FlatLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requests_per_minute: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokens_per_minute: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    concurrent_requests: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokens_per_day: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokens_per_month: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time_zone: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    models: BTreeMap<String, Caps>,
}

impl From<FlatLimits> for Limits {
    fn from(flat: FlatLimits) -> Self {
        let all = Caps {
            requests_per_minute: flat.requests_per_minute,
            tokens_per_minute: flat.tokens_per_minute,
            concurrent_requests: flat.concurrent_requests,
            tokens_per_day: flat.tokens_per_day,
            tokens_per_month: flat.tokens_per_month,
            time_zone: flat.time_zone,
        };
        Self { all, models: flat.models }
    }
}

impl From<Limits> for FlatLimits {
    fn from(limits: Limits) -> Self {
        let Caps {
            requests_per_minute,
            tokens_per_minute,
            concurrent_requests,
            tokens_per_day,
            tokens_per_month,
            time_zone,
        } = limits.all;
        Self {
            requests_per_minute,
            tokens_per_minute,
            concurrent_requests,
            tokens_per_day,
            tokens_per_month,
            time_zone,
            models: limits.models,
        }
    }
}

impl Limits {
    /// Whether nothing is limited.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty() && self.models.values().all(Caps::is_empty)
    }

    /// The limits that apply to a request for `model`: `(model scope, kind, limit)`, the
    /// subject-wide ones first.
    pub fn applying_to<'a>(
        &'a self,
        model: &'a str,
    ) -> impl Iterator<Item = (Option<&'a str>, LimitKind, i64)> + 'a {
        let wide =
            LimitKind::ALL.iter().filter_map(|kind| Some((None, *kind, self.all.get(*kind)?)));
        let per_model = self.models.get(model).into_iter().flat_map(move |caps| {
            LimitKind::ALL
                .iter()
                .filter_map(move |kind| Some((Some(model), *kind, caps.get(*kind)?)))
        });
        wide.chain(per_model)
    }
}

/// What a limit counts, and over which window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LimitKind {
    /// Requests per calendar minute.
    RequestsPerMinute,
    /// Tokens per calendar minute.
    TokensPerMinute,
    /// Requests in flight.
    ConcurrentRequests,
    /// Tokens per calendar day.
    TokensPerDay,
    /// Tokens per calendar month.
    TokensPerMonth,
}

impl LimitKind {
    /// Every kind, in the order limits are checked.
    pub const ALL: [LimitKind; 5] = [
        LimitKind::ConcurrentRequests,
        LimitKind::RequestsPerMinute,
        LimitKind::TokensPerMinute,
        LimitKind::TokensPerDay,
        LimitKind::TokensPerMonth,
    ];

    /// The kind's name in the access log, metrics and messages (`tokens_per_day`).
    pub fn name(self) -> &'static str {
        match self {
            LimitKind::RequestsPerMinute => "requests_per_minute",
            LimitKind::TokensPerMinute => "tokens_per_minute",
            LimitKind::ConcurrentRequests => "concurrent_requests",
            LimitKind::TokensPerDay => "tokens_per_day",
            LimitKind::TokensPerMonth => "tokens_per_month",
        }
    }

    /// Whether the limit counts tokens (else requests).
    pub fn counts_tokens(self) -> bool {
        matches!(
            self,
            LimitKind::TokensPerMinute | LimitKind::TokensPerDay | LimitKind::TokensPerMonth
        )
    }

    /// Whether the limit is a budget (refused as `insufficient_quota`) rather than a rate
    /// (`rate_limit_exceeded`).
    pub fn is_budget(self) -> bool {
        matches!(self, LimitKind::TokensPerDay | LimitKind::TokensPerMonth)
    }

    /// Whether the limit counts in windows (else it is the concurrency, held per instance).
    pub fn is_windowed(self) -> bool {
        self != LimitKind::ConcurrentRequests
    }
}

/// Whose limit: an app (API-key callers) or a user (JWT callers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Subject {
    /// An app, by id.
    App(i64),
    /// A user, by id.
    User(i64),
}

/// One limit of one subject: what a ledger entry counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitKey {
    /// Whose limit.
    pub subject: Subject,
    /// The model the limit is scoped to; `None` for every model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Which limit.
    pub kind: LimitKind,
}

/// `POST` [`LEASE_PATH`] body: what one Envoy instance asks of the ledger, several limits at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseRequest {
    /// The Envoy instance (random per start): concurrency slots are held per instance.
    pub instance: String,
    /// One ask per limit.
    pub items: Vec<LeaseAsk>,
}

/// What an Envoy asks of one limit's ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseAsk {
    /// Which limit.
    #[serde(flatten)]
    pub key: LimitKey,
    /// The start (Unix seconds) of the window that `charge` and `giveBack` belong to; `None`
    /// for the current one. Ignored for concurrency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<i64>,
    /// Units spent beyond what was leased (a reply that overran its grant): charged whatever the
    /// limit says.
    #[serde(default)]
    pub charge: u64,
    /// Units leased before and not spent, given back.
    #[serde(default)]
    pub give_back: u64,
    /// Units wanted now, from the current window: granted up to what remains.
    #[serde(default)]
    pub take: u64,
    /// Concurrency only: the slots this instance holds (its give-back done), which the ledger
    /// takes as the instance's holding before granting `take`. Sent with every renewal, so that
    /// the two counts meet again whatever was lost on the way (a grant whose request went away).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<u64>,
}

/// The answer to a [`LeaseRequest`]: one grant per ask, in the same order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseResponse {
    /// One per ask.
    pub items: Vec<LeaseGrant>,
}

/// What the ledger granted of one ask, and where the limit stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseGrant {
    /// Units granted of `take` (all of it when the limit is no longer set).
    pub granted: u64,
    /// The limit as it is now; `None` when the subject no longer has it.
    pub limit: Option<u64>,
    /// Units the ledger counts in the current window after this call, over every Envoy (leased
    /// out or charged; for concurrency: slots held).
    pub used: u64,
    /// The current window's start, Unix seconds (0 for concurrency).
    pub window: i64,
    /// When the current window ends, Unix milliseconds (0 for concurrency).
    pub resets_at_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn limits_read_flat_with_per_model_sets_and_round_trip() {
        let json = r#"{"requestsPerMinute":10,"tokensPerDay":1000,"timeZone":"Asia/Shanghai",
            "models":{"m":{"concurrentRequests":2}}}"#;
        let limits: Limits = serde_json::from_str(json).unwrap();
        assert_eq!(limits.all.requests_per_minute, Some(10));
        assert_eq!(limits.all.time_zone.as_deref(), Some("Asia/Shanghai"));
        assert_eq!(limits.models["m"].concurrent_requests, Some(2));
        let applying: Vec<_> = limits.applying_to("m").collect();
        assert_eq!(
            applying,
            vec![
                (None, LimitKind::RequestsPerMinute, 10),
                (None, LimitKind::TokensPerDay, 1000),
                (Some("m"), LimitKind::ConcurrentRequests, 2)
            ]
        );
        assert_eq!(limits.applying_to("other").count(), 2);
        let back: Limits = serde_json::from_value(serde_json::to_value(&limits).unwrap()).unwrap();
        assert_eq!(back, limits);
        assert!(Limits::default().is_empty() && !limits.is_empty());
    }

    #[test]
    fn a_lease_call_reads_in_camel_case() {
        let ask: LeaseRequest = serde_json::from_str(
            r#"{"instance":"i1","items":[{"subject":{"app":3},"kind":"tokensPerDay","take":50,"charge":2}]}"#,
        )
        .unwrap();
        let item = &ask.items[0];
        assert_eq!(
            item.key,
            LimitKey { subject: Subject::App(3), model: None, kind: LimitKind::TokensPerDay }
        );
        assert_eq!(
            (item.take, item.charge, item.give_back, item.window, item.held),
            (50, 2, 0, None, None)
        );
        let grant =
            LeaseGrant { granted: 5, limit: Some(9), used: 9, window: 60, resets_at_ms: 120_000 };
        let json = serde_json::to_value(LeaseResponse { items: vec![grant] }).unwrap();
        assert_eq!(json["items"][0]["resetsAtMs"], 120_000);
    }
}
