//! How far each file of the durable access log has been ingested (migration 0007). A cursor is
//! saved on the caller's connection, inside the transaction that writes the rows it covers.

use sqlx::{FromRow, SqliteConnection};

use crate::Db;

/// One file's cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCursor {
    /// The file's inode.
    pub inode: u64,
    /// Bytes ingested; always the end of a line.
    pub offset: u64,
    /// The file's first line (newline included), which tells this file from a later one that
    /// got the same inode.
    pub head: Head,
}

/// A file's first line, as length and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Bytes, newline included.
    pub len: u64,
    /// SHA-256 of those bytes, lower-case hex.
    pub sha256: String,
}

impl Head {
    /// The head of a file whose first line (newline included) is `line`.
    pub fn of(line: &[u8]) -> Self {
        use sha2::Digest as _;
        Self { len: line.len() as u64, sha256: hex::encode(sha2::Sha256::digest(line)) }
    }
}

#[derive(FromRow)]
struct Row {
    inode: i64,
    offset: i64,
    head_len: i64,
    head_sha256: String,
}

// Inodes and offsets are stored as SQLite's signed 64-bit integers, bit for bit.
#[allow(clippy::cast_possible_wrap, clippy::cast_sign_loss)]
fn signed(n: u64) -> i64 {
    n as i64
}

#[allow(clippy::cast_sign_loss)]
fn unsigned(n: i64) -> u64 {
    n as u64
}

/// The cursor of the file with this inode, if one was saved.
pub async fn load(db: &Db, inode: u64) -> Result<Option<FileCursor>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT inode, offset, head_len, head_sha256 FROM access_log_file_cursors WHERE inode = ?",
    )
    .bind(signed(inode))
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| FileCursor {
        inode: unsigned(r.inode),
        offset: unsigned(r.offset),
        head: Head { len: unsigned(r.head_len), sha256: r.head_sha256 },
    }))
}

/// Saves a cursor on `conn` (the transaction that wrote the rows it covers).
pub async fn save(
    conn: &mut SqliteConnection,
    cursor: &FileCursor,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO access_log_file_cursors (inode, offset, head_len, head_sha256, updated_at_ms) \
         VALUES (?, ?, ?, ?, ?) ON CONFLICT (inode) DO UPDATE SET offset = excluded.offset, \
         head_len = excluded.head_len, head_sha256 = excluded.head_sha256, updated_at_ms = excluded.updated_at_ms",
    )
    .bind(signed(cursor.inode))
    .bind(signed(cursor.offset))
    .bind(signed(cursor.head.len))
    .bind(&cursor.head.sha256)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets every cursor but those of `keep` (the files that exist): a file that is gone can
/// never be read again, and its inode may be reused.
pub async fn forget_all_but(db: &Db, keep: &[u64]) -> Result<u64, sqlx::Error> {
    let mut query =
        sqlx::QueryBuilder::<sqlx::Sqlite>::new("DELETE FROM access_log_file_cursors WHERE 1 = 1");
    for inode in keep {
        query.push(" AND inode <> ").push_bind(signed(*inode));
    }
    Ok(query.build().execute(db).await?.rows_affected())
}

/// Forgets the cursor of one file.
pub async fn forget(db: &Db, inode: u64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM access_log_file_cursors WHERE inode = ?")
        .bind(signed(inode))
        .execute(db)
        .await?;
    Ok(())
}
