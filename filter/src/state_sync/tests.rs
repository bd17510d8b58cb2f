//! Workers sharing one in-memory fake of Envoy's shared data (with its compare-and-swap rules):
//! the lease, the ring of changes, the base, catch-ups, long polls, retries.

use super::ring::{push_change, read_mark, share_base, RING};
use super::testing::FakeShared;
use super::*;
use crate::control_plane::{CallAnswer, CallRequest};
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// A state that is just its position; documents are `whole:<epoch>:<version>` and
/// `delta:<epoch>:<since>:<version>`, anything else is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fake {
    epoch: String,
    version: i64,
}

fn fields(document: &[u8], kind: &str) -> Result<Vec<String>, String> {
    let text = String::from_utf8_lossy(document);
    let rest = text.strip_prefix(kind).ok_or_else(|| format!("malformed: {text}"))?;
    Ok(rest.split(':').map(str::to_owned).collect())
}

impl SyncedState for Fake {
    type Error = String;

    fn read_whole(document: &[u8]) -> Result<Self, String> {
        let f = fields(document, "whole:")?;
        Ok(Fake { epoch: f[0].clone(), version: f[1].parse().map_err(|_| "version")? })
    }

    fn apply_delta(&mut self, delta: &[u8]) -> Result<Applied, String> {
        let f = fields(delta, "delta:")?;
        let (since, version) =
            (f[1].parse().map_err(|_| "since")?, f[2].parse().map_err(|_| "version")?);
        let applied = check(self.position(), &f[0], since, version);
        if applied == Applied::Changed {
            self.version = version;
        }
        Ok(applied)
    }

    fn position(&self) -> (&str, i64) {
        (&self.epoch, self.version)
    }
}

type Sync = StateSync<Fake>;

fn feed(long_poll_ms: u64) -> StateFeed {
    serde_json::from_value(serde_json::json!({
        "cluster": "cp", "token": "0123456789abcdef", "refresh_ms": 1000, "timeout_ms": 2000,
        "long_poll_ms": long_poll_ms
    }))
    .unwrap()
}

fn whole(version: i64) -> CallAnswer {
    CallAnswer {
        status: Some(200),
        etag: Some(format!("\"v{version}\"")),
        body: format!("whole:e:{version}").into_bytes(),
        delta: false,
    }
}

fn delta(since: i64, version: i64) -> CallAnswer {
    CallAnswer {
        delta: true,
        body: format!("delta:e:{since}:{version}").into_bytes(),
        ..whole(version)
    }
}

fn status(status: Option<u16>) -> CallAnswer {
    CallAnswer { status, ..CallAnswer::default() }
}

fn version(w: &Sync) -> Option<i64> {
    w.state().map(|s| s.version)
}

/// Dispatches `w`'s next call as `token` at `now` and answers it.
fn call(
    w: &mut Sync,
    shared: &mut FakeShared,
    now: u64,
    token: u32,
    answer: &CallAnswer,
) -> (CallRequest, bool) {
    let request = w.next_call(shared, now).expect("a call is due");
    w.call_sent(token);
    (request, w.call_answered(shared, now, token, answer))
}

/// A worker that has pulled (and shared) the whole state at `v` at time `now`.
fn pulled(shared: &mut FakeShared, now: u64, v: i64) -> Sync {
    let mut w = Sync::new(&feed(20_000));
    assert!(call(&mut w, shared, now, 1, &whole(v)).1);
    w
}

