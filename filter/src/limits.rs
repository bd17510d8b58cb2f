//! Limits and budgets, enforced before a request is forwarded and while its reply streams.
//!
//! **Admission.** A request of a limited caller (an app's key, a user's JWT) is given a *grant*
//! ([`admit`]): one unit of each request limit and of the concurrency, and of each token limit
//! its prompt (estimated from the body) plus the completion it may generate (`max_tokens`, or a
//! default), reduced to what remains — refused (429) only when not even the prompt and one
//! completion token fit. What is granted is held in the Envoy's ledger ([`ledger`], shared by
//! every worker by compare-and-swap) while the request runs, so concurrent requests never spend
//! the same remainder; at the end the grant is settled with the real usage ([`settle`]): the
//! rest given back, an overrun charged.
//!
//! **Leases.** An Envoy spends units the control plane leased to it ([`lease`]); when its lease
//! is short the request waits for one lease call and is then decided with what there is. The
//! control plane never leases more than a limit, so several Envoys together never admit more than
//! it either.

use std::rc::Rc;

use crate::feed::limits::{LeaseAsk, LimitKey, LimitKind, Limits, Subject};
use crate::state_sync::SharedData;

pub mod float;
pub mod ledger;
pub mod lease;
pub mod rate_headers;
mod spend;

use spend::take;
pub use spend::{extend, release, settle};

use float::Float;
use ledger::{Entry, Ledger};

/// Share of a limit one lease call asks for beyond what the request needs (1/8).
const LEASE_SHARE: u64 = 8;
/// Limits below this are leased only what each request needs: no unit of a small limit waits
/// unspent at one Envoy while another refuses.
const SMALL_LIMIT: u64 = 64;
/// Attempts to take a grant when other workers keep taking the same units.
const ADMIT_ATTEMPTS: usize = 8;
/// How long a ledger entry that says "unlimited" (the control plane no longer had the limit the
/// state feed still shows) is believed before asking again, in milliseconds.
const UNLIMITED_TRUST_MS: u64 = 1_000;
/// How old the control plane's word on the other Envoys may be before a limit that looks used
/// up is asked about again rather than refused (another Envoy may have given units back).
const STALE_MS: u64 = 1_000;

/// What a request asks of its caller's limits.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// Whose limits.
    pub subject: Subject,
    /// The limits.
    pub limits: &'a Limits,
    /// The requested model.
    pub model: &'a str,
    /// The prompt's tokens, estimated from the body.
    pub prompt_tokens: u64,
    /// The completion tokens it may generate at most (`max_tokens` × `choices`, or the default).
    pub completion_tokens: u64,
    /// The choices it generates (`n` for each prompt): a grant leaves each at least one token.
    pub choices: u64,
}

/// One limit that applies to a request, and what the request needs of it.
#[derive(Debug, Clone)]
struct Need {
    key: LimitKey,
    shared_key: Rc<str>,
    limit: u64,
    /// The least that admits the request.
    min: u64,
    /// What it would like.
    want: u64,
}

/// Units of one limit a request holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Which limit.
    pub key: LimitKey,
    shared_key: Rc<str>,
    window: i64,
    /// Units held.
    pub units: u64,
}

/// Where one limit stands for a caller (for the `x-ratelimit-*` headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Which limit.
    pub kind: LimitKind,
    /// The limit.
    pub limit: u64,
    /// What remains of it over every Envoy, as far as this one knows.
    pub remaining: u64,
    /// Milliseconds until its window ends (0 for concurrency).
    pub resets_in_ms: u64,
}

/// What a request was granted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// The units held until the request ends.
    pub holds: Vec<Hold>,
    /// The tokens granted (prompt and completion), when a token limit applies.
    pub tokens: Option<u64>,
    /// The prompt estimate the grant was made with.
    pub prompt_tokens: u64,
    /// Where the caller's limits stand.
    pub standing: Vec<Standing>,
}

impl Grant {
    /// The completion tokens granted, when a token limit applies.
    pub fn completion_tokens(&self) -> Option<u64> {
        self.tokens.map(|t| t.saturating_sub(self.prompt_tokens))
    }
}

/// A request refused by a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitRefusal {
    /// The limit that refused it.
    pub key: LimitKey,
    /// Its value.
    pub limit: u64,
    /// What the request needed of it at least.
    pub needed: u64,
    /// What remained.
    pub remaining: u64,
    /// Seconds until it may succeed (`Retry-After`).
    pub retry_after_secs: u64,
    /// Where the caller's limits stand.
    pub standing: Vec<Standing>,
}

/// What [`admit`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Forward the request with this grant.
    Granted(Grant),
    /// Refuse it (429).
    Refused(LimitRefusal),
    /// Ask the control plane for these leases, then admit again (without leasing).
    Lease(Vec<LeaseAsk>),
    /// A limit has no lease and none could be had (the control plane is unreachable).
    Unavailable,
}

