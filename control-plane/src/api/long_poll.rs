//! Long polls of the state feed: a filter that already has the current state asks
//! `GET /internal/state?wait_ms=n` and is answered when the state changes, or with a 304 after
//! n ms. While anyone waits, one watcher task reads the state's ETag every [`TICK`] and
//! publishes it on a watch channel: one small query for all waiters however many, and every
//! write path is covered, because the version counter is bumped by triggers, not by handlers.
//! The watcher stops when the last waiter leaves and starts again with the next one.
//!
//! Held polls are bounded ([`MAX_WAITERS`]; past that a poll is answered at once) and
//! [`LongPoll::stop`] releases them all for a graceful shutdown.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::state_version;
use crate::metrics::Metrics;
use crate::Db;

/// How often the watcher reads the state's version while anyone waits: a change reaches the
/// waiters at most this long (plus one small query) after its commit.
pub const TICK: Duration = Duration::from_millis(25);
/// The longest a poll is held, whatever it asks for.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// At most this many polls are held at once; the next one is answered at once.
pub const MAX_WAITERS: i64 = 4096;

/// The held polls and the watcher that wakes them.
#[derive(Debug)]
pub struct LongPoll {
    /// The last ETag the watcher read (stale while it is not running).
    latest: watch::Sender<String>,
    /// Whether a watcher task is running.
    running: Mutex<bool>,
    /// Set once, at shutdown.
    stop: watch::Sender<bool>,
    max_waiters: i64,
    metrics: Arc<Metrics>,
}

impl LongPoll {
    /// No poll held yet; at most [`MAX_WAITERS`] will be.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self::with_max_waiters(metrics, MAX_WAITERS)
    }

    fn with_max_waiters(metrics: Arc<Metrics>, max_waiters: i64) -> Self {
        Self {
            latest: watch::Sender::new(String::new()),
            running: Mutex::new(false),
            stop: watch::Sender::new(false),
            max_waiters,
            metrics,
        }
    }

    /// Answers every held poll now, and every later one at once (a graceful shutdown).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// A place among the held polls, or `None` when there are too many or the server is
    /// stopping. Starts the watcher if it is not running (over `db`, with the JWT lifetime
    /// that decides which signing keys are published).
    pub fn waiter(self: &Arc<Self>, db: &Db, jwt_lifetime_secs: i64) -> Option<Waiter> {
        let waiting = &self.metrics.feed.long_polls_waiting;
        if *self.stop.borrow() {
            return None;
        }
        if waiting.fetch_add(1, Relaxed) >= self.max_waiters {
            waiting.fetch_sub(1, Relaxed);
            return None;
        }
        let mut latest = self.latest.subscribe();
        // The value may be stale (the watcher was idle): the first `next_change` looks at it,
        // and the caller checks with the database.
        latest.mark_changed();
        let waiter = Waiter { poll: Arc::clone(self), latest, stop: self.stop.subscribe() };
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if !*running {
            *running = true;
            tokio::spawn(watch(Arc::clone(self), db.clone(), jwt_lifetime_secs));
        }
        Some(waiter)
    }

    /// Whether the watcher should end (nobody waits, or stopping); if so it is marked ended,
    /// under the same lock [`Self::waiter`] starts one with, so none is ever missing.
    fn watcher_done(&self) -> bool {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let done = self.latest.receiver_count() == 0 || *self.stop.borrow();
        if done {
            *running = false;
        }
        done
    }
}

/// Reads the state's version every [`TICK`] and publishes it when it differs, until nobody
/// waits or the server stops.
async fn watch(poll: Arc<LongPoll>, db: Db, jwt_lifetime_secs: i64) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        if poll.watcher_done() {
            return;
        }
        match read_etag(&db, jwt_lifetime_secs).await {
            Ok(etag) => {
                failing = false;
                poll.latest.send_if_modified(|latest| {
                    let changed = *latest != etag;
                    if changed {
                        *latest = etag;
                    }
                    changed
                });
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "long poll: reading the state version failed; retrying");
            }
            Err(_) => {}
        }
    }
}

