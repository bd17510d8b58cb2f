//! Reading one file of the log from its cursor: open it, tell whether it is still the file the
//! cursor belongs to, and ingest its new complete lines, each batch of rows written in the
//! transaction that moves the cursor past them.

use std::collections::VecDeque;
use std::io::{ErrorKind, SeekFrom};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::line::{complete_lines, parse_line, Line, Parsed};
use crate::metrics::Metrics;
use crate::request_facts;
use crate::store::file_cursors::{self, FileCursor, Head};
use crate::store::logs;
use crate::Db;

/// Bytes read at once; also the longest line (a longer one is cut there and skipped as garbage).
pub const CHUNK: usize = 1 << 20;
/// Lines (rows) per transaction at most.
pub const BATCH_LINES: usize = 512;

/// A file of the log, opened for one pass.
pub struct Opened {
    file: File,
    /// Its inode.
    pub inode: u64,
    /// Its size when opened; this pass reads no further.
    pub size: u64,
}

impl Opened {
    /// Opens `path`; `None` when there is no such file.
    pub async fn open(path: &Path) -> std::io::Result<Option<Self>> {
        use std::os::unix::fs::MetadataExt as _;
        let file = match File::open(path).await {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = file.metadata().await?;
        Ok(Some(Self { file, inode: meta.ino(), size: meta.len() }))
    }

    /// Up to `len` bytes from `offset` (fewer at the end of the file).
    async fn read_at(&mut self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.file.seek(SeekFrom::Start(offset)).await?;
        let mut buf = Vec::with_capacity(len);
        (&mut self.file).take(len as u64).read_to_end(&mut buf).await?;
        Ok(buf)
    }
}

/// What is known of one file across passes.
#[derive(Debug)]
pub struct Tracked {
    /// Bytes ingested (committed).
    pub offset: u64,
    /// The first line, once read.
    pub head: Option<Head>,
    /// Sizes as seen, oldest first, kept for the grace period.
    seen: VecDeque<(Instant, u64)>,
    size: u64,
    changed_at: Instant,
}

impl Tracked {
    /// A file first seen now, ingested up to `cursor`.
    pub fn new(cursor: Option<FileCursor>, now: Instant) -> Self {
        let (offset, head) = cursor.map_or((0, None), |c| (c.offset, Some(c.head)));
        Self { offset, head, seen: VecDeque::new(), size: 0, changed_at: now }
    }

    /// Notes the file's size as seen at `now`.
    pub fn observe(&mut self, size: u64, now: Instant, grace: Duration) {
        if size != self.size || self.seen.is_empty() {
            self.size = size;
            self.changed_at = now;
            self.seen.push_back((now, size));
        }
        while self.seen.len() > 1 && self.seen[1].0 + grace <= now {
            self.seen.pop_front();
        }
    }

    /// How far this pass may read: the size the file had a grace period ago, so the gRPC
    /// stream gets the first chance to deliver each request.
    pub fn limit(&self, now: Instant, grace: Duration) -> u64 {
        let old_enough =
            self.seen.iter().filter(|(at, _)| *at + grace <= now).map(|(_, size)| *size);
        old_enough.max().unwrap_or(self.offset).max(self.offset)
    }

    /// Bytes not ingested yet.
    pub fn pending(&self) -> u64 {
        self.size.saturating_sub(self.offset)
    }

    /// How long the file's size has not changed.
    pub fn idle(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.changed_at)
    }

    /// Starts over at byte 0 (the file was replaced or truncated).
    fn restart(&mut self) {
        self.offset = 0;
        self.head = None;
        self.seen.clear();
    }
}

