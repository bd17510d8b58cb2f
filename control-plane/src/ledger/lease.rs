//! The lease call's work on the ledger: every ask of one call in one `BEGIN IMMEDIATE`
//! transaction, so that calls from several Envoys are serialised and can never together take
//! more than a limit. See [`super`] for the semantics.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use sqlx::SqliteConnection;
use vllm_gateway_filter::feed::limits::{
    LeaseAsk, LeaseGrant, LimitKey, Subject, CONCURRENCY_LEASE_TTL_SECS,
};
use vllm_gateway_filter::feed::Limits;

use super::window::{window_at, Window};
use super::{limit_of, units};
use crate::store::limits::{of_subject, subject_parts};
use crate::Db;

/// Answers every ask of `instance` at the instant `now` (Unix seconds), in order, in one write
/// transaction taken at its start.
pub async fn lease(
    db: &Db,
    instance: &str,
    asks: &[LeaseAsk],
    now: i64,
) -> Result<Vec<LeaseGrant>, sqlx::Error> {
    let mut tx = db.begin_with("BEGIN IMMEDIATE").await?;
    let mut subjects: HashMap<Subject, Option<Limits>> = HashMap::new();
    let mut grants = Vec::with_capacity(asks.len());
    for ask in asks {
        let subject = ask.key.subject;
        if let Entry::Vacant(entry) = subjects.entry(subject) {
            entry.insert(of_subject(&mut *tx, subject).await?);
        }
        let (limit, tz) = limit_of(subjects[&subject].as_ref(), &ask.key);
        let kind = ask.key.kind;
        let grant = match (limit, window_at(kind, now, tz)) {
            (Some(limit), _) if !kind.is_windowed() => {
                hold(&mut tx, instance, &ask.key, ask, limit, now).await?
            }
            (Some(limit), Some(current)) => {
                let target = match ask.window.filter(|start| *start != current.start) {
                    Some(start) => {
                        window_at(kind, start, tz).map_or(current, |w| Window { start, end: w.end })
                    }
                    None => current,
                };
                count(&mut tx, &ask.key, ask, limit, current, target).await?
            }
            // No such limit (or, past any calendar, no window): nothing to count.
            (_, window) => unlimited(ask.take, window),
        };
        grants.push(grant);
    }
    tx.commit().await?;
    Ok(grants)
}

/// The subject no longer has the limit (or does not exist): everything asked is granted and
/// nothing is counted.
fn unlimited(take: u64, window: Option<Window>) -> LeaseGrant {
    let (start, end) = window.map_or((0, 0), |w| (w.start, w.end));
    LeaseGrant { granted: take, limit: None, used: 0, window: start, resets_at_ms: ms(end) }
}

fn ms(secs: i64) -> u64 {
    u64::try_from(secs).unwrap_or(0).saturating_mul(1000)
}

/// A windowed limit: `charge` and `giveBack` change the `target` window's count, then `take` is
/// granted from the `current` window up to what remains of `limit`.
async fn count(
    tx: &mut SqliteConnection,
    key: &LimitKey,
    ask: &LeaseAsk,
    limit: i64,
    current: Window,
    target: Window,
) -> Result<LeaseGrant, sqlx::Error> {
    let (charge, give_back) = (units(ask.charge), units(ask.give_back));
    if charge > 0 || give_back > 0 {
        let used = used_in(&mut *tx, key, target.start).await?;
        store_used(
            &mut *tx,
            key,
            target,
            used.saturating_add(charge).saturating_sub(give_back).max(0),
        )
        .await?;
    }
    let used = used_in(&mut *tx, key, current.start).await?;
    let granted = units(ask.take).min((limit - used).max(0));
    if granted > 0 {
        store_used(&mut *tx, key, current, used + granted).await?;
    }
    Ok(LeaseGrant {
        granted: granted as u64,
        limit: Some(limit as u64),
        used: (used + granted) as u64,
        window: current.start,
        resets_at_ms: ms(current.end),
    })
}

