//! Login throttling: per account (the e-mail, trimmed and lowercased) and per client address,
//! each with exponential backoff after failures — [`Policy::free_failures`] failures cost
//! nothing, then each further one doubles the wait before the next attempt (1 s, 2 s, 4 s, …,
//! at most [`Policy::max_delay`]). A success resets the account.
//!
//! An attempt is charged as a failure when it is admitted, before its password is checked, so
//! that many attempts at once cannot all pass as "no failure yet"; a success, or an attempt
//! that was never checked (the server was busy), gives the charge back.
//!
//! Memory is bounded: an entry idle for [`Policy::forget_after`] is forgotten, and each table
//! keeps at most [`Policy::max_entries`], dropping its oldest tenth when full. Time is passed
//! in, so the policy is tested without waiting.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How attempts are throttled.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Failures that cost no wait.
    pub free_failures: u32,
    /// The wait after the first failure beyond the free ones; doubled by each further one.
    pub first_delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
    /// An entry without a failure for this long is forgotten.
    pub forget_after: Duration,
    /// Entries each table keeps at most.
    pub max_entries: usize,
}

impl Default for Policy {
    /// 5 free failures, then 1 s doubling up to 15 min; forgotten after an idle hour; 100,000
    /// accounts and 100,000 addresses at most.
    fn default() -> Self {
        Self {
            free_failures: 5,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(3600),
            max_entries: 100_000,
        }
    }
}

impl Policy {
    /// The wait after `failures` failures.
    fn delay(&self, failures: u32) -> Duration {
        let Some(beyond) = failures.checked_sub(self.free_failures) else { return Duration::ZERO };
        let factor = 1u32.checked_shl(beyond).unwrap_or(u32::MAX);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Why an attempt is refused, and how long until the next may be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// Too many failures for this account.
    Account(Duration),
    /// Too many failures from this address.
    Address(Duration),
}

/// One account's or address's failures.
#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
}

/// Failures by key, bounded.
#[derive(Debug)]
struct Table<K> {
    entries: HashMap<K, Entry>,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new() -> Self {
        Self { entries: HashMap::new() }
    }

    /// The wait before `key` may try again (zero: now).
    fn wait(&self, key: &K, now: Instant, policy: &Policy) -> Duration {
        match self.entries.get(key) {
            Some(e) if now.saturating_duration_since(e.last) < policy.forget_after => {
                (e.last + policy.delay(e.failures)).saturating_duration_since(now)
            }
            _ => Duration::ZERO,
        }
    }

    /// Counts one failure of `key` at `now`.
    fn charge(&mut self, key: &K, now: Instant, policy: &Policy) {
        if let Some(e) = self.entries.get_mut(key) {
            let forgotten = now.saturating_duration_since(e.last) >= policy.forget_after;
            *e = Entry {
                failures: if forgotten { 1 } else { e.failures.saturating_add(1) },
                last: now,
            };
            return;
        }
        if self.entries.len() >= policy.max_entries.max(1) {
            self.make_room(now, policy);
        }
        self.entries.insert(key.clone(), Entry { failures: 1, last: now });
    }

    /// Takes back one failure of `key`.
    fn refund(&mut self, key: &K) {
        if let Some(e) = self.entries.get_mut(key) {
            e.failures = e.failures.saturating_sub(1);
            if e.failures == 0 {
                self.entries.remove(key);
            }
        }
    }

    /// Drops forgotten entries, then, if still full, the oldest tenth.
    fn make_room(&mut self, now: Instant, policy: &Policy) {
        self.entries.retain(|_, e| now.saturating_duration_since(e.last) < policy.forget_after);
        if self.entries.len() < policy.max_entries {
            return;
        }
        let mut by_age: Vec<(Instant, K)> =
            self.entries.iter().map(|(k, e)| (e.last, k.clone())).collect();
        by_age.sort_unstable_by_key(|(last, _)| *last);
        let drop = (policy.max_entries / 10).max(1);
        for (_, key) in by_age.into_iter().take(drop) {
            self.entries.remove(&key);
        }
    }
}

/// The two tables, behind one lock (every operation is a few hash-map steps).
#[derive(Debug)]
struct Tables {
    accounts: Table<String>,
    addresses: Table<IpAddr>,
}

/// The throttle of `/user/user_login`.
#[derive(Debug)]
pub struct LoginThrottle {
    policy: Policy,
    tables: Mutex<Tables>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new(Policy::default())
    }
}

/// The account key of an e-mail: trimmed and lowercased.
pub fn account_key(email: &str) -> String {
    email.trim().to_lowercase()
}

impl LoginThrottle {
    /// A throttle with `policy` and no failure yet.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            tables: Mutex::new(Tables { accounts: Table::new(), addresses: Table::new() }),
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits an attempt on `account` (an [`account_key`]) from `address` (when known) at `now`,
    /// charging it as a failure of both; or says which is throttled, and for how long.
    pub fn admit(
        &self,
        account: &str,
        address: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), Throttled> {
        let mut tables = self.tables();
        let account = account.to_owned();
        if let Some(address) = address {
            let wait = tables.addresses.wait(&address, now, &self.policy);
            if !wait.is_zero() {
                return Err(Throttled::Address(wait));
            }
        }
        let wait = tables.accounts.wait(&account, now, &self.policy);
        if !wait.is_zero() {
            return Err(Throttled::Account(wait));
        }
        tables.accounts.charge(&account, now, &self.policy);
        if let Some(address) = address {
            tables.addresses.charge(&address, now, &self.policy);
        }
        Ok(())
    }

    /// The admitted attempt had the right password: the account starts afresh and the
    /// address gets its charge back.
    pub fn succeeded(&self, account: &str, address: Option<IpAddr>) {
        let mut tables = self.tables();
        tables.accounts.entries.remove(account);
        if let Some(address) = address {
            tables.addresses.refund(&address);
        }
    }

    /// The admitted attempt was never checked (busy, or an internal error): both charges are
    /// given back.
    pub fn not_checked(&self, account: &str, address: Option<IpAddr>) {
        let mut tables = self.tables();
        tables.accounts.refund(&account.to_owned());
        if let Some(address) = address {
            tables.addresses.refund(&address);
        }
    }

    /// Entries held (accounts, addresses).
    pub fn entries(&self) -> (usize, usize) {
        let tables = self.tables();
        (tables.accounts.entries.len(), tables.addresses.entries.len())
    }
}

#[cfg(test)]
mod tests;
