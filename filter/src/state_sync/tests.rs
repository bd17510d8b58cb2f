//! Workers sharing one in-memory fake of Envoy's shared data (with its compare-and-swap rules):
//! the lease, adoption, long polls, retries.

use std::cell::Cell;

use super::testing::FakeShared;
use super::*;

fn feed(long_poll_ms: u64) -> StateFeed {
    serde_json::from_value(serde_json::json!({
        "cluster": "cp", "token": "0123456789abcdef", "refresh_ms": 1000, "timeout_ms": 2000,
        "long_poll_ms": long_poll_ms
    }))
    .unwrap()
}

/// States are strings here; a document that does not start with `state:` is malformed.
fn parse(document: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(document);
    text.strip_prefix("state:").map(str::to_owned).ok_or_else(|| format!("malformed: {text}"))
}

fn ok(etag: &str, document: &str) -> CallAnswer {
    CallAnswer { status: Some(200), etag: Some(etag.into()), body: document.as_bytes().to_vec() }
}

fn status(status: Option<u16>) -> CallAnswer {
    CallAnswer { status, etag: None, body: vec![] }
}

/// A worker that has pulled (and shared) `etag` at `now`.
fn pulled(shared: &mut FakeShared, now: u64, etag: &str) -> StateSync {
    let mut w = StateSync::new(&feed(20_000));
    w.begin_pull(shared, now).unwrap();
    w.pull_sent(1);
    assert!(w.pull_answered(shared, now, &ok(etag, "state:first"), parse).is_some());
    w
}

#[test]
fn the_lease_is_taken_once_and_the_others_adopt_what_it_pulled() {
    let mut shared = FakeShared::default();
    let (mut w1, mut w2) = (StateSync::new(&feed(20_000)), StateSync::new(&feed(20_000)));
    let call = w1.begin_pull(&mut shared, 0).unwrap();
    assert_eq!(call, CallRequest { path: "/internal/state".into(), if_none_match: None, timeout_ms: 2000 }, "short before the first state");
    assert_eq!(w2.begin_pull(&mut shared, 0), None);
    assert_eq!(w1.begin_pull(&mut shared, 0), None, "one pull in flight per worker");
    w1.pull_sent(7);
    assert!(w1.is_pull(7) && !w1.is_pull(8));
    assert_eq!(w2.adopt(&shared, parse), None, "nothing shared yet");
    assert_eq!(w1.pull_answered(&mut shared, 30, &ok("\"v1\"", "state:one"), parse), Some("one".into()));
    assert_eq!(w1.adopt(&shared, parse), None, "the puller holds what it shared");
    assert_eq!(w2.adopt(&shared, parse), Some("one".into()));
    assert_eq!(w2.adopt(&shared, parse), None, "adopted once");
    assert!(w2.has_state());
}

#[test]
fn an_absent_lease_is_created_before_it_is_taken() {
    let mut shared = FakeShared::default();
    let mut w = StateSync::new(&feed(20_000));
    assert!(w.begin_pull(&mut shared, 5).is_some());
    assert_eq!(shared.lease(), 5 + 2000 + LEASE_SLACK_MS);
    // A worker that read the lease before another took it loses the compare-and-swap.
    let (_, stale_cas) = shared.get(LEASE_KEY);
    assert!(shared.set(LEASE_KEY, b"1", stale_cas));
    assert!(!shared.set(LEASE_KEY, b"2", stale_cas));
}