/// Decides a request's admission at `now_ms` (see the module docs): from the worker's `float`
/// when it holds all the request wants, else from the Envoy's ledger. With `may_lease` false
/// (the lease call was made, or failed) it is decided with the leases there are.
pub fn admit(
    shared: &mut dyn SharedData,
    float: &mut Float,
    ask: &Ask<'_>,
    now_ms: u64,
    may_lease: bool,
) -> Admission {
    let needs = needs(ask);
    if let Some(grant) = from_float(float, &needs, ask, now_ms) {
        return Admission::Granted(grant);
    }
    'attempts: for _ in 0..ADMIT_ATTEMPTS {
        let ledgers = Ledgers::read(shared, &needs);
        let entries: Vec<Option<Entry>> =
            needs.iter().map(|n| ledgers.current(n, now_ms)).collect();
        let mut tokens = ask.prompt_tokens.saturating_add(ask.completion_tokens);
        let mut asks = Vec::new();
        for (need, entry) in needs.iter().zip(&entries) {
            match decide(need, entry.as_ref(), now_ms, may_lease) {
                Decision::Fits(available) if need.key.kind.counts_tokens() => {
                    tokens = tokens.min(available)
                }
                Decision::Fits(_) | Decision::Unlimited => {}
                Decision::Refuse(_) if !float.is_empty() => {
                    // Units this worker floats are spent in the ledger: give them back first.
                    float.flush(shared, now_ms);
                    continue 'attempts;
                }
                Decision::Refuse(entry) => {
                    return Admission::Refused(refusal(
                        need,
                        &entry,
                        standing(&ledgers, &needs, now_ms),
                        now_ms,
                    ))
                }
                Decision::Lease(lease_ask) => asks.push(lease_ask),
                Decision::Unavailable => return Admission::Unavailable,
            }
        }
        if !asks.is_empty() {
            return Admission::Lease(asks);
        }
        if let Some((holds, after)) = take(shared, float, &needs, &entries, tokens, now_ms) {
            let counts_tokens = needs.iter().any(|n| n.key.kind.counts_tokens());
            return Admission::Granted(Grant {
                holds,
                tokens: counts_tokens.then_some(tokens),
                prompt_tokens: ask.prompt_tokens,
                standing: standing(&after, &needs, now_ms),
            });
        }
    }
    Admission::Unavailable
}

/// The grant of all a request wants, from the worker's float, when it holds that much of every
/// limit (no shared data is touched).
fn from_float(float: &mut Float, needs: &[Need], ask: &Ask<'_>, now_ms: u64) -> Option<Grant> {
    let tokens = ask.prompt_tokens.saturating_add(ask.completion_tokens);
    let units = |need: &Need| if need.key.kind.counts_tokens() { tokens } else { 1 };
    let mut floats = Vec::with_capacity(needs.len());
    for need in needs {
        let f = float.usable(&need.shared_key, need.key.kind, need.limit, now_ms)?;
        if f.held < units(need) {
            return None;
        }
        floats.push(f);
    }
    let mut grant = Grant {
        holds: Vec::with_capacity(needs.len()),
        standing: Vec::with_capacity(needs.len()),
        prompt_tokens: ask.prompt_tokens,
        tokens: None,
    };
    for (need, f) in needs.iter().zip(floats) {
        let units = units(need);
        float.spend(&need.shared_key, need.key.kind, units);
        let hold = Hold {
            key: need.key.clone(),
            shared_key: need.shared_key.clone(),
            window: f.window,
            units,
        };
        grant.holds.push(hold);
        grant.standing.push(Standing {
            kind: need.key.kind,
            limit: need.limit,
            remaining: f.remaining.saturating_sub(units),
            resets_in_ms: f.resets_at_ms.saturating_sub(now_ms),
        });
    }
    grant.tokens = needs.iter().any(|n| n.key.kind.counts_tokens()).then_some(tokens);
    Some(grant)
}

/// The ledgers of the scopes a request's limits are in (one or two), by shared-data key.
struct Ledgers(Vec<(String, Ledger)>);

impl Ledgers {
    fn read(shared: &dyn SharedData, needs: &[Need]) -> Self {
        let mut ledgers: Vec<(String, Ledger)> = Vec::with_capacity(2);
        for need in needs {
            if !ledgers.iter().any(|(k, _)| **k == *need.shared_key) {
                ledgers.push((need.shared_key.to_string(), ledger::read(shared, &need.shared_key)));
            }
        }
        Self(ledgers)
    }

    fn entry(&self, need: &Need) -> Option<Entry> {
        self.0.iter().find(|(k, _)| **k == *need.shared_key).and_then(|(_, l)| l.get(need.key.kind))
    }

