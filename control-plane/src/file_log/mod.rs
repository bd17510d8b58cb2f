//! The durable second path of the access log. Envoy's gRPC access logger drops entries while
//! the control plane is down or slow; Envoy also writes every request as one JSON line to a
//! local file (`--access-log-file`), which this task ingests on start and then every
//! [`Config::poll`].
//!
//! **Exactly once.** Each file is read from a cursor kept in SQLite (the file's inode, the
//! offset of the first byte not ingested, and its first line as identity). The rows of a batch
//! of complete lines are written with `INSERT OR IGNORE` by request id in the same transaction
//! that moves the cursor past those lines: a crash at any point leaves both or neither, so no
//! line is read twice or skipped, and a request the gRPC stream already delivered is ignored
//! (the first arrival wins; both carry the same facts). A last line without its newline waits
//! for it; a line that is no request record is skipped, counted and logged with its offset.
//! Lines are read once they are [`Config::grace`] old, which gives the gRPC stream the first
//! chance, so the rows inserted from the file count what the stream dropped.
//!
//! **Bounded size.** When the live file is over [`Config::max_bytes`], it is renamed to
//! `<path>.1` and Envoy is asked to reopen its log (see [`rotate`]); the renamed file is read to
//! its end by inode. On disk: the live file and one rotated file, each about `max_bytes` (the
//! live file passes the limit by what Envoy writes until the previous rotation is over, at
//! least [`Config::idle`], and grows without bound while the control plane is down). Without
//! Envoy's admin address nothing is rotated and a warning says so once.

pub mod line;
pub mod rotate;
pub mod tail;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::rotate::{Draining, Policy, Step, View};
use self::tail::{Opened, Sink, TailError, Tracked};
use crate::metrics::Metrics;
use crate::store::file_cursors;
use crate::Db;

/// The default size limit of the live file: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;

/// Where the log is and how to treat it.
#[derive(Debug, Clone)]
pub struct Config {
    /// The live file Envoy writes.
    pub path: PathBuf,
    /// Rotate the live file beyond this size.
    pub max_bytes: u64,
    /// Envoy's admin interface (`http://127.0.0.1:9901`), for `POST /reopen_logs` after a
    /// rotation; without it the log is never rotated.
    pub envoy_admin: Option<String>,
    /// Time between two passes.
    pub poll: Duration,
    /// Lines are ingested once they have been in the file this long.
    pub grace: Duration,
    /// A renamed file that has not changed this long (with a new live file present) is no
    /// longer written by Envoy.
    pub idle: Duration,
}

impl Config {
    /// The defaults for a log at `path`: 64 MiB, no rotation, a pass every 200 ms, 3 s of
    /// grace, 5 s of idleness.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_bytes: DEFAULT_MAX_BYTES,
            envoy_admin: None,
            poll: Duration::from_millis(200),
            grace: Duration::from_secs(3),
            idle: Duration::from_secs(5),
        }
    }

    /// The rotated file, `<path>.1`.
    pub fn rotated_path(&self) -> PathBuf {
        let mut name = OsString::from(self.path.as_os_str());
        name.push(".1");
        PathBuf::from(name)
    }

    fn policy(&self) -> Policy {
        Policy {
            max_bytes: self.max_bytes,
            can_reopen: self.envoy_admin.is_some(),
            idle: self.idle,
        }
    }
}

/// Starts the ingest task; it ends soon after `stop` turns true (between two transactions).
pub fn spawn(
    db: Db,
    config: Config,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(run(Ingester::new(db, config, metrics), stop))
}

async fn run(mut ingester: Ingester, mut stop: watch::Receiver<bool>) {
    tracing::info!(path = %ingester.config.path.display(), "ingesting the access-log file");
    let mut failing = false;
    while !*stop.borrow() {
        match ingester.pass(&stop).await {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "access-log file ingest failed; retrying every pass");
            }
            Err(e) => tracing::debug!(error = %e, "access-log file ingest failed again"),
        }
        tokio::select! {
            () = tokio::time::sleep(ingester.config.poll) => {}
            _ = stop.changed() => {}
        }
    }
}

/// The ingest state between passes.
pub struct Ingester {
    db: Db,
    config: Config,
    metrics: Arc<Metrics>,
    client: reqwest::Client,
    files: HashMap<u64, Tracked>,
    draining: Option<Draining>,
    started: bool,
    warned_over_limit: bool,
}

impl Ingester {
    /// An ingester that has not looked at the files yet.
    pub fn new(db: Db, config: Config, metrics: Arc<Metrics>) -> Self {
        let client =
            reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Self {
            db,
            config,
            metrics,
            client,
            files: HashMap::new(),
            draining: None,
            started: false,
            warned_over_limit: false,
        }
    }

