//! The replies' shape and the policy's rules, for every refusal.

use super::*;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// One of every variant (a limit refusal and a cut-off).
fn every_error() -> Vec<GatewayError> {
    let cut = LimitError { cut_off: true, ..limit_error(LimitKind::TokensPerMinute) };
    vec![
        GatewayError::MissingCredential,
        GatewayError::InvalidCredential,
        GatewayError::ExpiredCredential,
        GatewayError::ExpiredToken,
        GatewayError::RevokedToken,
        GatewayError::UserDisabled,
        GatewayError::AppDisabled,
        GatewayError::NotReady,
        GatewayError::BadJson("eof".into()),
        GatewayError::MissingModel,
        GatewayError::UnknownModel("gpt-\"x\"".into()),
        GatewayError::ModelNotAllowed("m".into()),
        GatewayError::BodyTooLarge(10),
        GatewayError::Busy,
        GatewayError::UnknownPath("/v1/nope".into()),
        GatewayError::InvalidType { param: "stream", message: "m".into() },
        GatewayError::Unsupported { param: "background", message: "m".into() },
        GatewayError::Limited(Box::new(limit_error(LimitKind::TokensPerDay))),
        GatewayError::Limited(Box::new(cut)),
        GatewayError::LimitsUnavailable,
    ]
}

#[test]
fn bodies_are_openai_shaped() {
    let all = every_error();
    for e in all {
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        let obj = v["error"].as_object().unwrap();
        assert_eq!(obj.len(), 4, "{v}");
        assert!(obj["message"].is_string());
        assert_eq!(obj["type"], e.kind());
        assert_eq!(obj["code"], e.code());
        assert!(obj.contains_key("param"));
        assert!((400..600).contains(&e.status()));
    }
}

fn limit_error(kind: LimitKind) -> LimitError {
    LimitError {
        kind,
        subject: Subject::App(3),
        model: None,
        limit: 10,
        remaining: 0,
        needed: 1,
        retry_after_secs: 6,
        cut_off: false,
    }
}

#[test]
fn limits_answer_as_openai_does() {
    let rate = GatewayError::Limited(Box::new(limit_error(LimitKind::RequestsPerMinute)));
    let v: serde_json::Value = serde_json::from_slice(&rate.body()).unwrap();
    assert_eq!((rate.status(), rate.retry_after_secs()), (429, Some(6)));
    assert_eq!(
        (&v["error"]["type"], &v["error"]["code"]),
        (&"requests".into(), &"rate_limit_exceeded".into())
    );
    assert!(v["error"]["message"].as_str().unwrap().contains("requests per minute"), "{v}");
    let budget = GatewayError::Limited(Box::new(limit_error(LimitKind::TokensPerMonth)));
    let v: serde_json::Value = serde_json::from_slice(&budget.body()).unwrap();
    assert_eq!(
        (&v["error"]["type"], &v["error"]["code"]),
        (&"insufficient_quota".into(), &"insufficient_quota".into())
    );
    assert!(v["error"]["message"].as_str().unwrap().contains("tokens per month budget"), "{v}");
    let tokens = GatewayError::Limited(Box::new(limit_error(LimitKind::TokensPerMinute)));
    assert_eq!((tokens.kind(), tokens.code()), ("tokens", "rate_limit_exceeded"));
}

#[test]
fn statuses_follow_the_contract() {
    assert_eq!(GatewayError::MissingCredential.status(), 401);
    assert_eq!(GatewayError::AppDisabled.status(), 403);
    assert_eq!(GatewayError::UnknownModel("m".into()).status(), 404);
    assert_eq!(GatewayError::BodyTooLarge(1).status(), 413);
    assert_eq!(GatewayError::NotReady.status(), 503);
    assert_eq!(GatewayError::NotReady.message(), "gateway not ready");
}

#[test]
fn a_wrong_type_names_its_param() {
    let e = GatewayError::InvalidType {
        param: "stream",
        message: "`stream` must be a boolean or null.".into(),
    };
    let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
    assert_eq!(e.status(), 400);
    assert_eq!(
        v,
        serde_json::json!({"error": {
            "message": "`stream` must be a boolean or null.", "type": "invalid_request_error", "param": "stream", "code": "invalid_type"
        }})
    );
}

#[test]
fn authentication_failures_are_401_and_counted_by_their_code() {
    let failures: Vec<&str> = every_error()
        .iter()
        .filter_map(|e| match e.tally() {
            Some(Tally::AuthFailure(reason)) => {
                assert_eq!(reason, e.code());
                Some(reason)
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        failures,
        [
            "missing_api_key",
            "invalid_api_key",
            "expired_api_key",
            "expired_token",
            "revoked_token",
            "user_disabled",
            "app_disabled",
            "gateway_not_ready",
            "model_not_allowed",
        ]
    );
    for e in every_error() {
        let authentication = e.class() == Class::Authentication;
        assert_eq!(authentication, e.status() == 401, "{e:?}");
        assert_eq!(authentication, e.kind() == "authentication_error", "{e:?}");
    }
}

#[test]
fn an_expired_token_is_not_an_expired_api_key() {
    let (key, token) = (GatewayError::ExpiredCredential, GatewayError::ExpiredToken);
    assert_eq!((key.status(), key.code()), (401, "expired_api_key"));
    assert_eq!((token.status(), token.code()), (401, "expired_token"));
    assert_eq!(token.message(), "The token has expired: log in again.");
    assert!(key.may_be_stale(), "the app may have been extended a moment ago");
    assert!(!token.may_be_stale(), "no newer credentials make an expired JWT good");
}

#[test]
fn limits_are_counted_as_limited_or_cut_off() {
    let tallies: Vec<Tally> = every_error().iter().filter_map(GatewayError::tally).collect();
    assert_eq!(
        tallies.iter().filter(|t| !matches!(t, Tally::AuthFailure(_))).collect::<Vec<_>>(),
        [
            &Tally::Limited("tokens_per_day"),
            &Tally::CutOff("tokens_per_minute"),
            &Tally::Limited("limits_unavailable"),
        ]
    );
    assert_eq!(GatewayError::BodyTooLarge(1).tally(), None);
    assert_eq!(GatewayError::Busy.tally(), None);
}

#[test]
fn only_refusals_of_the_credentials_may_be_stale() {
    let stale: Vec<&str> =
        every_error().iter().filter(|e| e.may_be_stale()).map(GatewayError::code).collect();
    assert_eq!(
        stale,
        [
            "invalid_api_key",
            "expired_api_key",
            "revoked_token",
            "user_disabled",
            "app_disabled",
            "gateway_not_ready",
            "model_not_allowed",
        ]
    );
}
