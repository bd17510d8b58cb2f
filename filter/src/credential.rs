//! Finding the caller's credential in a request, and removing it before the request goes on.
//!
//! A credential comes as `Authorization: Bearer <token>` or, for browsers' `EventSource`, as the
//! `token` query parameter. The header wins when both are present. Whatever was sent, the
//! upstream never sees it: [`strip_token_param`] rewrites the path without `token`.

/// Where the credential was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// From `Authorization: Bearer …`.
    Header(String),
    /// From `?token=…` (percent-decoded).
    Query(String),
}

impl Credential {
    /// The token itself.
    pub fn token(&self) -> &str {
        match self {
            Self::Header(t) | Self::Query(t) => t,
        }
    }
}

/// Finds the credential of a request: the bearer header first, then the `token` parameter.
pub fn find(authorization: Option<&str>, path: &str) -> Option<Credential> {
    if let Some(token) = authorization.and_then(bearer) {
        return Some(Credential::Header(token.to_owned()));
    }
    query_param(path, "token").filter(|t| !t.is_empty()).map(Credential::Query)
}

fn bearer(header: &str) -> Option<&str> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then_some(token)
}

/// The path without its query string.
pub fn path_only(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

/// The first value of a query parameter, percent-decoded.
pub fn query_param(path: &str, name: &str) -> Option<String> {
    let (_, query) = path.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

/// The path with every `token` query parameter removed; `None` when there was none.
pub fn strip_token_param(path: &str) -> Option<String> {
    let (base, query) = path.split_once('?')?;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            percent_decode(key) != "token"
        })
        .collect();
    if kept.len() == query.split('&').count() {
        return None;
    }
    let kept: Vec<&str> = kept.into_iter().filter(|p| !p.is_empty()).collect();
    Some(if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) })
}

fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (b, hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn header_wins_over_query() {
        let c = find(Some("Bearer sk-live-a"), "/v1/models?token=other").unwrap();
        assert_eq!(c, Credential::Header("sk-live-a".into()));
        let c = find(Some("bearer   sk-live-b  "), "/v1/x").unwrap();
        assert_eq!(c.token(), "sk-live-b");
    }

    #[test]
    fn query_token_is_decoded() {
        let c = find(None, "/v1/chat/completions?a=1&token=ab%2Ecd&b=2").unwrap();
        assert_eq!(c, Credential::Query("ab.cd".into()));
        assert_eq!(find(Some("Basic dXNlcg=="), "/v1/x?token=t").unwrap().token(), "t");
    }

    #[test]
    fn nothing_usable_is_none() {
        assert_eq!(find(None, "/v1/models"), None);
        assert_eq!(find(Some("Bearer "), "/v1/models?token="), None);
        assert_eq!(find(Some("sk-live-x"), "/v1/models"), None);
        assert_eq!(find(None, "/v1/models?tokens=x"), None);
    }

    #[test]
    fn strips_only_the_token() {
        assert_eq!(strip_token_param("/v1/x?token=a"), Some("/v1/x".into()));
        assert_eq!(strip_token_param("/v1/x?a=1&token=a&b=2"), Some("/v1/x?a=1&b=2".into()));
        assert_eq!(strip_token_param("/v1/x?token=a&token=b"), Some("/v1/x".into()));
        assert_eq!(strip_token_param("/v1/x?to%6Ben=a&c=3"), Some("/v1/x?c=3".into()));
        assert_eq!(strip_token_param("/v1/x?a=1"), None);
        assert_eq!(strip_token_param("/v1/x"), None);
    }

    #[test]
    fn decoding_survives_bad_escapes() {
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("a+b%20c"), "a b c");
        assert_eq!(path_only("/v1/a?b"), "/v1/a");
    }
}
