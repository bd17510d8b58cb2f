//! The throttle's policy with time passed in: free failures, doubling waits, the cap, resets,
//! refunds, forgetting and the bound on memory.

use super::*;

const SEC: Duration = Duration::from_secs(1);

fn ip(last: u8) -> Option<IpAddr> {
    Some(IpAddr::from([192, 0, 2, last]))
}

/// Fails `n` attempts on `account` from `address` at `now` (each must be admitted).
fn fail(throttle: &LoginThrottle, account: &str, address: Option<IpAddr>, now: Instant, n: u32) {
    for i in 0..n {
        throttle
            .admit(account, address, now)
            .unwrap_or_else(|t| panic!("attempt {i} refused: {t:?}"));
    }
}

#[test]
fn five_failures_are_free_then_the_wait_doubles_up_to_the_cap() {
    let policy = Policy::default();
    let waits: Vec<u64> = (0..=16).map(|n| policy.delay(n).as_secs()).collect();
    assert_eq!(waits, [0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]);
    assert_eq!(policy.delay(u32::MAX), Duration::from_secs(900), "no overflow");
}

#[test]
fn an_account_is_throttled_from_any_address_and_released_after_its_wait() {
    let throttle = LoginThrottle::default();
    let t0 = Instant::now();
    for i in 0..5 {
        fail(&throttle, "victim@example.com", ip(i), t0, 1);
    }
    assert_eq!(throttle.admit("victim@example.com", ip(99), t0), Err(Throttled::Account(SEC)));
    assert_eq!(
        throttle.admit("victim@example.com", ip(99), t0 + SEC / 2),
        Err(Throttled::Account(SEC / 2))
    );
    fail(&throttle, "victim@example.com", ip(99), t0 + SEC, 1);
    assert_eq!(
        throttle.admit("victim@example.com", ip(98), t0 + SEC),
        Err(Throttled::Account(2 * SEC)),
        "the wait doubled"
    );
    assert!(
        throttle.admit("other@example.com", ip(98), t0 + SEC).is_ok(),
        "other accounts are not affected"
    );
}

#[test]
fn an_address_is_throttled_for_every_account() {
    let throttle = LoginThrottle::default();
    let t0 = Instant::now();
    for i in 0..5 {
        fail(&throttle, &format!("user{i}@example.com"), ip(1), t0, 1);
    }
    assert_eq!(throttle.admit("fresh@example.com", ip(1), t0), Err(Throttled::Address(SEC)));
    assert!(throttle.admit("fresh@example.com", ip(2), t0).is_ok());
    assert!(
        throttle.admit("fresh2@example.com", None, t0).is_ok(),
        "an unknown address is throttled by account only"
    );
}

#[test]
fn a_success_resets_the_account_and_refunds_the_address() {
    let throttle = LoginThrottle::default();
    let t0 = Instant::now();
    fail(&throttle, "a@example.com", ip(1), t0, 5);
    throttle.succeeded("a@example.com", ip(1));
    fail(&throttle, "a@example.com", ip(2), t0, 5);
    // ip(1): 5 charged, one given back by the success: one more is free.
    fail(&throttle, "b@example.com", ip(1), t0, 1);
    assert!(matches!(throttle.admit("c@example.com", ip(1), t0), Err(Throttled::Address(_))));
}

#[test]
fn an_attempt_never_checked_costs_nothing() {
    let throttle = LoginThrottle::default();
    let t0 = Instant::now();
    for _ in 0..20 {
        fail(&throttle, "a@example.com", ip(1), t0, 1);
        throttle.not_checked("a@example.com", ip(1));
    }
    assert_eq!(throttle.entries(), (0, 0));
}

#[test]
fn idle_entries_are_forgotten() {
    let throttle = LoginThrottle::default();
    let t0 = Instant::now();
    fail(&throttle, "a@example.com", ip(1), t0, 5);
    let later = t0 + Duration::from_secs(3600);
    fail(&throttle, "a@example.com", ip(1), later, 5);
    assert!(
        throttle.admit("a@example.com", ip(1), later).is_err(),
        "counted afresh from the forgotten entry"
    );
}

#[test]
fn the_tables_stay_bounded_dropping_the_oldest() {
    let throttle = LoginThrottle::new(Policy { max_entries: 100, ..Policy::default() });
    let t0 = Instant::now();
    fail(&throttle, "victim@example.com", None, t0, 5);
    for i in 0..1000u32 {
        let at = t0 + Duration::from_millis(u64::from(i) + 1);
        fail(
            &throttle,
            &format!("spray{i}@example.com"),
            Some(IpAddr::from(i.to_be_bytes())),
            at,
            1,
        );
        let (accounts, addresses) = throttle.entries();
        assert!(accounts <= 100 && addresses <= 100, "{accounts} {addresses}");
    }
    assert!(
        throttle.admit("spray999@example.com", None, t0 + SEC * 2).is_ok(),
        "the newest is kept"
    );
    let (accounts, _) = throttle.entries();
    assert!(accounts >= 90, "only a tenth is dropped at a time: {accounts}");
}