#[test]
fn the_lease_is_taken_once_and_the_others_adopt_the_base() {
    let mut shared = FakeShared::default();
    let (mut w1, mut w2) = (Sync::new(&feed(20_000)), Sync::new(&feed(20_000)));
    let first = w1.next_call(&mut shared, 0).unwrap();
    assert_eq!(
        first,
        CallRequest {
            path: "/internal/state".into(),
            if_none_match: None,
            timeout_ms: 2000,
            body: None
        },
        "short, whole"
    );
    assert_eq!(w2.next_call(&mut shared, 0), None, "the lease is held");
    w1.call_sent(7);
    assert_eq!(w1.next_call(&mut shared, 0), None, "one pull in flight");
    assert!(w1.is_call(7) && !w1.is_call(8));
    assert!(!w2.adopt(&shared), "nothing shared yet");
    assert!(w1.call_answered(&mut shared, 30, 7, &whole(3)));
    assert!(!w1.adopt(&shared), "the puller holds what it shared");
    assert!(w2.adopt(&shared));
    assert_eq!((version(&w2), w2.wholes_installed()), (Some(3), 1));
    assert!(!w2.adopt(&shared), "adopted once");
}

#[test]
fn pulls_ask_for_changes_and_wait_and_a_change_reaches_every_worker_as_a_delta() {
    let mut shared = FakeShared::default();
    let mut w1 = pulled(&mut shared, 0, 3);
    let mut w2 = Sync::new(&feed(20_000));
    w2.adopt(&shared);
    assert_eq!(shared.lease(), 0, "a 200 hands the lease back at once");
    let request = w2.next_call(&mut shared, 200).unwrap();
    assert_eq!(request.path, "/internal/state?since=3&epoch=e&wait_ms=20000");
    assert_eq!((request.if_none_match.as_deref(), request.timeout_ms), (Some("\"v3\""), 22_000));
    w2.call_sent(3);
    assert_eq!(shared.lease(), 200 + 22_000 + LEASE_SLACK_MS, "the lease covers the whole call");
    assert_eq!(w1.next_call(&mut shared, 15_000), None, "held while the control plane waits");
    assert!(!w2.call_answered(&mut shared, 20_200, 3, &status(Some(304))));
    assert_eq!(shared.lease(), 20_200, "after 304 the next long poll goes out at once");
    let (_, changed) = call(&mut w1, &mut shared, 20_400, 4, &delta(3, 5));
    assert!(changed);
    assert_eq!(shared.lease(), 20_400);
    assert!(w2.adopt(&shared));
    assert_eq!(
        (version(&w2), w2.wholes_installed()),
        (Some(5), 1),
        "moved on by the delta, not replaced"
    );
    assert_eq!(read_mark(&shared, HEAD_KEY).unwrap().seq, 2);
}

#[test]
fn a_304_right_away_never_pulls_faster_than_refresh() {
    // A control plane that does not hold the call (no `wait_ms` support) answers 304 at once.
    let mut shared = FakeShared::default();
    let mut w = pulled(&mut shared, 0, 1);
    call(&mut w, &mut shared, 200, 2, &status(Some(304)));
    assert_eq!(shared.lease(), 200 + 1000);
    assert_eq!(w.next_call(&mut shared, 1_199), None);
    assert!(w.next_call(&mut shared, 1_200).is_some());
}

#[test]
fn without_long_polls_pulls_go_out_every_refresh() {
    let mut shared = FakeShared::default();
    let mut w = Sync::new(&feed(0));
    call(&mut w, &mut shared, 100, 1, &whole(1));
    assert_eq!(shared.lease(), 1_100);
    let request = w.next_call(&mut shared, 1_100).unwrap();
    assert_eq!(
        (request.path.as_str(), request.timeout_ms),
        ("/internal/state?since=1&epoch=e", 2000)
    );
}

#[test]
fn the_query_joins_the_paths_own_and_no_etag_means_no_long_poll() {
    let mut f = feed(5_000);
    f.path = "/internal/state?tenant=a".into();
    let mut shared = FakeShared::default();
    let mut w = Sync::new(&f);
    call(&mut w, &mut shared, 0, 1, &whole(1));
    assert_eq!(
        w.next_call(&mut shared, 0).unwrap().path,
        "/internal/state?tenant=a&since=1&epoch=e&wait_ms=5000"
    );

    let mut shared = FakeShared::default();
    let mut w = Sync::new(&feed(20_000));
    call(&mut w, &mut shared, 0, 1, &CallAnswer { etag: None, ..whole(1) });
    assert_eq!(shared.lease(), 1000);
    let request = w.next_call(&mut shared, 1000).unwrap();
    assert_eq!((request.if_none_match, request.timeout_ms), (None, 2000));
}

