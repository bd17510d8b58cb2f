//! Generated secrets handed to the operator: each is written once to its own owner-only file
//! (mode 0600) in the secrets folder — by default the database's folder — and only the file's
//! path is printed, so a token never reaches a log.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The file a generated admin token is written to.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// The file a generated state token is written to.
pub const STATE_TOKEN_FILE: &str = "state-token";

/// The default secrets folder: the database's folder (the current one for a database with no
/// folder or in memory).
pub fn default_dir(db_url: &str) -> PathBuf {
    let folder = crate::db::file_path(db_url).and_then(|file| file.parent().map(Path::to_path_buf));
    folder.filter(|f| !f.as_os_str().is_empty()).unwrap_or_else(|| PathBuf::from("."))
}

/// Writes `secret` (and a newline) to `dir/name`, readable and writable by the owner alone,
/// replacing any older file; creates `dir` if needed. Returns the file's path.
pub fn write_owner_only(dir: &Path, name: &str, secret: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path)?;
    // An older file keeps its mode on open: tighten it before the secret is in it.
    #[cfg(unix)]
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(format!("{secret}\n").as_bytes())?;
    file.sync_all()?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_go_next_to_the_database_by_default() {
        assert_eq!(default_dir("sqlite:///data/gateway.db"), PathBuf::from("/data"));
        assert_eq!(default_dir("sqlite://.data/gateway.db"), PathBuf::from(".data"));
        assert_eq!(default_dir("gateway.db"), PathBuf::from("."));
        assert_eq!(default_dir("sqlite::memory:"), PathBuf::from("."));
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_is_the_owners_alone_even_when_it_existed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("s").join(ADMIN_TOKEN_FILE);
        std::fs::create_dir_all(old.parent().unwrap()).unwrap();
        std::fs::write(&old, "old token, world-readable").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = write_owner_only(&dir.path().join("s"), ADMIN_TOKEN_FILE, "new").unwrap();
        assert_eq!(path, old);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
