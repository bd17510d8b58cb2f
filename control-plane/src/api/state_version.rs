//! The state's version as the feed's ETag: `"v<counter>-<12 hex>"`, the counter every change of
//! apps, keys, users or signing keys bumps (migrations 0004 and 0009) and a digest of the published
//! signing keys' ids (a retired key leaves the state as time passes, without a change). The
//! whole state, a lookup and the long-poll watcher all read it here, so their ETags agree.

use axum::http::HeaderValue;
use sqlx::SqliteConnection;
use vllm_gateway_filter::feed::PublishedKey;

use crate::store::feed;
use crate::{jwt, secrets};

/// The version, and the signing keys it covers (which the state publishes).
pub(super) struct Tag {
    /// The version counter.
    pub version: i64,
    /// The ETag, quotes included.
    pub etag: String,
    /// The published JWT keys at this version.
    pub jwt_keys: Vec<PublishedKey>,
}

/// The current version; two small queries (read them in a transaction for one snapshot).
pub(super) async fn current(
    conn: &mut SqliteConnection,
    jwt_lifetime_secs: i64,
) -> Result<Tag, sqlx::Error> {
    let jwt_keys = jwt::published_keys(&mut *conn, jwt_lifetime_secs).await?;
    let version = feed::version(&mut *conn).await?;
    let kids: Vec<&str> = jwt_keys.iter().map(|k| k.kid.as_str()).collect();
    let etag = format!("\"v{version}-{}\"", &secrets::hash(kids.join(","))[..12]);
    Ok(Tag { version, etag, jwt_keys })
}

/// An ETag as a header value.
pub(super) fn header(etag: &str) -> HeaderValue {
    HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"\""))
}
