//! Single flight, the negative cache, the cap and the deadline, on a fake clock; the lookup's
//! call.

use super::*;
use crate::feed::{hash_key, key_digest};
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn feed(path: &str, per_second: u32, negative_ttl_ms: u64) -> StateFeed {
    serde_json::from_value(serde_json::json!({
        "cluster": "cp", "token": "0123456789abcdef", "path": path, "timeout_ms": 2000,
        "lookups_per_second": per_second, "lookup_negative_ttl_ms": negative_ttl_ms
    }))
    .unwrap()
}

fn lookups(per_second: u32) -> Lookups<u32> {
    Lookups::new(&feed("/internal/state", per_second, 2000))
}

fn key(name: &str) -> LookupKey {
    LookupKey::Key(key_digest(name))
}

#[test]
fn one_lookup_per_credential_and_everyone_waits_for_its_answer() {
    let mut l = lookups(20);
    assert_eq!(l.start(key("a"), 1, 0), Start::Send);
    l.sent(key("a"), 70);
    assert_eq!(l.start(key("a"), 2, 5), Start::Joined);
    assert_eq!(l.start(key("a"), 3, 6), Start::Joined);
    assert_eq!(
        l.start(LookupKey::User(7), 4, 7),
        Start::Send,
        "another credential has its own flight"
    );
    l.sent(LookupKey::User(7), 71);
    assert_eq!(l.in_flight(), 2);
    assert_eq!(l.answered(70), Some((key("a"), vec![1, 2, 3])));
    assert_eq!(l.answered(70), None, "answered once");
    assert_eq!(l.answered(99), None, "not a lookup");
    assert_eq!(l.answered(71), Some((LookupKey::User(7), vec![4])));
    assert_eq!(l.start(key("a"), 5, 10), Start::Send, "a found credential may be looked up again");
}

#[test]
fn an_absent_credential_is_refused_without_a_lookup_until_its_ttl() {
    let mut l = lookups(20);
    assert_eq!(l.start(key("gone"), 1, 1_000), Start::Send);
    l.sent(key("gone"), 1);
    l.answered(1);
    l.absent(key("gone"), 1_000);
    assert_eq!(l.start(key("gone"), 2, 2_999), Start::Refuse(2, Some(LookupResult::Cached)));
    assert_eq!(l.start(key("gone"), 3, 3_000), Start::Send);

    let mut off = Lookups::<u32>::new(&feed("/internal/state", 20, 0));
    off.absent(key("gone"), 0);
    assert_eq!(off.start(key("gone"), 1, 1), Start::Send, "ttl 0: nothing is remembered");
}

#[test]
fn the_negative_cache_is_bounded() {
    let mut l = lookups(20);
    for i in 0..MAX_NEGATIVE {
        l.absent(LookupKey::User(i as i64), 0);
    }
    l.absent(LookupKey::User(-1), 0);
    assert_eq!(l.negative.len(), MAX_NEGATIVE, "full: no more are kept");
    assert_eq!(l.start(LookupKey::User(-1), 1, 1), Start::Send);
    l.not_sent(LookupKey::User(-1));
    l.absent(LookupKey::User(-2), 5_000);
    assert_eq!(l.negative.len(), 1, "expired entries make room");
    assert_eq!(
        l.start(LookupKey::User(-2), 1, 5_001),
        Start::Refuse(1, Some(LookupResult::Cached))
    );
}

#[test]
fn the_cap_refuses_at_once_and_resets_each_second() {
    let mut l = lookups(3);
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        assert_eq!(l.start(key(name), i as u32, 1_100), Start::Send);
    }
    assert_eq!(l.start(key("a"), 9, 1_200), Start::Joined, "joining costs nothing");
    assert_eq!(l.start(key("d"), 10, 1_999), Start::Refuse(10, Some(LookupResult::Capped)));
    assert_eq!(l.start(key("d"), 11, 2_000), Start::Send);
    assert_eq!(lookups(0).start(key("a"), 1, 0), Start::Refuse(1, None), "0: lookups are off");
}

#[test]
fn a_flood_of_random_keys_reaches_the_control_plane_at_the_cap() {
    let mut l = lookups(20);
    let mut sent = 0;
    for i in 0..10_000u32 {
        let now = u64::from(i); // 10,000 requests over 10 seconds
        if l.start(key(&format!("sk-random-{i}")), i, now) == Start::Send {
            sent += 1;
            l.sent(key(&format!("sk-random-{i}")), i);
            l.answered(i);
            l.absent(key(&format!("sk-random-{i}")), now);
        }
    }
    assert_eq!(sent, 200);
}

