//! The SQLite database: opened in WAL mode, created if missing, migrated at start with the
//! numbered migrations embedded from `control-plane/migrations`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

/// The shared connection pool.
pub type Db = SqlitePool;

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Bad URL, unreadable file, locked database…
    #[error("opening {url}: {source}")]
    Open {
        /// The database URL.
        url: String,
        /// The cause.
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The file's folder could not be created.
    #[error("creating the folder of {path}: {source}")]
    Folder {
        /// The folder.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Opens (creating if needed) and migrates the database at `url` (`sqlite://path` or a path).
pub async fn open(url: &str) -> Result<Db, OpenError> {
    let url = if url.starts_with("sqlite:") { url.to_owned() } else { format!("sqlite://{url}") };
    let fail = |source| OpenError::Open { url: url.clone(), source };
    let options = SqliteConnectOptions::from_str(&url)
        .map_err(fail)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    let path = options.get_filename();
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder).map_err(|source| OpenError::Folder {
            path: path.display().to_string(),
            source,
        })?;
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .map_err(fail)?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}