async fn read_etag(db: &Db, jwt_lifetime_secs: i64) -> Result<String, sqlx::Error> {
    let mut conn = db.acquire().await?;
    Ok(state_version::current(&mut conn, jwt_lifetime_secs).await?.etag)
}

/// One held poll (counted until dropped).
#[derive(Debug)]
pub struct Waiter {
    poll: Arc<LongPoll>,
    latest: watch::Receiver<String>,
    stop: watch::Receiver<bool>,
}

impl Waiter {
    /// Waits until the watcher publishes an ETag other than `etag` (`true`; the caller confirms
    /// with the database), or until `deadline` or shutdown (`false`). Each call waits for a
    /// publication the earlier calls have not seen, so a false alarm is never repeated.
    pub async fn next_change(&mut self, etag: &str, deadline: Instant) -> bool {
        loop {
            tokio::select! {
                biased;
                _ = self.stop.wait_for(|stop| *stop) => return false,
                changed = self.latest.changed() => {
                    if changed.is_err() {
                        return false;
                    }
                    if *self.latest.borrow_and_update() != etag {
                        return true;
                    }
                }
                () = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.poll.metrics.feed.long_polls_waiting.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn db() -> (Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open(&dir.path().join("p.db").display().to_string()).await.unwrap();
        (db, dir)
    }

    #[tokio::test]
    async fn held_polls_are_bounded_and_released_by_stop() {
        let (db, _dir) = db().await;
        let metrics = Arc::new(Metrics::default());
        let poll = Arc::new(LongPoll::with_max_waiters(metrics.clone(), 2));
        let (mut a, b) = (poll.waiter(&db, 60).unwrap(), poll.waiter(&db, 60).unwrap());
        assert!(poll.waiter(&db, 60).is_none(), "a third is refused");
        drop(b);
        let mut c = poll.waiter(&db, 60).unwrap();
        assert_eq!(metrics.feed.long_polls_waiting.load(Relaxed), 2);
        let stopper = Arc::clone(&poll);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            stopper.stop();
        });
        let (started, far) = (Instant::now(), Instant::now() + Duration::from_secs(30));
        // `true` is a publication other than the ETag asked about (the watcher's first reading).
        while c.next_change("\"v0-never\"", far).await {}
        while a.next_change("\"v0-never\"", far).await {}
        assert!(started.elapsed() < Duration::from_secs(5), "released by stop, not by time");
        assert!(poll.waiter(&db, 60).is_none(), "none is held after stop");
        drop((a, c));
        assert_eq!(metrics.feed.long_polls_waiting.load(Relaxed), 0);
    }

    #[tokio::test]
    async fn the_watcher_publishes_a_change_within_a_few_ticks_and_ends_when_nobody_waits() {
        let (db, _dir) = db().await;
        let poll = Arc::new(LongPoll::new(Arc::new(Metrics::default())));
        let before =
            state_version::current(&mut db.acquire().await.unwrap(), 60).await.unwrap().etag;
        let mut waiter = poll.waiter(&db, 60).unwrap();
        tokio::time::sleep(TICK * 2).await;
        sqlx::query("UPDATE state_version SET version = version + 1").execute(&db).await.unwrap();
        let changed_at = Instant::now();
        let deadline = changed_at + Duration::from_secs(5);
        assert!(
            waiter.next_change(&before, deadline).await,
            "the watcher's first reading is no change"
        );
        assert!(
            changed_at.elapsed() < TICK * 4,
            "woken {:?} after the change",
            changed_at.elapsed()
        );
        let published = waiter.latest.borrow().clone();
        assert!(published.starts_with("\"v") && published != before, "{published}");
        drop(waiter);
        tokio::time::sleep(TICK * 4).await;
        assert!(!*poll.running.lock().unwrap(), "the watcher ended");
    }
}
