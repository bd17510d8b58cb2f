//! `credential`: finding the caller's credential ([`credential::find`]) and removing the `token`
//! parameter before the request goes on ([`credential::strip_token_param`]). The input is an
//! `Authorization` header, a line end, then the path (no line end: no header, all path). A token
//! found in the query is always stripped, and a stripped path has no `token` left for the
//! upstream to see.

use vllm_gateway_filter::credential::{self, Credential};
use vllm_gateway_filter::keys::Credentials;

use super::{outcome, Target};

pub const TARGET: Target = Target {
    name: "credential",
    about: "credential finder and token stripping: the upstream never sees a token",
    run,
    dictionary: &[
        b"Bearer ",
        b"bearer  ",
        b"Basic ",
        b"\n",
        b"?",
        b"&",
        b"=",
        b"token=",
        b"token",
        b"to%6Ben",
        b"%",
        b"%2",
        b"%zz",
        b"%2E",
        b"%+1",
        b"%C3%A9",
        b"+",
        b"sk-live-",
        b"eyJ.eyJ.sig",
        b"/v1/chat/completions?",
    ],
};

fn run(input: &[u8]) -> u64 {
    let (header, path) = match input.iter().position(|&b| b == b'\n') {
        Some(end) => (Some(&input[..end]), &input[end + 1..]),
        None => (None, input),
    };
    let header = header.map(String::from_utf8_lossy);
    let path = String::from_utf8_lossy(path);
    let found = credential::find(header.as_deref(), &path);
    let stripped = credential::strip_token_param(&path);
    if let Some(stripped) = &stripped {
        assert_eq!(
            credential::query_param(stripped, "token"),
            None,
            "a token left in {stripped:?}"
        );
        assert!(
            stripped.starts_with(credential::path_only(&path)),
            "the path itself changed: {stripped:?}"
        );
    }
    let kind = match &found {
        None => 0,
        Some(Credential::Header(token)) => {
            assert!(
                !token.is_empty() && token.trim() == token,
                "a header token with blanks: {token:?}"
            );
            1
        }
        Some(Credential::Query(token)) => {
            assert!(!token.is_empty(), "an empty query token");
            assert!(stripped.is_some(), "a query token that is not stripped");
            2
        }
    };
    let jwt = found.as_ref().is_some_and(|c| Credentials::is_jwt(c.token()));
    outcome(&[kind, u64::from(stripped.is_some()), u64::from(jwt)])
}
