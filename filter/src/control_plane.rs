//! The filter's calls to the control plane (the state pull and the lookup of one credential):
//! the request the glue dispatches on the state cluster, and the answer it hands back. Both are
//! built and read here, so the glue only carries them.

use crate::config::StateFeed;

/// One call to dispatch on the state cluster (`GET`, or `POST` when it has a body; with the
/// state token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRequest {
    /// `:path`, with its query.
    pub path: String,
    /// `If-None-Match`, when the caller holds that version.
    pub if_none_match: Option<String>,
    /// How long the call may take.
    pub timeout_ms: u64,
    /// A JSON body, sent with `POST`.
    pub body: Option<Vec<u8>>,
}

impl CallRequest {
    /// The call's headers for the state cluster of `feed`.
    pub fn headers(&self, feed: &StateFeed) -> Vec<(&'static str, String)> {
        let method = if self.body.is_some() { "POST" } else { "GET" };
        let mut headers = vec![
            (":method", method.to_owned()),
            (":path", self.path.clone()),
            (":authority", feed.authority.clone()),
            ("authorization", format!("Bearer {}", feed.token)),
        ];
        if let Some(etag) = &self.if_none_match {
            headers.push(("if-none-match", etag.clone()));
        }
        if self.body.is_some() {
            headers.push(("content-type", "application/json".to_owned()));
        }
        headers
    }
}

/// What came back from a call; `status` is `None` when nothing did (the control plane is
/// unreachable, or the call timed out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallAnswer {
    /// `:status`.
    pub status: Option<u16>,
    /// `etag`, without line breaks.
    pub etag: Option<String>,
    /// Whether the body is a delta ([`crate::feed::DELTA_HEADER`] was set), not a whole state.
    pub delta: bool,
    /// The body.
    pub body: Vec<u8>,
}

impl CallAnswer {
    /// An answer from the `:status`, `etag` and [`crate::feed::DELTA_HEADER`] header values and
    /// the body, as the host gives them.
    pub fn new(
        status: Option<&str>,
        etag: Option<&str>,
        delta: Option<&str>,
        body: Vec<u8>,
    ) -> Self {
        Self {
            status: status.and_then(|s| s.trim().parse().ok()),
            etag: etag.map(|e| e.replace(['\r', '\n'], "")),
            delta: delta.is_some(),
            body,
        }
    }
}

/// `path` with `name=value` added to its query (`?` or `&`, as the path needs).
pub fn with_query(path: &str, name: &str, value: &str) -> String {
    let separator = match path.split_once('?') {
        None => "?",
        Some((_, "")) => "",
        Some((_, query)) if query.ends_with('&') => "",
        Some(_) => "&",
    };
    format!("{path}{separator}{name}={value}")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn queries_are_appended_whatever_the_path_has() {
        assert_eq!(
            with_query("/internal/state", "wait_ms", "20000"),
            "/internal/state?wait_ms=20000"
        );
        assert_eq!(with_query("/s?tenant=a", "wait_ms", "1"), "/s?tenant=a&wait_ms=1");
        assert_eq!(with_query("/s?", "wait_ms", "1"), "/s?wait_ms=1");
        assert_eq!(with_query("/s?a=1&", "b", "2"), "/s?a=1&b=2");
    }

    #[test]
    fn headers_carry_the_token_and_the_version() {
        let feed: StateFeed = serde_json::from_value(serde_json::json!({
            "cluster": "cp", "authority": "control-plane", "token": "0123456789abcdef"
        }))
        .unwrap();
        let call = CallRequest {
            path: "/internal/state".into(),
            if_none_match: Some("\"v1\"".into()),
            timeout_ms: 5,
            body: None,
        };
        let headers = call.headers(&feed);
        assert!(headers.contains(&("authorization", "Bearer 0123456789abcdef".to_owned())));
        assert!(headers.contains(&(":authority", "control-plane".to_owned())));
        assert!(headers.contains(&("if-none-match", "\"v1\"".to_owned())));
        let call = CallRequest { if_none_match: None, ..call };
        assert!(!call.headers(&feed).iter().any(|(name, _)| *name == "if-none-match"));
    }

    #[test]
    fn answers_read_status_and_etag() {
        let answer = CallAnswer::new(Some("304"), Some("\"v2\"\n"), None, vec![]);
        assert_eq!(
            (answer.status, answer.etag.as_deref(), answer.delta),
            (Some(304), Some("\"v2\""), false)
        );
        assert_eq!(CallAnswer::new(None, None, None, vec![]).status, None);
        assert_eq!(CallAnswer::new(Some("abc"), None, None, vec![]).status, None);
        assert!(CallAnswer::new(Some("200"), None, Some("4"), vec![]).delta);
    }
}