#[test]
fn a_failed_pull_keeps_the_state_and_retries_later() {
    let mut shared = FakeShared::default();
    let mut w = Sync::new(&feed(20_000));
    assert!(!call(&mut w, &mut shared, 0, 1, &status(None)).1);
    assert_eq!(shared.lease(), FIRST_STATE_RETRY_MS, "soon, before the first state");

    let mut w = pulled(&mut shared, 1_000, 1);
    let bad = CallAnswer { body: b"garbage".to_vec(), ..delta(1, 2) };
    for failure in [status(Some(503)), status(None), bad, delta(4, 6)] {
        let now = shared.lease().max(2_000);
        assert!(!call(&mut w, &mut shared, now, 2, &failure).1);
        assert_eq!(shared.lease(), now + 1000, "refresh_ms later, once a state is held");
    }
    assert_eq!(read_mark(&shared, HEAD_KEY).unwrap().version, 1, "nothing unusable is shared");
    assert_eq!(version(&w), Some(1));
}

#[test]
fn a_pull_that_cannot_be_dispatched_gives_the_lease_back() {
    let mut shared = FakeShared::default();
    let (mut w1, mut w2) = (Sync::new(&feed(20_000)), Sync::new(&feed(20_000)));
    w1.next_call(&mut shared, 0).unwrap();
    w1.call_not_sent(&mut shared, 0);
    assert!(w2.next_call(&mut shared, 0).is_some(), "another worker pulls at once");
    w1.call_not_sent(&mut shared, 0);
    assert_ne!(shared.lease(), 0, "only the holder's lease is given back");
}

#[test]
fn a_pull_never_answered_is_forgotten_and_a_late_answer_leaves_the_new_lease_alone() {
    let mut shared = FakeShared::default();
    let (mut w1, mut w2) = (Sync::new(&feed(20_000)), Sync::new(&feed(20_000)));
    w1.next_call(&mut shared, 0).unwrap();
    w1.call_sent(1);
    let expiry = shared.lease();
    assert_eq!(w2.next_call(&mut shared, expiry - 1), None);
    w2.next_call(&mut shared, expiry).unwrap();
    w2.call_sent(2);
    let taken = shared.lease();
    assert!(!w1.call_answered(&mut shared, expiry + 1, 1, &status(Some(503))));
    assert_eq!(shared.lease(), taken);
    assert!(w1.next_call(&mut shared, expiry + 2).is_none(), "the lost pull is forgotten");
    assert!(!w1.is_call(1));
}

/// A store whose head has moved `n` changes (versions 2..) past a base at version 1.
fn ring_of(n: i64) -> FakeShared {
    let mut shared = FakeShared::default();
    let mut puller = pulled(&mut shared, 0, 1);
    for v in 2..2 + n {
        call(&mut puller, &mut shared, 0, 2, &delta(v - 1, v));
    }
    shared
}

#[test]
fn a_worker_behind_the_ring_catches_up_with_the_changes_since_its_version() {
    let mut shared = ring_of(3);
    let mut w = Sync::new(&feed(20_000));
    assert!(w.adopt(&shared));
    assert_eq!(version(&w), Some(4), "base, then the ring");
    // The ring moves on by more than it keeps while this worker is away.
    let mut puller = Sync::new(&feed(20_000));
    puller.adopt(&shared);
    let last = 4 + i64::try_from(RING).unwrap() + 1;
    for v in 5..=last {
        call(&mut puller, &mut shared, 0, 3, &delta(v - 1, v));
    }
    assert!(!w.adopt(&shared), "too far behind; the base is older than what it holds");
    let request = w.next_call(&mut shared, 10).unwrap();
    assert_eq!(
        (request.path.as_str(), request.if_none_match),
        ("/internal/state?since=4&epoch=e", None)
    );
    w.call_sent(9);
    assert!(!w.adopt(&shared), "waits for its catch-up");
    assert!(w.call_answered(&mut shared, 20, 9, &delta(4, last)));
    assert_eq!(version(&w), Some(last));
    call(&mut puller, &mut shared, 30, 3, &delta(last, last + 1));
    assert!(w.adopt(&shared), "follows the ring again");
    assert_eq!((version(&w), w.wholes_installed()), (Some(last + 1), 1));
}

