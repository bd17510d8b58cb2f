//! Admission, settlement and leases over a fake of Envoy's shared data: every worker of an Envoy
//! shares one ledger, so "several workers" is several callers of the same shared data.

use super::float::Float;
use super::lease::{apply, Upkeep};
use super::*;
use crate::feed::limits::{Caps, LeaseGrant};
use crate::state_sync::testing::FakeShared;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW: u64 = 1_000_000;
const MINUTE_END: u64 = NOW + 30_000;

fn limits(caps: Caps) -> Limits {
    Limits { all: caps, ..Limits::default() }
}

fn ask<'a>(limits: &'a Limits, prompt: u64, completion: u64) -> Ask<'a> {
    Ask {
        subject: Subject::App(1),
        limits,
        model: "m",
        prompt_tokens: prompt,
        completion_tokens: completion,
        choices: 1,
    }
}

/// A control plane with one limit's ledger: grants up to the limit, like the real one.
struct Ledger {
    limit: u64,
    used: u64,
}

impl Ledger {
    fn answer(&mut self, asks: &[LeaseAsk]) -> Vec<LeaseGrant> {
        asks.iter()
            .map(|a| {
                self.used = self.used + a.charge - a.give_back.min(self.used);
                let granted = a.take.min(self.limit.saturating_sub(self.used));
                self.used += granted;
                let window = if a.key.kind.is_windowed() { 60 } else { 0 };
                let resets_at_ms = if a.key.kind.is_windowed() { MINUTE_END } else { 0 };
                LeaseGrant {
                    granted,
                    limit: Some(self.limit),
                    used: self.used,
                    window,
                    resets_at_ms,
                }
            })
            .collect()
    }
}

/// Admits like the glue (with a worker without a float): one lease call when asked for, then
/// decided without one.
fn admit_via(shared: &mut FakeShared, cp: &mut Ledger, ask: &Ask<'_>) -> Admission {
    admit_floating(shared, &mut Float::default(), cp, ask)
}

/// The same, for a worker with `float`.
fn admit_floating(
    shared: &mut FakeShared,
    float: &mut Float,
    cp: &mut Ledger,
    ask: &Ask<'_>,
) -> Admission {
    match admit(shared, float, ask, NOW, true) {
        Admission::Lease(asks) => {
            let grants = cp.answer(&asks);
            apply(shared, &asks, &grants, NOW);
            admit(shared, float, ask, NOW, false)
        }
        decided => decided,
    }
}

/// Settles a grant of a worker without a float.
fn settle_plain(
    shared: &mut FakeShared,
    grant: &Grant,
    used: Option<u64>,
    now_ms: u64,
) -> Vec<LimitKey> {
    settle(shared, &mut Float::default(), grant, used, false, now_ms)
}

#[test]
fn a_hundred_requests_against_a_limit_of_ten_admit_exactly_ten() {
    for kind_caps in [
        Caps { requests_per_minute: Some(10), ..Caps::default() },
        Caps { concurrent_requests: Some(10), ..Caps::default() },
    ] {
        let limits = limits(kind_caps);
        let mut shared = FakeShared::default();
        let mut cp = Ledger { limit: 10, used: 0 };
        let decided: Vec<_> =
            (0..100).map(|_| admit_via(&mut shared, &mut cp, &ask(&limits, 5, 5))).collect();
        let granted = decided.iter().filter(|d| matches!(d, Admission::Granted(_))).count();
        assert_eq!(granted, 10);
        let Some(Admission::Refused(refusal)) = decided.last() else {
            panic!("{:?}", decided.last())
        };
        assert_eq!((refusal.limit, refusal.remaining), (10, 0));
        assert_eq!(cp.used, 10, "never leased past the limit");
    }
}

#[test]
fn a_small_limit_is_leased_what_each_request_needs_and_a_large_one_a_share() {
    for (limit, leased) in [(63, 1), (64, 8), (1000, 125)] {
        let limits = limits(Caps { requests_per_minute: Some(limit), ..Caps::default() });
        let Admission::Lease(asks) = admit(
            &mut FakeShared::default(),
            &mut Float::default(),
            &ask(&limits, 1, 1),
            NOW,
            true,
        ) else {
            panic!()
        };
        assert_eq!(asks[0].take, leased, "limit {limit}");
    }
}