    /// The entry of `need` when it speaks of the current window (or owes an overdraft).
    fn current(&self, need: &Need, now_ms: u64) -> Option<Entry> {
        self.entry(need).filter(|e| e.is_current(now_ms) || e.overdraft() > 0)
    }
}

/// The limits that apply to the request, with what it needs of each.
fn needs(ask: &Ask<'_>) -> Vec<Need> {
    // One key per scope (subject-wide, the model's), shared by its limits.
    let mut scopes: Vec<(Option<&str>, Rc<str>)> = Vec::with_capacity(2);
    ask.limits
        .applying_to(ask.model)
        .map(|(model, kind, limit)| {
            let shared_key = match scopes.iter().find(|(m, _)| *m == model) {
                Some((_, key)) => key.clone(),
                None => {
                    let key: Rc<str> = ledger::scope_key(ask.subject, model).into();
                    scopes.push((model, key.clone()));
                    key
                }
            };
            let key = LimitKey { subject: ask.subject, model: model.map(str::to_owned), kind };
            let (min, want) = if kind.counts_tokens() {
                let min =
                    ask.prompt_tokens.saturating_add(ask.choices.max(1).min(ask.completion_tokens));
                (min, ask.prompt_tokens.saturating_add(ask.completion_tokens))
            } else {
                (1, 1)
            };
            let limit = u64::try_from(limit).unwrap_or(0);
            Need { shared_key, key, limit, min, want }
        })
        .collect()
}

enum Decision {
    /// Fits, with this much available.
    Fits(u64),
    /// The control plane says this limit is no longer set.
    Unlimited,
    Refuse(Entry),
    Lease(LeaseAsk),
    Unavailable,
}

fn decide(need: &Need, entry: Option<&Entry>, now_ms: u64, may_lease: bool) -> Decision {
    let usable = entry.filter(|e| e.is_current(now_ms) && is_fresh(need, e, now_ms));
    match usable {
        Some(e) if e.limit.is_none() => Decision::Unlimited,
        Some(e) if e.available() >= need.want => Decision::Fits(e.available()),
        Some(e)
            if e.exhausted() && may_lease && now_ms.saturating_sub(e.renewed_ms) >= STALE_MS =>
        {
            Decision::Lease(lease_ask(need, entry, true))
        }
        Some(e) if e.exhausted() || !may_lease => {
            if e.available() >= need.min {
                Decision::Fits(e.available())
            } else {
                Decision::Refuse(*e)
            }
        }
        _ if !may_lease => Decision::Unavailable,
        _ => Decision::Lease(lease_ask(need, entry, usable.is_some())),
    }
}

/// Whether the entry's limit is the one the state shows (else the admin changed it: ask again).
fn is_fresh(need: &Need, entry: &Entry, now_ms: u64) -> bool {
    match entry.limit {
        Some(limit) => limit == need.limit,
        None => now_ms.saturating_sub(entry.renewed_ms) < UNLIMITED_TRUST_MS,
    }
}

/// The lease call for a need: what it lacks and a share of the limit. (An overdraft is charged
/// by the upkeep, [`lease::Upkeep`], never here: it is taken off the ledger when it is sent.)
fn lease_ask(need: &Need, entry: Option<&Entry>, usable: bool) -> LeaseAsk {
    let available = entry.filter(|_| usable).map_or(0, Entry::available);
    let share = if need.limit < SMALL_LIMIT { 0 } else { need.limit.div_ceil(LEASE_SHARE) };
    // Never more than the limit (a hostile `max_tokens` must not fail the call).
    let take = need.want.saturating_sub(available).max(share).max(1).min(need.limit.max(1));
    LeaseAsk { key: need.key.clone(), window: None, charge: 0, give_back: 0, take, held: None }
}

fn refusal(need: &Need, entry: &Entry, standing: Vec<Standing>, now_ms: u64) -> LimitRefusal {
    let retry_after_secs = match need.key.kind {
        LimitKind::ConcurrentRequests => 1,
        _ => entry.resets_at_ms.saturating_sub(now_ms).div_ceil(1000).max(1),
    };
    LimitRefusal {
        key: need.key.clone(),
        limit: need.limit,
        needed: need.min,
        remaining: entry.remaining().unwrap_or(0),
        retry_after_secs,
        standing,
    }
}

/// Where each limit of the request stands in `ledgers`.
fn standing(ledgers: &Ledgers, needs: &[Need], now_ms: u64) -> Vec<Standing> {
    needs
        .iter()
        .filter_map(|need| {
            let entry = ledgers.entry(need).filter(|e| e.is_current(now_ms))?;
            Some(Standing {
                kind: need.key.kind,
                limit: need.limit,
                remaining: entry.remaining()?,
                resets_in_ms: entry.resets_at_ms.saturating_sub(now_ms),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
