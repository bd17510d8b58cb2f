//! Where each limit of an app or a user stands now, as the admin API shows it
//! (`limitUsage`): per limit that applies (subject-wide and per model), its current window and
//! the units the ledger counts in it.

use serde::Serialize;
use utoipa::ToSchema;
use vllm_gateway_filter::feed::limits::{LimitKey, Subject};
use vllm_gateway_filter::feed::Limits;

use super::lease::{held_by_others, used_in};
use super::limit_of;
use super::window::{rfc3339, window_at};
use crate::Db;

/// One limit of an app or a user, and how much of its current window is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitUsage {
    /// Which limit: `requests_per_minute`, `tokens_per_minute`, `concurrent_requests`,
    /// `tokens_per_day` or `tokens_per_month`.
    #[schema(example = "tokens_per_day")]
    pub kind: String,
    /// The model the limit is scoped to; `null` for every model.
    pub model: Option<String>,
    /// The limit.
    pub limit: i64,
    /// Units the ledger counts in the current window: leased out to Envoys (some perhaps not
    /// spent yet) and charged beyond a lease. For `concurrent_requests`: slots held now.
    pub used: i64,
    /// `limit - used`, at least 0.
    pub remaining: i64,
    /// The current window's start, RFC 3339: in the limit's time zone for days and months, in
    /// UTC for minutes; `null` for `concurrent_requests`.
    #[schema(example = "2026-02-01T00:00:00+08:00")]
    pub window_start: Option<String>,
    /// When the current window ends (exclusive); `null` for `concurrent_requests`.
    #[schema(example = "2026-02-02T00:00:00+08:00")]
    pub window_end: Option<String>,
}

/// Every limit of `limits` (subject-wide first, then per model by name), at the instant `now`.
pub async fn usage(
    db: &Db,
    subject: Subject,
    limits: Option<&Limits>,
    now: i64,
) -> Result<Vec<LimitUsage>, sqlx::Error> {
    let Some(limits) = limits else { return Ok(Vec::new()) };
    let scopes = std::iter::once((None, &limits.all))
        .chain(limits.models.iter().map(|(m, caps)| (Some(m.clone()), caps)));
    let mut conn = db.acquire().await?;
    let mut out = Vec::new();
    for (model, caps) in scopes {
        for kind in vllm_gateway_filter::feed::limits::LimitKind::ALL {
            if caps.get(kind).is_none() {
                continue;
            }
            let key = LimitKey { subject, model: model.clone(), kind };
            let (Some(limit), tz) = limit_of(Some(limits), &key) else { continue };
            let window = window_at(kind, now, tz);
            let shown_in = if kind.is_budget() { tz } else { chrono_tz::Tz::UTC };
            let used = match window {
                Some(w) => used_in(&mut conn, &key, w.start).await?,
                None => held_by_others(&mut conn, &key, None, now).await?,
            };
            out.push(LimitUsage {
                kind: kind.name().to_owned(),
                model: model.clone(),
                limit,
                used,
                remaining: (limit - used).max(0),
                window_start: window.map(|w| rfc3339(w.start, shown_in)),
                window_end: window.map(|w| rfc3339(w.end, shown_in)),
            });
        }
    }
    Ok(out)
}
