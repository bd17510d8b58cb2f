use super::ledger;
use super::*;
use crate::feed::limits::{LimitKind, Subject};
use crate::state_sync::testing::FakeShared;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn feed() -> StateFeed {
    serde_json::from_str(r#"{"cluster":"cp","token":"t","path":"/gw/internal/state?x=1"}"#).unwrap()
}

#[test]
fn the_call_posts_the_asks_under_the_state_paths_prefix() {
    let ask = LeaseAsk {
        key: LimitKey { subject: Subject::App(2), model: None, kind: LimitKind::TokensPerDay },
        window: None,
        charge: 0,
        give_back: 0,
        take: 9,
        held: None,
    };
    let call = call(&feed(), "envoy-1", std::slice::from_ref(&ask));
    assert_eq!(call.path, "/gw/internal/limits/lease");
    let body: LeaseRequest = serde_json::from_slice(call.body.as_deref().unwrap()).unwrap();
    assert_eq!((body.instance.as_str(), body.items), ("envoy-1", vec![ask.clone()]));
    assert_eq!(call.headers(&feed())[0], (":method", "POST".to_owned()));
    let answer = CallAnswer {
        status: Some(200),
        body: br#"{"items":[]}"#.to_vec(),
        ..CallAnswer::default()
    };
    assert!(matches!(read_answer(&answer, std::slice::from_ref(&ask)), Err(LeaseError::Body(_))));
    let answer = CallAnswer { status: Some(500), ..CallAnswer::default() };
    assert_eq!(read_answer(&answer, &[ask]), Err(LeaseError::Status(Some(500))));
}

#[test]
fn every_worker_reads_the_instance_the_first_one_named() {
    let mut shared = FakeShared::default();
    let first = instance(&mut shared, 0xabc);
    assert_eq!(first, "envoy-abc");
    assert_eq!(instance(&mut shared, 0xdef), first);
}

fn day_key() -> LimitKey {
    LimitKey { subject: Subject::App(2), model: None, kind: LimitKind::TokensPerDay }
}

fn ask_of(take: u64) -> LeaseAsk {
    LeaseAsk { key: day_key(), window: None, charge: 0, give_back: 0, take, held: None }
}

fn grant(granted: u64, limit: Option<u64>, used: u64, window: i64) -> LeaseGrant {
    LeaseGrant { granted, limit, used, window, resets_at_ms: 10_000_000 }
}

#[test]
fn a_lowered_limit_holds_at_once_and_a_grant_while_unlimited_is_not_kept() {
    let mut shared = FakeShared::default();
    apply(&mut shared, &[ask_of(1000)], &[grant(1000, Some(8000), 1000, 60)], 0);
    ledger::update_entry(&mut shared, &day_key(), |e| e.map(|e| Entry { spent: 100, ..e }));
    // The admin lowered the limit to 300: this Envoy may hold no more than that.
    apply(&mut shared, &[ask_of(0)], &[grant(0, Some(300), 1000, 60)], 1);
    let e = ledger::read_entry(&shared, &day_key()).unwrap();
    assert_eq!((e.leased, e.available()), (300, 200));
    // Unset: everything asked is granted, and none of it kept as a lease.
    apply(&mut shared, &[ask_of(5000)], &[grant(5000, None, 0, 60)], 2);
    let e = ledger::read_entry(&shared, &day_key()).unwrap();
    assert_eq!((e.limit, e.leased), (None, 300));
}

#[test]
fn a_late_answer_for_an_older_window_is_dropped() {
    let mut shared = FakeShared::default();
    apply(&mut shared, &[ask_of(10)], &[grant(10, Some(100), 10, 120)], 0);
    apply(&mut shared, &[ask_of(10)], &[grant(10, Some(100), 10, 60)], 1);
    let e = ledger::read_entry(&shared, &day_key()).unwrap();
    assert_eq!((e.window, e.leased), (120, 10));
}

#[test]
fn idle_units_go_back_and_a_failed_upkeep_call_is_undone() {
    let mut shared = FakeShared::default();
    let mut upkeep = Upkeep::default();
    upkeep.note(&[ask_of(50)]);
    apply(&mut shared, &[ask_of(50)], &[grant(50, Some(100), 50, 60)], 0);
    ledger::update_entry(&mut shared, &day_key(), |e| {
        e.map(|e| Entry { spent: 20, touched_ms: 0, ..e })
    });
    assert!(upkeep.due(&mut shared, 1_000).is_empty(), "not idle yet");
    let due = upkeep.due(&mut shared, 3_000);
    assert_eq!((due.len(), due[0].give_back, due[0].window), (1, 30, Some(60)));
    assert_eq!(ledger::read_entry(&shared, &day_key()).unwrap().leased, 20, "taken off at once");
    undo(&mut shared, &due);
    assert_eq!(
        ledger::read_entry(&shared, &day_key()).unwrap().leased,
        50,
        "back when the call failed"
    );
}