#[test]
fn concurrency_is_given_back_when_a_request_ends() {
    let limits = limits(Caps { concurrent_requests: Some(2), ..Caps::default() });
    let mut shared = FakeShared::default();
    let mut cp = Ledger { limit: 2, used: 0 };
    let Admission::Granted(first) = admit_via(&mut shared, &mut cp, &ask(&limits, 1, 1)) else {
        panic!()
    };
    let Admission::Granted(_) = admit_via(&mut shared, &mut cp, &ask(&limits, 1, 1)) else {
        panic!()
    };
    let Admission::Refused(refusal) = admit_via(&mut shared, &mut cp, &ask(&limits, 1, 1)) else {
        panic!()
    };
    assert_eq!(refusal.retry_after_secs, 1);
    settle_plain(&mut shared, &first, Some(2), NOW);
    assert!(matches!(admit_via(&mut shared, &mut cp, &ask(&limits, 1, 1)), Admission::Granted(_)));
}

#[test]
fn the_token_grant_is_reduced_to_what_remains_and_refused_only_when_the_prompt_does_not_fit() {
    let limits = limits(Caps { tokens_per_day: Some(100), ..Caps::default() });
    let mut shared = FakeShared::default();
    let mut cp = Ledger { limit: 100, used: 0 };
    let Admission::Granted(g) = admit_via(&mut shared, &mut cp, &ask(&limits, 10, 50)) else {
        panic!()
    };
    assert_eq!((g.tokens, g.completion_tokens()), (Some(60), Some(50)));
    let Admission::Granted(g2) = admit_via(&mut shared, &mut cp, &ask(&limits, 10, 50)) else {
        panic!()
    };
    assert_eq!(g2.completion_tokens(), Some(30), "reduced to the 40 that remain");
    let Admission::Refused(r) = admit_via(&mut shared, &mut cp, &ask(&limits, 10, 50)) else {
        panic!()
    };
    assert_eq!((r.key.kind, r.needed, r.remaining), (LimitKind::TokensPerDay, 11, 0));
    assert_eq!(r.retry_after_secs, 30);
    // The first used 15 of its 60: 45 come back.
    settle_plain(&mut shared, &g, Some(15), NOW);
    let Admission::Granted(g3) = admit_via(&mut shared, &mut cp, &ask(&limits, 10, 50)) else {
        panic!()
    };
    assert_eq!(g3.tokens, Some(45));
}

#[test]
fn an_overrun_is_charged_at_the_flush_of_the_float() {
    let limits = limits(Caps { tokens_per_minute: Some(1000), ..Caps::default() });
    let mut shared = FakeShared::default();
    let mut float = Float::default();
    let mut cp = Ledger { limit: 1000, used: 0 };
    let Admission::Granted(g) =
        admit_floating(&mut shared, &mut float, &mut cp, &ask(&limits, 10, 90))
    else {
        panic!()
    };
    // A lease of 1000/8 = 125 (more than the 100 wanted), of which the worker floats 25/16 = 1.
    assert_eq!(cp.used, 125);
    assert!(!float.is_empty());
    // The reply used 300: 200 past its grant, 1 of them from the float.
    assert!(
        settle(&mut shared, &mut float, &g, Some(300), false, NOW).is_empty(),
        "owed in the float until the flush"
    );
    float.flush(&mut shared, NOW);
    let overdrawn = float.take_overdrawn();
    assert_eq!(overdrawn.len(), 1);
    let mut upkeep = Upkeep::default();
    upkeep.note_overdrawn(overdrawn);
    let due = upkeep.due(&mut shared, NOW);
    assert_eq!((due.len(), due[0].charge, due[0].window, due[0].take), (1, 175, Some(60), 0));
    apply(&mut shared, &due, &cp.answer(&due), NOW);
    assert_eq!(cp.used, 300, "the overrun is charged");
    assert!(upkeep.due(&mut shared, NOW).is_empty(), "once");
    let Admission::Lease(asks) = admit(&mut shared, &mut float, &ask(&limits, 10, 90), NOW, true)
    else {
        panic!()
    };
    assert_eq!(asks[0].charge, 0);
    apply(&mut shared, &asks, &cp.answer(&asks), NOW);
    assert_eq!(cp.used, 300 + 125, "a new share leased");
    assert!(matches!(
        admit(&mut shared, &mut float, &ask(&limits, 10, 90), NOW, false),
        Admission::Granted(_)
    ));
}

