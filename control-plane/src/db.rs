//! The SQLite database: opened in WAL mode, created if missing, migrated at start with the
//! numbered migrations embedded from `control-plane/migrations`.
//!
//! The file holds the JWT signing keys and the state token, so it and its `-wal` and `-shm`
//! files are the owner's alone (mode 0600): the file is created so before SQLite opens it
//! (SQLite gives its `-wal` and `-shm` the database file's mode), and all three are set so
//! after opening, which also tightens a database made by an older version.

use std::path::{Path, PathBuf};
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
    /// The file (or its `-wal`/`-shm`) could not be made the owner's alone.
    #[error("making {path} owner-only (0600): {source}")]
    Mode {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A database URL: `sqlite:…` as it is, a bare path as `sqlite://path`.
fn url_of(url: &str) -> String {
    if url.starts_with("sqlite:") {
        url.to_owned()
    } else {
        format!("sqlite://{url}")
    }
}

/// The file of the database at `url` (`sqlite://path` or a path); `None` for an in-memory
/// database or an unreadable URL.
pub fn file_path(url: &str) -> Option<PathBuf> {
    let url = url_of(url);
    if in_memory(&url) {
        // sqlx names such a database `file:sqlx-in-memory-<n>`, which is no file.
        return None;
    }
    let options = SqliteConnectOptions::from_str(&url).ok()?;
    let path = options.get_filename();
    let on_disk = !path.as_os_str().is_empty() && !path.to_string_lossy().starts_with(':');
    on_disk.then(|| path.to_path_buf())
}

/// Whether the `sqlite:` URL names an in-memory database: `sqlite::memory:` (with or without
/// `//`), or `mode=memory`.
fn in_memory(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite:");
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|param| param == "mode=memory")
}

/// Opens (creating if needed) and migrates the database at `url` (`sqlite://path` or a path).
pub async fn open(url: &str) -> Result<Db, OpenError> {
    let url = url_of(url);
    let fail = |source| OpenError::Open { url: url.clone(), source };
    let options = SqliteConnectOptions::from_str(&url)
        .map_err(fail)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    let path = file_path(&url);
    if let Some(path) = &path {
        create_owner_only(path)?;
    }
    let pool =
        SqlitePoolOptions::new().max_connections(8).connect_with(options).await.map_err(fail)?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    if let Some(path) = &path {
        restrict_files(path)?;
    }
    Ok(pool)
}

/// Creates the database's folder and, when missing, the file itself with mode 0600.
fn create_owner_only(path: &Path) -> Result<(), OpenError> {
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder)
            .map_err(|source| OpenError::Folder { path: path.display().to_string(), source })?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(OpenError::Mode { path: path.display().to_string(), source }),
    }
}

/// Sets the database file, its `-wal` and its `-shm` (those that exist) to mode 0600.
fn restrict_files(path: &Path) -> Result<(), OpenError> {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = PathBuf::from(file);
        if let Err(source) = set_owner_only(&file) {
            if source.kind() != std::io::ErrorKind::NotFound {
                return Err(OpenError::Mode { path: file.display().to_string(), source });
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn set_owner_only(file: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_owner_only(file: &Path) -> std::io::Result<()> {
    std::fs::metadata(file).map(|_| ())
}

/// A database at `url` (a file in a test's folder) migrated only up to, not including,
/// `version`: what an older control plane left, for tests of the migrations after it.
#[cfg(test)]
pub(crate) async fn migrated_before(url: &str, version: i64) -> SqlitePool {
    let options: SqliteConnectOptions = url.parse().expect("a sqlite:// URL");
    let pool = SqlitePool::connect_with(options.create_if_missing(true)).await.expect("opened");
    let mut before = sqlx::migrate!("./migrations");
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < version)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&pool).await.expect("the older migrations ran");
    pool
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn a_new_database_and_its_wal_and_shm_are_the_owners_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fresh").join("gateway.db");
        let db = open(&path.display().to_string()).await.unwrap();
        // A write, so the WAL and the shared-memory file certainly exist.
        sqlx::query("INSERT INTO settings (key, value) VALUES ('k', 'v')")
            .execute(&db)
            .await
            .unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }

    /// `.cargo/config.toml` builds the bundled SQLite without memory statistics (a mutex per
    /// allocation); a build without that setting fails here.
    #[tokio::test]
    async fn sqlite_is_built_without_memory_statistics() {
        let db = open("sqlite::memory:").await.unwrap();
        let options: Vec<String> =
            sqlx::query_scalar("SELECT compile_options FROM pragma_compile_options")
                .fetch_all(&db)
                .await
                .unwrap();
        assert!(options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"), "{options:?}");
    }

    #[test]
    fn in_memory_databases_have_no_file() {
        for url in
            ["sqlite::memory:", "sqlite://:memory:", "sqlite://x.db?mode=memory&cache=shared"]
        {
            assert_eq!(file_path(url), None, "{url}");
        }
        assert_eq!(file_path("data/g.db"), Some(PathBuf::from("data/g.db")));
        assert_eq!(file_path("sqlite://data/g.db?mode=rwc"), Some(PathBuf::from("data/g.db")));
    }

    #[tokio::test]
    async fn an_existing_database_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        drop(open(&path.display().to_string()).await.unwrap());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _db = open(&format!("sqlite://{}", path.display())).await.unwrap();
        assert_eq!(mode(&path), 0o600);
    }
}
