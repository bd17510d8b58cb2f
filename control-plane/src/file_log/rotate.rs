//! When to rotate the log, as a pure decision over what the last pass saw, and Envoy's admin
//! call that makes it reopen its log.
//!
//! A rotation renames the live file to `<path>.1` — only when the previous `.1` is fully
//! ingested and has been idle, since the rename deletes it — and asks Envoy to reopen
//! (`POST /reopen_logs`). Until Envoy has switched, it still appends to the renamed file, which
//! is read on by its inode; once the new live file exists and the renamed one has been idle for
//! a while, the rotation is over. So at most the live file and one rotated file are on disk.

use std::time::{Duration, Instant};

/// How long to wait before asking Envoy again when it has not reopened its log.
pub const REOPEN_RETRY: Duration = Duration::from_secs(5);

/// One file as the last pass left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// Its inode.
    pub inode: u64,
    /// Its size.
    pub size: u64,
    /// Bytes not ingested yet.
    pub pending: u64,
    /// How long its size has not changed.
    pub idle: Duration,
}

/// A rotation under way: Envoy may still write to the renamed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draining {
    /// The renamed file's inode.
    pub inode: u64,
    /// When Envoy was last asked to reopen.
    pub last_reopen: Option<Instant>,
}

/// The limits a decision applies.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Rotate the live file beyond this size.
    pub max_bytes: u64,
    /// Whether Envoy's admin address is known (without it, never rotate).
    pub can_reopen: bool,
    /// How long the renamed file must not change before Envoy is taken to have switched.
    pub idle: Duration,
}

/// What to do after a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing.
    Wait,
    /// The live file is over the limit but cannot be rotated (no Envoy admin address).
    OverLimit,
    /// Rename the live file to `.1` (replacing the previous, finished one) and ask Envoy to reopen.
    Rotate,
    /// Ask Envoy (again) to reopen: it has not switched to a new live file yet.
    Reopen,
    /// The rotation under way is over.
    Drained,
}

/// The next step, from the live and rotated files as seen and the rotation under way.
pub fn next_step(
    live: Option<View>,
    rotated: Option<View>,
    draining: Option<Draining>,
    policy: Policy,
    now: Instant,
) -> Step {
    if let Some(d) = draining {
        let switched = live.is_some_and(|l| l.inode != d.inode);
        if switched {
            let done = rotated
                .is_none_or(|r| r.inode != d.inode || (r.pending == 0 && r.idle >= policy.idle));
            return if done { Step::Drained } else { Step::Wait };
        }
        let ask = d.last_reopen.is_none_or(|at| now.saturating_duration_since(at) >= REOPEN_RETRY);
        return if ask { Step::Reopen } else { Step::Wait };
    }
    let Some(live) = live.filter(|l| l.size > policy.max_bytes) else { return Step::Wait };
    if !policy.can_reopen {
        return Step::OverLimit;
    }
    if rotated.is_some_and(|r| r.inode != live.inode && (r.pending > 0 || r.idle < policy.idle)) {
        return Step::Wait;
    }
    Step::Rotate
}

/// The rotation to pick up at start: a rotated file without a live one means the last rotation
/// did not see Envoy switch (or Envoy has not started yet); asking it to reopen is harmless.
pub fn unfinished(live: Option<View>, rotated: Option<View>, policy: Policy) -> Option<Draining> {
    match (live, rotated) {
        (None, Some(r)) if policy.can_reopen => {
            Some(Draining { inode: r.inode, last_reopen: None })
        }
        _ => None,
    }
}

/// Asks Envoy's admin interface at `admin` (`http://127.0.0.1:9901`) to reopen its access logs.
pub async fn reopen_logs(client: &reqwest::Client, admin: &str) -> Result<(), reqwest::Error> {
    let url = format!("{}/reopen_logs", admin.trim_end_matches('/'));
    client.post(url).send().await?.error_for_status()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy =
        Policy { max_bytes: 100, can_reopen: true, idle: Duration::from_secs(2) };

    fn view(inode: u64, size: u64, pending: u64, idle_secs: u64) -> Option<View> {
        Some(View { inode, size, pending, idle: Duration::from_secs(idle_secs) })
    }

    #[test]
    fn rotates_a_live_file_over_the_limit_once_the_old_rotated_file_is_done() {
        let now = Instant::now();
        assert_eq!(
            next_step(view(1, 100, 0, 0), None, None, POLICY, now),
            Step::Wait,
            "at the limit"
        );
        assert_eq!(
            next_step(view(1, 101, 50, 0), None, None, POLICY, now),
            Step::Rotate,
            "read on by inode"
        );
        assert_eq!(
            next_step(view(1, 101, 0, 0), view(2, 9, 1, 9), None, POLICY, now),
            Step::Wait,
            "old .1 not ingested"
        );
        assert_eq!(
            next_step(view(1, 101, 0, 0), view(2, 9, 0, 1), None, POLICY, now),
            Step::Wait,
            "old .1 still written"
        );
        assert_eq!(
            next_step(view(1, 101, 0, 0), view(2, 9, 0, 2), None, POLICY, now),
            Step::Rotate
        );
        let no_admin = Policy { can_reopen: false, ..POLICY };
        assert_eq!(next_step(view(1, 101, 0, 0), None, None, no_admin, now), Step::OverLimit);
    }

    #[test]
    fn a_rotation_ends_when_envoy_has_switched_and_the_renamed_file_is_done() {
        let now = Instant::now();
        let asked = Draining { inode: 1, last_reopen: Some(now) };
        assert_eq!(
            next_step(
                None,
                view(1, 200, 0, 9),
                Some(Draining { last_reopen: None, ..asked }),
                POLICY,
                now
            ),
            Step::Reopen
        );
        assert_eq!(next_step(None, view(1, 200, 0, 9), Some(asked), POLICY, now), Step::Wait);
        assert_eq!(
            next_step(None, view(1, 200, 0, 9), Some(asked), POLICY, now + REOPEN_RETRY),
            Step::Reopen
        );
        assert_eq!(
            next_step(view(3, 0, 0, 0), view(1, 200, 0, 1), Some(asked), POLICY, now),
            Step::Wait,
            "still written"
        );
        assert_eq!(
            next_step(view(3, 0, 0, 0), view(1, 200, 5, 9), Some(asked), POLICY, now),
            Step::Wait,
            "not ingested"
        );
        assert_eq!(
            next_step(view(3, 500, 0, 0), view(1, 200, 0, 2), Some(asked), POLICY, now),
            Step::Drained
        );
        assert_eq!(
            unfinished(None, view(1, 5, 0, 0), POLICY),
            Some(Draining { inode: 1, last_reopen: None })
        );
        assert_eq!(unfinished(view(2, 5, 0, 0), view(1, 5, 0, 0), POLICY), None);
    }
}