#[test]
fn an_undispatched_or_lost_lookup_hands_its_waiters_back() {
    let mut l = lookups(20);
    assert_eq!(l.start(key("a"), 1, 0), Start::Send);
    assert_eq!(l.not_sent(key("a")), vec![1]);
    assert_eq!(l.in_flight(), 0);

    assert_eq!(l.start(key("b"), 2, 100), Start::Send);
    l.sent(key("b"), 5);
    assert_eq!(l.start(key("b"), 3, 200), Start::Joined);
    assert_eq!(l.not_sent(key("b")), Vec::<u32>::new(), "already sent");
    assert_eq!(l.expired(100 + 2_000 + 999), vec![]);
    assert_eq!(l.expired(100 + 2_000 + 1_000), vec![(key("b"), vec![2, 3])]);
    assert_eq!(l.answered(5), None, "a late answer finds nobody");
}

#[test]
fn the_call_goes_next_to_the_state_path() {
    let hash = key_digest("sk-live-a");
    let call = LookupKey::Key(hash).call(&feed("/internal/state", 20, 0));
    assert_eq!(call.path, format!("/internal/lookup?keyHash={}", hash_key("sk-live-a")));
    assert_eq!((call.if_none_match, call.timeout_ms), (None, 2000));
    let call = LookupKey::User(42).call(&feed("/cp/internal/state?tenant=a", 20, 0));
    assert_eq!(call.path, "/cp/internal/lookup?tenant=a&userId=42");
    assert_eq!(LookupKey::User(-3).call(&feed("/p", 20, 0)).path, "/internal/lookup?userId=-3");
}

#[test]
fn only_a_200_with_a_feed_is_an_answer() {
    let ok =
        CallAnswer { status: Some(200), body: br#"{"keys":[]}"#.to_vec(), ..CallAnswer::default() };
    assert_eq!(read_answer(&ok), Ok(Feed::default()));
    for (status, body) in [(Some(200), &b"{"[..]), (Some(401), b"{\"keys\":[]}"), (None, b"")] {
        assert!(
            read_answer(&CallAnswer { status, body: body.to_vec(), ..CallAnswer::default() })
                .is_err(),
            "{status:?}"
        );
    }
    assert_eq!(LookupResult::Absent.label(), "absent");
}

#[test]
fn a_lookup_whose_dispatcher_is_gone_is_sent_again_for_the_others() {
    let mut l = lookups(1);
    assert_eq!(l.start(key("a"), 1, 0), Start::Send);
    l.sent(key("a"), 40);
    assert_eq!(l.start(key("a"), 2, 10), Start::Joined);
    l.orphaned(40, |w| *w == 1);
    assert_eq!(l.answered(40), None, "its answer is lost anyway");
    assert_eq!(l.to_resend(500), vec![key("a")]);
    assert_eq!(l.to_resend(500), vec![], "once");
    assert_eq!(l.start(key("a"), 3, 600), Start::Joined, "still in flight, at no cost");
    l.sent(key("a"), 41);
    assert_eq!(l.expired(500 + 2_999), vec![], "a fresh deadline");
    assert_eq!(l.answered(41), Some((key("a"), vec![2, 3])));

    assert_eq!(l.start(key("b"), 4, 1_000), Start::Send);
    l.sent(key("b"), 42);
    l.orphaned(42, |w| *w == 4);
    assert_eq!((l.in_flight(), l.to_resend(1_000)), (0, vec![]), "nobody else waited: dropped");
    l.orphaned(99, |_| true);
}

#[test]
fn lookups_that_found_their_credential_do_not_count_against_the_cap() {
    let mut l = lookups(2);
    for i in 0..50u32 {
        let name = format!("sk-live-new-{i}");
        assert_eq!(l.start(key(&name), i, 1_000 + u64::from(i)), Start::Send, "key {i}");
        l.sent(key(&name), i);
        l.answered(i);
        l.give_back(1_000 + u64::from(i));
    }
    // Two lookups of credentials that do not exist use the second's budget up.
    for name in ["x", "y"] {
        assert_eq!(l.start(key(name), 100, 1_500), Start::Send);
        l.not_sent(key(name));
    }
    assert_eq!(l.start(key("z"), 101, 1_600), Start::Refuse(101, Some(LookupResult::Capped)));
    // A give-back for an earlier second does not lift this one's cap.
    l.give_back(500);
    assert_eq!(l.start(key("z"), 102, 1_700), Start::Refuse(102, Some(LookupResult::Capped)));
}
