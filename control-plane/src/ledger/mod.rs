//! The limits' ledger: what the control plane has leased out of every limit of every app and
//! user, per window, so that the Envoys together never admit more than a limit
//! ([`vllm_gateway_filter::feed::limits`] is the contract).
//!
//! Per subject, model scope, limit and window the ledger counts `used`: units leased out to
//! Envoys plus units charged beyond a lease, minus units given back. An ask's `take` is granted
//! up to `limit - used` (never more); its `charge` is added whatever the limit says (a reply
//! that overran its grant); its `giveBack` is subtracted (never below 0) from the window it
//! names. A subject without the limit (or unknown) is granted all it asks and nothing is
//! counted. The concurrency is counted in slots held per Envoy instance, which expire unless
//! an ask of the same instance renews them within
//! [`CONCURRENCY_LEASE_TTL_SECS`](vllm_gateway_filter::feed::limits::CONCURRENCY_LEASE_TTL_SECS).
//!
//! The limit values are the subject's current limits in the database; a per-model set without
//! a `timeZone` counts its days and months in the subject-wide set's zone (UTC by default).
//! Windows are computed in [`window`]; one call's asks are answered in one transaction
//! ([`lease::lease`]); [`usage`] shows where each limit stands to admins; [`spawn_pruning`]
//! deletes windows that ended long ago and expired holdings.

pub mod lease;
pub mod usage;
pub mod window;

use std::time::Duration;

use chrono_tz::Tz;
use tokio::task::JoinHandle;
use vllm_gateway_filter::feed::limits::{Caps, LimitKey};
use vllm_gateway_filter::feed::Limits;

use crate::Db;

/// Ledger rows of windows that ended more than this long ago are deleted (a month's window
/// and more, so admins see the last month's use).
pub const KEEP_ENDED_WINDOWS_SECS: i64 = 40 * 86_400;

/// How often the ledger is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Rows deleted by one statement at most.
const PRUNE_BATCH: i64 = 5_000;

/// The limit `key` names in `limits` (if set) and the time zone its days and months count in:
/// the model set's zone, else the subject-wide one, else UTC.
pub fn limit_of(limits: Option<&Limits>, key: &LimitKey) -> (Option<i64>, Tz) {
    let Some(limits) = limits else { return (None, Tz::UTC) };
    let caps: Option<&Caps> = match &key.model {
        None => Some(&limits.all),
        Some(model) => limits.models.get(model),
    };
    let zone_name = caps.and_then(|c| c.time_zone.as_deref()).or(limits.all.time_zone.as_deref());
    let tz = window::zone(zone_name).unwrap_or(Tz::UTC);
    (caps.and_then(|c| c.get(key.kind)).filter(|n| *n > 0), tz)
}

/// Units as the ledger stores them (the endpoint caps them far below `i64::MAX`).
fn units(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Deletes ledger windows that ended more than [`KEEP_ENDED_WINDOWS_SECS`] before `now` and
/// holdings that have expired, in small batches; returns how many rows went.
pub async fn prune(db: &Db, now: i64) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    let statements = [
        ("DELETE FROM limit_ledger WHERE rowid IN (SELECT rowid FROM limit_ledger WHERE window_end < ? LIMIT ?)", now - KEEP_ENDED_WINDOWS_SECS),
        ("DELETE FROM limit_holdings WHERE rowid IN (SELECT rowid FROM limit_holdings WHERE expires_at <= ? LIMIT ?)", now),
    ];
    for (sql, cutoff) in statements {
        loop {
            let n =
                sqlx::query(sql).bind(cutoff).bind(PRUNE_BATCH).execute(db).await?.rows_affected();
            deleted += n;
            if n < PRUNE_BATCH as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(deleted)
}

/// Prunes the ledger now and every ten minutes, until aborted.
pub fn spawn_pruning(db: Db) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match prune(&db, crate::store::now_secs()).await {
                Ok(0) => {}
                Ok(deleted) => tracing::debug!(deleted, "limit ledger pruned"),
                Err(e) => {
                    tracing::warn!(error = %e, "pruning the limit ledger failed; trying again later")
                }
            }
            tokio::time::sleep(PRUNE_EVERY).await;
        }
    })
}

#[cfg(test)]
mod tests;