/// Why a pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// Reading, renaming.
    #[error("access-log file: {0}")]
    Io(#[from] std::io::Error),
    /// Writing rows or the cursor.
    #[error("access-log file ingest: {0}")]
    Db(#[from] sqlx::Error),
}

/// Starts over when the file is not the one the cursor belongs to: shorter than the cursor
/// (truncated) or with another first line (a new file that got a freed inode).
pub async fn verify(file: &mut Opened, tracked: &mut Tracked) -> Result<(), TailError> {
    let replaced = match &tracked.head {
        _ if file.size < tracked.offset => true,
        Some(head) if head.len <= file.size => {
            let len = usize::try_from(head.len).unwrap_or(usize::MAX).min(CHUNK);
            Head::of(&file.read_at(0, len).await?) != *head
        }
        Some(_) => true,
        None => false,
    };
    if replaced {
        tracing::warn!(
            inode = file.inode,
            offset = tracked.offset,
            "the access-log file was truncated or replaced; reading it from the start"
        );
        tracked.restart();
    }
    Ok(())
}

/// What a file's ingest needs besides the file.
pub struct Sink<'a> {
    /// The database.
    pub db: &'a Db,
    /// Counters.
    pub metrics: &'a Metrics,
    /// Read no further than this.
    pub limit: u64,
    /// Nothing will be appended to the file any more: a last line without newline is final
    /// (garbage) rather than waited for.
    pub finished: bool,
    /// Stop between two transactions when this turns true.
    pub stop: &'a tokio::sync::watch::Receiver<bool>,
}

/// Ingests the complete lines of `file` from the cursor up to `sink.limit`.
pub async fn ingest(
    file: &mut Opened,
    tracked: &mut Tracked,
    sink: &Sink<'_>,
) -> Result<(), TailError> {
    while tracked.offset < sink.limit && !*sink.stop.borrow() {
        let want = usize::try_from(sink.limit - tracked.offset).unwrap_or(CHUNK).min(CHUNK);
        let buf = file.read_at(tracked.offset, want).await?;
        if buf.is_empty() {
            return Ok(());
        }
        let lines = complete_lines(&buf, tracked.offset);
        if lines.is_empty() {
            let at_end = tracked.offset + buf.len() as u64 >= file.size;
            if buf.len() < CHUNK && !(sink.finished && at_end) {
                return Ok(()); // a line still being written
            }
            let cut =
                Line { offset: tracked.offset, end: tracked.offset + buf.len() as u64, raw: &buf };
            commit(file.inode, tracked, &[cut], sink).await?;
            continue;
        }
        for batch in lines.chunks(BATCH_LINES) {
            commit(file.inode, tracked, batch, sink).await?;
            if *sink.stop.borrow() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Writes one batch's rows and the cursor past it in one transaction.
async fn commit(
    inode: u64,
    tracked: &mut Tracked,
    batch: &[Line<'_>],
    sink: &Sink<'_>,
) -> Result<(), TailError> {
    let (Some(first), Some(last)) = (batch.first(), batch.last()) else { return Ok(()) };
    let mut rows = Vec::with_capacity(batch.len());
    let mut garbage = 0;
    for line in batch {
        if line.text().iter().all(u8::is_ascii_whitespace) && line.raw.ends_with(b"\n") {
            continue;
        }
        match parse_line(line.text()) {
            Parsed::Row(facts) => rows.push(request_facts::to_row(facts)),
            Parsed::Recovered(facts) => {
                tracing::warn!(
                    inode,
                    offset = line.offset,
                    "access-log file: a line began with a cut-off record; skipped that part"
                );
                garbage += 1;
                rows.push(request_facts::to_row(facts));
            }
            Parsed::Garbage(e) => {
                tracing::warn!(inode, offset = line.offset, error = %e, "access-log file: skipping a line that is no request record");
                garbage += 1;
            }
        }
    }
    let head = tracked.head.clone().unwrap_or_else(|| Head::of(first.raw));
    debug_assert!(tracked.head.is_some() || first.offset == 0);
    let cursor = FileCursor { inode, offset: last.end, head };
    let mut tx = sink.db.begin().await?;
    let inserted = logs::insert_rows(&mut tx, &rows).await?;
    file_cursors::save(&mut tx, &cursor, crate::store::now_ms()).await?;
    tx.commit().await?;
    tracked.offset = cursor.offset;
    tracked.head = Some(cursor.head);
    sink.metrics.file_rows_read.fetch_add(rows.len() as u64, Relaxed);
    sink.metrics.file_rows_inserted.fetch_add(inserted.rows, Relaxed);
    sink.metrics.rows_flagged.fetch_add(inserted.flagged, Relaxed);
    sink.metrics.file_lines_unparseable.fetch_add(garbage, Relaxed);
    if inserted.rows > 0 {
        tracing::debug!(
            inode,
            rows = rows.len(),
            inserted = inserted.rows,
            "access-log file: rows the gRPC stream had not delivered"
        );
    }
    Ok(())
}