#[test]
fn a_large_limit_is_spent_from_the_workers_float_and_the_float_goes_back_at_the_flush() {
    let limits = limits(Caps {
        requests_per_minute: Some(10_000),
        concurrent_requests: Some(10_000),
        ..Caps::default()
    });
    let mut shared = FakeShared::default();
    let mut float = Float::default();
    let mut cp = Ledger { limit: 10_000, used: 0 };
    let Admission::Granted(first) =
        admit_floating(&mut shared, &mut float, &mut cp, &ask(&limits, 1, 1))
    else {
        panic!()
    };
    /// Shared data that fails the test when touched.
    struct Untouchable;
    impl SharedData for Untouchable {
        fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            panic!("read {key}")
        }
        fn set(&mut self, key: &str, _: &[u8], _: Option<u32>) -> bool {
            panic!("wrote {key}")
        }
    }
    // A float of 64 requests' worth: the next 64 touch no shared data.
    for _ in 0..64 {
        let Admission::Granted(g) =
            admit(&mut Untouchable, &mut float, &ask(&limits, 1, 1), NOW, true)
        else {
            panic!()
        };
        settle(&mut Untouchable, &mut float, &g, Some(2), false, NOW);
    }
    settle(&mut Untouchable, &mut float, &first, Some(2), false, NOW);
    // Another worker sees the float as spent until it is flushed.
    let entry = ledger::read_entry(
        &shared,
        &LimitKey { subject: Subject::App(1), model: None, kind: LimitKind::ConcurrentRequests },
    )
    .unwrap();
    assert_eq!(entry.spent, 65, "the first request's slot and the float's 64");
    float.flush(&mut shared, NOW);
    let entry = ledger::read_entry(
        &shared,
        &LimitKey { subject: Subject::App(1), model: None, kind: LimitKind::ConcurrentRequests },
    )
    .unwrap();
    assert_eq!(entry.spent, 0, "every slot back");
    let rpm = ledger::read_entry(
        &shared,
        &LimitKey { subject: Subject::App(1), model: None, kind: LimitKind::RequestsPerMinute },
    )
    .unwrap();
    assert_eq!(rpm.spent, 65, "65 requests this minute: the float's unspent units came back");
}

#[test]
fn without_a_lease_and_without_the_control_plane_the_request_is_unavailable() {
    let limits = limits(Caps { requests_per_minute: Some(5), ..Caps::default() });
    let mut shared = FakeShared::default();
    assert_eq!(
        admit(&mut shared, &mut Float::default(), &ask(&limits, 1, 1), NOW, false),
        Admission::Unavailable
    );
}

#[test]
fn an_ended_window_asks_for_a_new_lease_and_a_changed_limit_too() {
    let limits = limits(Caps { requests_per_minute: Some(5), ..Caps::default() });
    let mut shared = FakeShared::default();
    let mut cp = Ledger { limit: 5, used: 0 };
    assert!(matches!(admit_via(&mut shared, &mut cp, &ask(&limits, 1, 1)), Admission::Granted(_)));
    assert!(matches!(
        admit(&mut shared, &mut Float::default(), &ask(&limits, 1, 1), MINUTE_END, true),
        Admission::Lease(_)
    ));
    let raised = super::tests::limits(Caps { requests_per_minute: Some(50), ..Caps::default() });
    assert!(matches!(
        admit(&mut shared, &mut Float::default(), &ask(&raised, 1, 1), NOW, true),
        Admission::Lease(_)
    ));
}

#[test]
fn per_model_limits_apply_to_their_model_only() {
    let mut limits = Limits::default();
    limits.models.insert("m".into(), Caps { requests_per_minute: Some(1), ..Caps::default() });
    let mut shared = FakeShared::default();
    let mut cp = Ledger { limit: 1, used: 0 };
    assert!(matches!(admit_via(&mut shared, &mut cp, &ask(&limits, 1, 1)), Admission::Granted(_)));
    assert!(matches!(admit_via(&mut shared, &mut cp, &ask(&limits, 1, 1)), Admission::Refused(_)));
    let other = Ask { model: "other", ..ask(&limits, 1, 1) };
    assert_eq!(
        admit(&mut shared, &mut Float::default(), &other, NOW, true),
        Admission::Granted(Grant { prompt_tokens: 1, ..Grant::default() })
    );
}