#[test]
fn once_a_state_is_held_pulls_wait_for_a_change_and_the_next_goes_out_at_once() {
    let mut shared = FakeShared::default();
    let mut w1 = pulled(&mut shared, 0, "\"v1\"");
    let mut w2 = StateSync::new(&feed(20_000));
    w2.adopt(&shared, parse).unwrap();
    assert_eq!(shared.lease(), 0, "a 200 hands the lease back at once");
    let call = w2.begin_pull(&mut shared, 200).unwrap();
    assert_eq!(call.path, "/internal/state?wait_ms=20000");
    assert_eq!(call.if_none_match.as_deref(), Some("\"v1\""));
    assert_eq!(call.timeout_ms, 22_000);
    w2.pull_sent(3);
    assert_eq!(shared.lease(), 200 + 22_000 + LEASE_SLACK_MS, "the lease covers the whole call");
    assert_eq!(w1.begin_pull(&mut shared, 15_000), None, "held while the control plane waits");
    // Nothing changed for 20 s: a 304, and the next long poll goes out at once.
    w2.pull_answered(&mut shared, 20_200, &status(Some(304)), parse);
    assert_eq!(shared.lease(), 20_200);
    assert!(w1.begin_pull(&mut shared, 20_400).is_some());
    w1.pull_sent(4);
    // A change: the control plane answers at once; every worker has it on its next tick.
    assert_eq!(w1.pull_answered(&mut shared, 20_450, &ok("\"v2\"", "state:two"), parse), Some("two".into()));
    assert_eq!(shared.lease(), 20_450);
    assert_eq!(w2.adopt(&shared, parse), Some("two".into()));
}

#[test]
fn a_304_right_away_never_pulls_faster_than_refresh() {
    // A control plane that does not hold the call (no `wait_ms` support) answers 304 at once.
    let mut shared = FakeShared::default();
    let mut w = pulled(&mut shared, 0, "\"v1\"");
    w.begin_pull(&mut shared, 200).unwrap();
    w.pull_sent(2);
    w.pull_answered(&mut shared, 210, &status(Some(304)), parse);
    assert_eq!(shared.lease(), 200 + 1000);
    assert_eq!(w.begin_pull(&mut shared, 1_199), None);
    assert!(w.begin_pull(&mut shared, 1_200).is_some());
}

#[test]
fn without_long_polls_pulls_go_out_every_refresh() {
    let mut shared = FakeShared::default();
    let mut w = StateSync::new(&feed(0));
    w.begin_pull(&mut shared, 100).unwrap();
    w.pull_sent(1);
    w.pull_answered(&mut shared, 150, &ok("\"v1\"", "state:one"), parse).unwrap();
    assert_eq!(shared.lease(), 1_100);
    let call = w.begin_pull(&mut shared, 1_100).unwrap();
    assert_eq!((call.path.as_str(), call.if_none_match.as_deref(), call.timeout_ms), ("/internal/state", Some("\"v1\""), 2000));
}

#[test]
fn the_long_poll_query_joins_the_paths_own() {
    let mut f = feed(5_000);
    f.path = "/internal/state?tenant=a".into();
    let mut shared = FakeShared::default();
    let mut w = StateSync::new(&f);
    w.begin_pull(&mut shared, 0).unwrap();
    w.pull_sent(1);
    w.pull_answered(&mut shared, 0, &ok("\"v1\"", "state:one"), parse).unwrap();
    assert_eq!(w.begin_pull(&mut shared, 0).unwrap().path, "/internal/state?tenant=a&wait_ms=5000");
}

#[test]
fn without_an_etag_there_is_no_long_poll() {
    let mut shared = FakeShared::default();
    let mut w = StateSync::new(&feed(20_000));
    w.begin_pull(&mut shared, 0).unwrap();
    w.pull_sent(1);
    let answer = CallAnswer { status: Some(200), etag: None, body: b"state:one".to_vec() };
    w.pull_answered(&mut shared, 0, &answer, parse).unwrap();
    assert_eq!(shared.lease(), 1000);
    assert_eq!(w.begin_pull(&mut shared, 1000).unwrap(), CallRequest { path: "/internal/state".into(), if_none_match: None, timeout_ms: 2000 });
}

