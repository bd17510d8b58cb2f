//! What the control plane keeps in SQLite, one module per concept. Queries live here; the HTTP
//! and gRPC layers only translate.

pub mod apps;
pub mod logs;
pub mod settings;
pub mod usage;
pub mod users;

/// Now, in Unix seconds.
pub fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