/// The units counted in the window of `key` that starts at `start`.
pub(super) async fn used_in(
    conn: &mut SqliteConnection,
    key: &LimitKey,
    start: i64,
) -> Result<i64, sqlx::Error> {
    let (subject, id) = subject_parts(key.subject);
    let used: Option<i64> = sqlx::query_scalar(
        "SELECT used FROM limit_ledger WHERE subject = ? AND subject_id = ? AND model = ? AND kind = ? AND window_start = ?",
    )
    .bind(subject)
    .bind(id)
    .bind(key.model.as_deref().unwrap_or(""))
    .bind(key.kind.name())
    .bind(start)
    .fetch_optional(conn)
    .await?;
    Ok(used.unwrap_or(0))
}

async fn store_used(
    conn: &mut SqliteConnection,
    key: &LimitKey,
    window: Window,
    used: i64,
) -> Result<(), sqlx::Error> {
    let (subject, id) = subject_parts(key.subject);
    sqlx::query(
        "INSERT INTO limit_ledger (subject, subject_id, model, kind, window_start, window_end, used) \
         VALUES (?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (subject, subject_id, model, kind, window_start) DO UPDATE SET used = excluded.used",
    )
    .bind(subject)
    .bind(id)
    .bind(key.model.as_deref().unwrap_or(""))
    .bind(key.kind.name())
    .bind(window.start)
    .bind(window.end)
    .bind(used)
    .execute(conn)
    .await?;
    Ok(())
}

/// The concurrency: this instance's holding (taken as 0 once expired) loses `giveBack`, gains
/// `charge` and what can be granted of `take` beside every other instance's unexpired holding,
/// and is renewed for [`CONCURRENCY_LEASE_TTL_SECS`].
async fn hold(
    tx: &mut SqliteConnection,
    instance: &str,
    key: &LimitKey,
    ask: &LeaseAsk,
    limit: i64,
    now: i64,
) -> Result<LeaseGrant, sqlx::Error> {
    let (subject, id) = subject_parts(key.subject);
    let model = key.model.as_deref().unwrap_or("");
    let own: Option<i64> = sqlx::query_scalar(
        "SELECT held FROM limit_holdings WHERE subject = ? AND subject_id = ? AND model = ? AND instance = ? AND expires_at > ?",
    )
    .bind(subject)
    .bind(id)
    .bind(model)
    .bind(instance)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let others = held_by_others(&mut *tx, key, Some(instance), now).await?;
    // A renewal says what the instance holds; else its holding moves by what the ask says.
    let own = match ask.held {
        Some(held) => units(held),
        None => own
            .unwrap_or(0)
            .saturating_add(units(ask.charge))
            .saturating_sub(units(ask.give_back))
            .max(0),
    };
    let granted = units(ask.take).min((limit - others - own).max(0));
    let own = own + granted;
    sqlx::query(
        "INSERT INTO limit_holdings (subject, subject_id, model, instance, held, expires_at) VALUES (?, ?, ?, ?, ?, ?) \
         ON CONFLICT (subject, subject_id, model, instance) DO UPDATE SET held = excluded.held, expires_at = excluded.expires_at",
    )
    .bind(subject)
    .bind(id)
    .bind(model)
    .bind(instance)
    .bind(own)
    .bind(now + CONCURRENCY_LEASE_TTL_SECS)
    .execute(&mut *tx)
    .await?;
    let used = u64::try_from(others + own).unwrap_or(0);
    Ok(LeaseGrant {
        granted: granted as u64,
        limit: Some(limit as u64),
        used,
        window: 0,
        resets_at_ms: 0,
    })
}

/// Concurrency slots of `key`'s subject and model held now by every instance but `except`.
pub(super) async fn held_by_others(
    conn: &mut SqliteConnection,
    key: &LimitKey,
    except: Option<&str>,
    now: i64,
) -> Result<i64, sqlx::Error> {
    let (subject, id) = subject_parts(key.subject);
    sqlx::query_scalar(
        "SELECT IFNULL(SUM(held), 0) FROM limit_holdings \
         WHERE subject = ? AND subject_id = ? AND model = ? AND expires_at > ? AND instance IS NOT ?",
    )
    .bind(subject)
    .bind(id)
    .bind(key.model.as_deref().unwrap_or(""))
    .bind(now)
    .bind(except)
    .fetch_one(conn)
    .await
}