#[test]
fn a_new_worker_whose_base_is_too_old_asks_for_the_whole_state_and_shares_it() {
    let n = i64::try_from(RING).unwrap() + 2;
    let mut shared = ring_of(n);
    let mut w = Sync::new(&feed(20_000));
    assert!(w.adopt(&shared), "the old base is better than nothing");
    assert_eq!(version(&w), Some(1));
    let request = w.next_call(&mut shared, 0).unwrap();
    assert_eq!(request.path, "/internal/state?since=1&epoch=e");
    w.call_sent(4);
    assert!(w.call_answered(&mut shared, 0, 4, &whole(n + 1)));
    assert_eq!(
        read_mark(&shared, BASE_KEY).unwrap().version,
        n + 1,
        "a newer base for the next one"
    );
    let mut next = Sync::new(&feed(20_000));
    assert!(next.adopt(&shared));
    assert_eq!(version(&next), Some(n + 1));
    assert_eq!(
        next.next_call(&mut shared, 0).map(|r| r.path.contains("wait_ms")),
        Some(true),
        "no catch-up needed"
    );
}

#[test]
fn a_whole_state_for_a_puller_that_held_one_is_announced_on_the_ring() {
    let mut shared = FakeShared::default();
    let mut w1 = pulled(&mut shared, 0, 5);
    let mut w2 = Sync::new(&feed(20_000));
    w2.adopt(&shared);
    // The control plane's database was replaced: another epoch, sent whole.
    let other = CallAnswer { body: b"whole:f:2".to_vec(), ..whole(2) };
    assert!(call(&mut w1, &mut shared, 10, 2, &other).1);
    assert!(w2.adopt(&shared));
    assert_eq!((w2.state().unwrap().epoch.as_str(), version(&w2)), ("f", Some(2)));
}

#[test]
fn older_changes_after_a_newer_base_are_skipped_and_a_malformed_base_is_read_once() {
    let mut shared = ring_of(2);
    // A catch-up shared a base newer than the ring's entries.
    let base = Mark { seq: 1, epoch: "e".into(), version: 9, etag: "\"v9\"".into() };
    share_base(&mut shared, &base, b"whole:e:9");
    let mut w = Sync::new(&feed(20_000));
    assert!(w.adopt(&shared));
    assert_eq!(version(&w), Some(9), "never back to 2 or 3");

    let mut shared = ring_of(1);
    share_base(&mut shared, &Mark { version: 7, ..base }, b"garbage");
    push_change(
        &mut shared,
        Mark { seq: 0, epoch: "e".into(), version: 8, etag: String::new() },
        &ring::Change::Whole,
    );
    let mut w = Sync::new(&feed(20_000));
    assert!(!w.adopt(&shared));
    assert!(!w.adopt(&shared));
    assert!(w.state().is_none());
    assert_eq!(
        w.next_call(&mut shared, 0).unwrap().path,
        "/internal/state",
        "asks for the whole state itself"
    );
}

#[test]
fn a_failed_catch_up_is_tried_again_after_refresh() {
    let n = i64::try_from(RING).unwrap() + 2;
    let mut shared = ring_of(n);
    let mut w = Sync::new(&feed(20_000));
    w.adopt(&shared);
    w.next_call(&mut shared, 0).unwrap();
    w.call_not_sent(&mut shared, 0);
    assert!(w.next_call(&mut shared, 999).is_none());
    assert!(!call(&mut w, &mut shared, 1_000, 5, &status(Some(503))).1);
    assert!(w.next_call(&mut shared, 1_999).is_none());
    assert!(call(&mut w, &mut shared, 2_000, 6, &delta(1, n + 1)).1);
}
