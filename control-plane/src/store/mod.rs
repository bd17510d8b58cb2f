//! What the control plane keeps in SQLite, one module per concept. Queries live here; the HTTP
//! and gRPC layers only translate.

pub mod apps;
pub mod feed;
pub mod feed_changes;
pub mod file_cursors;
pub mod limits;
pub mod logs;
pub mod samples;
pub mod settings;
pub mod usage;
pub mod users;

/// Now, in Unix seconds.
pub fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}
