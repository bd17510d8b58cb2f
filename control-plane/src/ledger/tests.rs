//! The ledger against a real database file: exact grants under concurrent calls, charges past
//! the limit, give-backs, concurrency slots that expire and are renewed, limits read from the
//! subject, and restarts.

use vllm_gateway_filter::feed::limits::{
    LeaseAsk, LeaseGrant, LimitKey, LimitKind, Subject, CONCURRENCY_LEASE_TTL_SECS,
};
use vllm_gateway_filter::feed::Limits;

use super::lease::lease;
use super::*;

/// 2026-01-31T10:00:30Z.
const NOW: i64 = 1_769_853_630;

async fn db_at(path: &std::path::Path) -> Db {
    crate::db::open(&path.display().to_string()).await.unwrap()
}

async fn app_with(db: &Db, limits: &str) -> i64 {
    sqlx::query_scalar("INSERT INTO apps (org_name, limits, created_at, updated_at) VALUES ('o', ?, 0, 0) RETURNING id")
        .bind(limits)
        .fetch_one(db)
        .await
        .unwrap()
}

fn ask(subject: Subject, model: Option<&str>, kind: LimitKind) -> LeaseAsk {
    let key = LimitKey { subject, model: model.map(str::to_owned), kind };
    LeaseAsk { key, window: None, charge: 0, give_back: 0, take: 0, held: None }
}

fn take(mut a: LeaseAsk, n: u64) -> LeaseAsk {
    a.take = n;
    a
}

async fn one(db: &Db, instance: &str, a: LeaseAsk, now: i64) -> LeaseGrant {
    lease(db, instance, &[a], now).await.unwrap()[0]
}

#[tokio::test]
async fn takes_are_granted_up_to_the_limit_and_charges_pass_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_at(&dir.path().join("l.db")).await;
    let id = app_with(&db, r#"{"tokensPerMinute":100}"#).await;
    let tpm = ask(Subject::App(id), None, LimitKind::TokensPerMinute);
    let first = one(&db, "e1", take(tpm.clone(), 70), NOW).await;
    assert_eq!((first.granted, first.limit, first.used), (70, Some(100), 70));
    assert_eq!((first.window, first.resets_at_ms), (NOW - 30, (NOW + 30) as u64 * 1000));
    let second = one(&db, "e2", take(tpm.clone(), 70), NOW).await;
    assert_eq!((second.granted, second.used), (30, 100), "only what remains");
    let charged = one(&db, "e1", LeaseAsk { charge: 15, ..tpm.clone() }, NOW).await;
    assert_eq!((charged.granted, charged.used), (0, 115), "a charge passes the limit");
    let refused = one(&db, "e1", take(tpm.clone(), 1), NOW).await;
    assert_eq!((refused.granted, refused.used), (0, 115));
    let next_minute = one(&db, "e1", take(tpm, 5), NOW + 30).await;
    assert_eq!(
        (next_minute.granted, next_minute.used, next_minute.window),
        (5, 5, NOW + 30),
        "a new window"
    );
}

#[tokio::test]
async fn a_give_back_frees_its_own_window_never_below_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_at(&dir.path().join("l.db")).await;
    let id = app_with(&db, r#"{"tokensPerDay":1000,"timeZone":"Asia/Shanghai"}"#).await;
    let tpd = ask(Subject::App(id), None, LimitKind::TokensPerDay);
    let granted = one(&db, "e1", take(tpd.clone(), 1000), NOW).await;
    assert_eq!(granted.granted, 1000);
    let back = one(&db, "e1", LeaseAsk { give_back: 400, take: 100, ..tpd.clone() }, NOW).await;
    assert_eq!((back.granted, back.used), (100, 700), "given back first, then taken");
    // The day ends at 16:00 UTC in Shanghai; a give-back for yesterday's window after that.
    let tomorrow = NOW + 8 * 3600;
    let late = LeaseAsk { window: Some(granted.window), give_back: 5000, take: 10, ..tpd.clone() };
    let next = one(&db, "e1", late, tomorrow).await;
    assert_eq!(
        (next.used, next.window),
        (10, granted.resets_at_ms as i64 / 1000),
        "today's window is untouched"
    );
    let used: i64 = sqlx::query_scalar("SELECT used FROM limit_ledger WHERE window_start = ?")
        .bind(granted.window)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(used, 0, "yesterday's count floors at 0");
}

#[tokio::test]
async fn concurrency_slots_are_held_per_instance_expire_and_are_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_at(&dir.path().join("l.db")).await;
    let id = app_with(&db, r#"{"models":{"m":{"concurrentRequests":3}}}"#).await;
    let slots = ask(Subject::App(id), Some("m"), LimitKind::ConcurrentRequests);
    let a = one(&db, "e1", take(slots.clone(), 2), NOW).await;
    assert_eq!((a.granted, a.used, a.window, a.resets_at_ms), (2, 2, 0, 0));
    let b = one(&db, "e2", take(slots.clone(), 2), NOW).await;
    assert_eq!((b.granted, b.used), (1, 3));
    // e1 renews (take 0) just before its slots expire; e2 does not.
    let renew_at = NOW + CONCURRENCY_LEASE_TTL_SECS - 1;
    assert_eq!(one(&db, "e1", slots.clone(), renew_at).await.used, 3);
    let later = NOW + CONCURRENCY_LEASE_TTL_SECS + 5;
    let c = one(&db, "e3", take(slots.clone(), 5), later).await;
    assert_eq!((c.granted, c.used), (1, 3), "e2's slot expired, e1's renewed ones still count");
    let back = one(&db, "e1", LeaseAsk { give_back: 2, ..slots.clone() }, later).await;
    assert_eq!(back.used, 1);
    // A renewal says what the instance holds: a grant its Envoy never received is dropped.
    let lost = one(&db, "e3", take(slots.clone(), 1), later).await;
    assert_eq!((lost.granted, lost.used), (1, 2));
    let renewed = one(&db, "e3", LeaseAsk { held: Some(1), ..slots.clone() }, later).await;
    assert_eq!(renewed.used, 1, "e3 holds 1, not 2");
    let unscoped =
        one(&db, "e1", take(ask(Subject::App(id), None, LimitKind::ConcurrentRequests), 9), later)
            .await;
    assert_eq!((unscoped.granted, unscoped.limit), (9, None), "no subject-wide concurrency limit");
}