    /// One pass: reads what is new in the rotated and the live file, then rotates if due.
    pub async fn pass(&mut self, stop: &watch::Receiver<bool>) -> Result<(), TailError> {
        let now = Instant::now();
        let mut rotated = Opened::open(&self.config.rotated_path()).await?;
        let mut live = Opened::open(&self.config.path).await?;
        if let (Some(r), Some(l)) = (&rotated, &live) {
            if r.inode == l.inode {
                rotated = None; // the same file under both names (a rename in progress)
            }
        }
        let present: Vec<u64> = [&rotated, &live].into_iter().flatten().map(|f| f.inode).collect();
        self.files.retain(|inode, _| present.contains(inode));
        if !self.started && !present.is_empty() {
            // Cursors of files that are gone (a log directory not there yet forgets nothing).
            let forgotten = file_cursors::forget_all_but(&self.db, &present).await?;
            tracing::debug!(forgotten, "cursors of access-log files that are gone");
        }
        for file in [&mut rotated, &mut live].into_iter().flatten() {
            self.track(file, now).await?;
        }
        let live_inode = live.as_ref().map(|l| l.inode);
        if let Some(file) = &mut rotated {
            // Envoy writes elsewhere now: a cut-off last line will never be completed.
            let finished =
                live_inode.is_some() && self.files[&file.inode].idle(now) >= self.config.idle;
            self.ingest(file, finished, now, stop).await?;
        }
        if let Some(file) = &mut live {
            self.ingest(file, false, now, stop).await?;
        }
        let (live, rotated) = (self.view(live.as_ref(), now), self.view(rotated.as_ref(), now));
        let lag = live.map_or(0, |v| v.pending) + rotated.map_or(0, |v| v.pending);
        self.metrics.file_lag_bytes.store(i64::try_from(lag).unwrap_or(i64::MAX), Relaxed);
        if !self.started {
            self.started = true;
            self.draining = rotate::unfinished(live, rotated, self.config.policy());
        }
        self.rotate(live, rotated, now).await
    }

    /// Picks up (or checks) what is known of one file.
    async fn track(&mut self, file: &mut Opened, now: Instant) -> Result<(), TailError> {
        if !self.files.contains_key(&file.inode) {
            let cursor = file_cursors::load(&self.db, file.inode).await?;
            self.files.insert(file.inode, Tracked::new(cursor, now));
        }
        let tracked = self.files.get_mut(&file.inode).expect("inserted above");
        tail::verify(file, tracked).await?;
        tracked.observe(file.size, now, self.config.grace);
        Ok(())
    }

    async fn ingest(
        &mut self,
        file: &mut Opened,
        finished: bool,
        now: Instant,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), TailError> {
        let tracked = self.files.get_mut(&file.inode).expect("tracked before");
        let limit =
            if finished { file.size } else { tracked.limit(now, self.config.grace).min(file.size) };
        let sink = Sink { db: &self.db, metrics: &self.metrics, limit, finished, stop };
        tail::ingest(file, tracked, &sink).await
    }

    fn view(&self, file: Option<&Opened>, now: Instant) -> Option<View> {
        let file = file?;
        let tracked = self.files.get(&file.inode)?;
        Some(View {
            inode: file.inode,
            size: file.size,
            pending: tracked.pending(),
            idle: tracked.idle(now),
        })
    }

    async fn rotate(
        &mut self,
        live: Option<View>,
        rotated: Option<View>,
        now: Instant,
    ) -> Result<(), TailError> {
        match rotate::next_step(live, rotated, self.draining, self.config.policy(), now) {
            Step::Wait => {}
            Step::OverLimit => {
                if !std::mem::replace(&mut self.warned_over_limit, true) {
                    tracing::warn!(path = %self.config.path.display(), max_bytes = self.config.max_bytes,
                        "the access-log file is over its size limit but is not rotated: --envoy-admin is not set");
                }
            }
            Step::Rotate => {
                let Some(live) = live else { return Ok(()) };
                tokio::fs::rename(&self.config.path, self.config.rotated_path()).await?;
                if let Some(old) = rotated.filter(|r| r.inode != live.inode) {
                    self.files.remove(&old.inode);
                    file_cursors::forget(&self.db, old.inode).await?;
                }
                self.metrics.file_rotations.fetch_add(1, Relaxed);
                tracing::info!(path = %self.config.path.display(), size = live.size, "rotated the access-log file");
                self.draining = Some(Draining { inode: live.inode, last_reopen: None });
                self.reopen(now).await;
            }
            Step::Reopen => self.reopen(now).await,
            Step::Drained => {
                tracing::debug!(
                    "Envoy writes the new access-log file; the rotated one is ingested"
                );
                self.draining = None;
            }
        }
        Ok(())
    }

    async fn reopen(&mut self, now: Instant) {
        let (Some(admin), Some(draining)) = (&self.config.envoy_admin, &mut self.draining) else {
            return;
        };
        let first = draining.last_reopen.is_none();
        draining.last_reopen = Some(now);
        match rotate::reopen_logs(&self.client, admin).await {
            Ok(()) => tracing::debug!("asked Envoy to reopen its access logs"),
            Err(e) if first => {
                tracing::warn!(error = %e, "could not ask Envoy to reopen its access logs; retrying")
            }
            Err(e) => {
                tracing::debug!(error = %e, "Envoy still not asked to reopen its access logs")
            }
        }
    }
}