#[test]
fn a_failed_pull_keeps_the_state_and_retries_later() {
    let mut shared = FakeShared::default();
    let mut w = StateSync::new(&feed(20_000));
    w.begin_pull(&mut shared, 0).unwrap();
    w.pull_sent(1);
    assert_eq!(w.pull_answered(&mut shared, 40, &status(None), parse), None);
    assert_eq!(shared.lease(), 40 + FIRST_STATE_RETRY_MS, "soon, before the first state");

    let mut w = pulled(&mut shared, 1_000, "\"v1\"");
    for failure in [status(Some(503)), status(None), ok("\"v2\"", "garbage")] {
        let now = shared.lease().max(2_000);
        w.begin_pull(&mut shared, now).unwrap();
        w.pull_sent(2);
        assert_eq!(w.pull_answered(&mut shared, now + 10, &failure, parse), None);
        assert_eq!(shared.lease(), now + 10 + 1000, "refresh_ms later, once a state is held");
    }
    assert_eq!(shared.get(VERSION_KEY).0.as_deref(), Some(&b"\"v1\""[..]), "nothing malformed is shared");
}

#[test]
fn a_pull_that_cannot_be_dispatched_gives_the_lease_back() {
    let mut shared = FakeShared::default();
    let (mut w1, mut w2) = (StateSync::new(&feed(20_000)), StateSync::new(&feed(20_000)));
    w1.begin_pull(&mut shared, 0).unwrap();
    w1.pull_not_sent(&mut shared);
    assert!(w2.begin_pull(&mut shared, 0).is_some(), "another worker pulls at once");
    w1.pull_not_sent(&mut shared);
    assert_ne!(shared.lease(), 0, "only the holder's lease is given back");
}

#[test]
fn a_pull_never_answered_is_forgotten_when_its_lease_runs_out() {
    let mut shared = FakeShared::default();
    let mut w = StateSync::new(&feed(20_000));
    w.begin_pull(&mut shared, 0).unwrap();
    w.pull_sent(1);
    let expiry = shared.lease();
    assert_eq!(w.begin_pull(&mut shared, expiry - 1), None);
    assert!(w.begin_pull(&mut shared, expiry).is_some());
    w.pull_sent(2);
    assert!(!w.is_pull(1), "a late answer to the lost pull is not taken");
}

#[test]
fn a_late_answer_leaves_another_workers_lease_alone() {
    let mut shared = FakeShared::default();
    let (mut w1, mut w2) = (StateSync::new(&feed(20_000)), StateSync::new(&feed(20_000)));
    w1.begin_pull(&mut shared, 0).unwrap();
    w1.pull_sent(1);
    let expiry = shared.lease();
    w2.begin_pull(&mut shared, expiry).unwrap();
    let taken = shared.lease();
    w1.pull_answered(&mut shared, expiry + 1, &status(Some(503)), parse);
    assert_eq!(shared.lease(), taken);
}

#[test]
fn a_malformed_shared_state_keeps_the_last_good_one_and_is_read_once() {
    let mut shared = FakeShared::default();
    pulled(&mut shared, 0, "\"v1\"");
    let mut w = StateSync::new(&feed(20_000));
    assert_eq!(w.adopt(&shared, parse), Some("first".into()));
    shared.set(STATE_KEY, b"garbage", None);
    shared.set(VERSION_KEY, b"\"v2\"", None);
    let parses = Cell::new(0);
    let counting = |document: &[u8]| {
        parses.set(parses.get() + 1);
        parse(document)
    };
    assert_eq!(w.adopt(&shared, counting), None);
    assert_eq!(w.adopt(&shared, counting), None);
    assert_eq!(parses.get(), 1, "a version that failed is not parsed again");
    assert!(w.has_state());
    shared.set(STATE_KEY, b"state:three", None);
    shared.set(VERSION_KEY, b"\"v3\"", None);
    assert_eq!(w.adopt(&shared, parse), Some("three".into()));
}

#[test]
fn a_state_read_while_it_is_replaced_is_adopted_again_under_its_own_version() {
    let mut shared = FakeShared::default();
    pulled(&mut shared, 0, "\"v1\"");
    let mut w = StateSync::new(&feed(20_000));
    // The puller has written the next state but not yet its version.
    shared.set(STATE_KEY, b"state:two", None);
    assert_eq!(w.adopt(&shared, parse), Some("two".into()), "newer than its label, never older");
    shared.set(VERSION_KEY, b"\"v2\"", None);
    assert_eq!(w.adopt(&shared, parse), Some("two".into()));
    assert_eq!(w.adopt(&shared, parse), None);
}