#[tokio::test]
async fn without_the_limit_everything_is_granted_and_nothing_counted() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_at(&dir.path().join("l.db")).await;
    let id = app_with(&db, r#"{"tokensPerMinute":10}"#).await;
    let grants = lease(
        &db,
        "e1",
        &[
            take(ask(Subject::App(id), None, LimitKind::TokensPerDay), 500),
            take(ask(Subject::User(99), None, LimitKind::RequestsPerMinute), 7),
            take(ask(Subject::App(id), Some("m"), LimitKind::TokensPerMinute), 50),
        ],
        NOW,
    )
    .await
    .unwrap();
    assert!(grants.iter().all(|g| g.limit.is_none() && g.used == 0));
    assert_eq!(grants.iter().map(|g| g.granted).collect::<Vec<_>>(), [500, 7, 50]);
    let rows: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM limit_ledger").fetch_one(&db).await.unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_from_many_envoys_grant_exactly_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_at(&dir.path().join("l.db")).await;
    let id = app_with(&db, r#"{"requestsPerMinute":1000,"tokensPerDay":777}"#).await;
    let calls = (0..40).map(|i| {
        let db = db.clone();
        tokio::spawn(async move {
            let asks = [
                take(ask(Subject::App(id), None, LimitKind::RequestsPerMinute), 37),
                take(ask(Subject::App(id), None, LimitKind::TokensPerDay), 29),
            ];
            lease(&db, &format!("envoy-{i}"), &asks, NOW).await.unwrap()
        })
    });
    let mut totals = [0, 0];
    for call in calls.collect::<Vec<_>>() {
        let grants = call.await.unwrap();
        totals[0] += grants[0].granted;
        totals[1] += grants[1].granted;
    }
    assert_eq!(totals, [1000, 777], "40 × 37 and 40 × 29 asked; exactly the limits granted");
}

#[tokio::test]
async fn the_ledger_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let db = db_at(&path).await;
    let id = app_with(&db, r#"{"tokensPerMonth":100}"#).await;
    let tpm = ask(Subject::App(id), None, LimitKind::TokensPerMonth);
    assert_eq!(one(&db, "e1", take(tpm.clone(), 60), NOW).await.granted, 60);
    db.close().await;
    let db = db_at(&path).await;
    let again = one(&db, "e1", take(tpm, 60), NOW + 3600).await;
    assert_eq!((again.granted, again.used), (40, 100));
}

#[tokio::test]
async fn pruning_deletes_long_ended_windows_and_expired_holdings_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_at(&dir.path().join("l.db")).await;
    let id = app_with(&db, r#"{"tokensPerMinute":100,"concurrentRequests":2}"#).await;
    let tpm = ask(Subject::App(id), None, LimitKind::TokensPerMinute);
    one(&db, "e1", take(tpm.clone(), 1), NOW - KEEP_ENDED_WINDOWS_SECS - 120).await;
    one(&db, "e1", take(tpm, 1), NOW).await;
    one(&db, "e1", take(ask(Subject::App(id), None, LimitKind::ConcurrentRequests), 1), NOW - 3600)
        .await;
    one(&db, "e2", take(ask(Subject::App(id), None, LimitKind::ConcurrentRequests), 1), NOW).await;
    assert_eq!(prune(&db, NOW).await.unwrap(), 2);
    let left: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM limit_ledger), (SELECT COUNT(*) FROM limit_holdings)",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(left, (1, 1));
}

#[test]
fn a_model_set_counts_in_its_own_zone_else_the_subject_wide_one() {
    let limits: Limits = serde_json::from_str(
        r#"{"tokensPerDay":1,"timeZone":"Asia/Shanghai","models":{"a":{"tokensPerDay":2},"b":{"tokensPerDay":3,"timeZone":"UTC"}}}"#,
    )
    .unwrap();
    let key = |model: Option<&str>| LimitKey {
        subject: Subject::User(1),
        model: model.map(str::to_owned),
        kind: LimitKind::TokensPerDay,
    };
    assert_eq!(limit_of(Some(&limits), &key(None)), (Some(1), chrono_tz::Tz::Asia__Shanghai));
    assert_eq!(limit_of(Some(&limits), &key(Some("a"))), (Some(2), chrono_tz::Tz::Asia__Shanghai));
    assert_eq!(limit_of(Some(&limits), &key(Some("b"))), (Some(3), chrono_tz::Tz::UTC));
    assert_eq!(limit_of(Some(&limits), &key(Some("c"))).0, None);
    assert_eq!(limit_of(None, &key(None)).0, None);
}
