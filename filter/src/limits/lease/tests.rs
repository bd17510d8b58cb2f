use super::*;
use crate::feed::limits::Subject;
use crate::state_sync::testing::FakeShared;

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
    };
    let call = call(&feed(), "envoy-1", &[ask.clone()]);
    assert_eq!(call.path, "/gw/internal/limits/lease");
    let body: LeaseRequest = serde_json::from_slice(call.body.as_deref().unwrap()).unwrap();
    assert_eq!((body.instance.as_str(), body.items), ("envoy-1", vec![ask.clone()]));
    assert_eq!(call.headers(&feed())[0], (":method", "POST".to_owned()));
    let answer = CallAnswer { status: Some(200), body: br#"{"items":[]}"#.to_vec(), ..CallAnswer::default() };
    assert!(matches!(read_answer(&answer, &[ask.clone()]), Err(LeaseError::Body(_))));
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