#[test]
fn idle_concurrency_slots_are_given_back_and_held_ones_renewed() {
    let limits = limits(Caps { concurrent_requests: Some(80), ..Caps::default() });
    let mut shared = FakeShared::default();
    let mut cp = Ledger { limit: 80, used: 0 };
    let mut upkeep = Upkeep::default();
    let Admission::Lease(asks) =
        admit(&mut shared, &mut Float::default(), &ask(&limits, 1, 1), NOW, true)
    else {
        panic!()
    };
    upkeep.note(&asks);
    apply(&mut shared, &asks, &cp.answer(&asks), NOW);
    let Admission::Granted(g) =
        admit(&mut shared, &mut Float::default(), &ask(&limits, 1, 1), NOW, false)
    else {
        panic!()
    };
    assert_eq!(cp.used, 10, "a share of 80/8");
    assert!(upkeep.due(&mut shared, NOW + 100).is_empty(), "nothing due yet");
    let due = upkeep.due(&mut shared, NOW + 2_500);
    assert_eq!((due.len(), due[0].give_back, due[0].take), (1, 9, 0), "the unused slots go back");
    cp.answer(&due);
    assert_eq!(cp.used, 1);
    let due = upkeep.due(&mut shared, NOW + 25_000);
    assert_eq!((due.len(), due[0].give_back), (1, 0), "the held slot is renewed");
    settle_plain(&mut shared, &g, None, NOW + 26_000);
    let due = upkeep.due(&mut shared, NOW + 30_000);
    assert_eq!(due[0].give_back, 1);
    assert!(upkeep.due(&mut shared, NOW + 31_000).is_empty());
}

#[test]
fn a_hostile_max_tokens_asks_for_no_more_than_the_limit() {
    let limits = limits(Caps { tokens_per_day: Some(1000), ..Caps::default() });
    let Admission::Lease(asks) = admit(
        &mut FakeShared::default(),
        &mut Float::default(),
        &ask(&limits, 10, u64::MAX),
        NOW,
        true,
    ) else {
        panic!()
    };
    assert_eq!(asks[0].take, 1000);
}

#[test]
fn a_failed_request_gives_its_request_unit_back() {
    let limits = limits(Caps { requests_per_minute: Some(1), ..Caps::default() });
    let mut shared = FakeShared::default();
    let mut cp = Ledger { limit: 1, used: 0 };
    let Admission::Granted(g) = admit_via(&mut shared, &mut cp, &ask(&limits, 1, 1)) else {
        panic!()
    };
    settle(&mut shared, &mut Float::default(), &g, Some(0), true, NOW);
    assert!(matches!(admit_via(&mut shared, &mut cp, &ask(&limits, 1, 1)), Admission::Granted(_)));
}

#[test]
fn a_limit_that_looked_used_up_a_while_ago_is_asked_about_again_before_refusing() {
    let limits = limits(Caps { requests_per_minute: Some(1), ..Caps::default() });
    let mut shared = FakeShared::default();
    let mut cp = Ledger { limit: 1, used: 0 };
    assert!(matches!(admit_via(&mut shared, &mut cp, &ask(&limits, 1, 1)), Admission::Granted(_)));
    assert!(matches!(
        admit(&mut shared, &mut Float::default(), &ask(&limits, 1, 1), NOW, true),
        Admission::Refused(_)
    ));
    let later = NOW + STALE_MS;
    assert!(matches!(
        admit(&mut shared, &mut Float::default(), &ask(&limits, 1, 1), later, true),
        Admission::Lease(_)
    ));
}

#[test]
fn every_choice_needs_one_token_and_a_grant_is_extended_for_a_larger_prompt() {
    let limits = limits(Caps { tokens_per_day: Some(100), ..Caps::default() });
    let mut shared = FakeShared::default();
    let mut cp = Ledger { limit: 100, used: 0 };
    let many = Ask { choices: 95, ..ask(&limits, 10, 950) };
    let Admission::Refused(r) = admit_via(&mut shared, &mut cp, &many) else { panic!() };
    assert_eq!(r.needed, 105, "10 of prompt and one token for each of 95 choices");
    let mut float = Float::default();
    let Admission::Granted(mut g) =
        admit_floating(&mut shared, &mut float, &mut cp, &ask(&limits, 10, 20))
    else {
        panic!()
    };
    assert_eq!(g.tokens, Some(30));
    assert!(extend(&mut shared, &mut float, &mut g, 50, NOW), "the prompt was 60, not 10");
    assert_eq!((g.tokens, g.holds[0].units), (Some(80), 80));
    assert!(!extend(&mut shared, &mut float, &mut g, 50, NOW), "not 50 more: only 20 remain");
    assert_eq!(g.tokens, Some(80), "nothing taken");
    settle(&mut shared, &mut float, &g, Some(80), false, NOW);
    float.flush(&mut shared, NOW);
    assert_eq!(ledger::read_entry(&shared, &g.holds[0].key).unwrap().available(), 20);
}
