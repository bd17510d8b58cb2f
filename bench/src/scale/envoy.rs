//! The scale scenario's own Envoys, on one rendered configuration (the stack's template, its
//! control plane and mock), so that the scenario owns their start, their process id and their
//! worker count; and reading from an Envoy's output which key states its VMs took (the filter
//! logs `key state adopted: N keys` for a whole state and `key state changed: N keys` for a
//! delta, at Envoy's `wasm:info`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gateway_envoy::{FilterBuild, GatewaySpec};
use gateway_stack::process::ChildGuard;
use gateway_stack::Stack;
use gateway_workspace::paths;

use super::STEP_TIMEOUT;

/// An Envoy of the scenario's own, on the scale configuration.
pub struct Envoy {
    /// Its gateway listener's base URL.
    pub url: String,
    /// Its process id.
    pub pid: u32,
    /// From its start until its admin answered ready and its listener was known, ms.
    pub ready_ms: f64,
    /// Its process, and what it printed.
    pub guard: ChildGuard,
}

impl Envoy {
    /// Starts Envoy with `workers` in its own folder under `dir`; returns it and when it was
    /// started.
    pub async fn start(
        config: &Path,
        dir: &Path,
        name: &str,
        workers: u16,
    ) -> Result<(Envoy, Instant)> {
        let sub = dir.join(format!("envoy-{name}"));
        std::fs::create_dir_all(&sub)?;
        let started = Instant::now();
        let (guard, _admin, listener) = gateway_stack::start_envoy_with(
            config,
            sub,
            ([127, 0, 0, 1], 0).into(),
            workers,
            false,
        )
        .await?;
        let pid = guard.pid().context("Envoy exited at start")?;
        let ready_ms = started.elapsed().as_secs_f64() * 1e3;
        Ok((Envoy { url: format!("http://{listener}"), pid, ready_ms, guard }, started))
    }

    /// States its VMs have taken so far (see [`adoptions`]).
    pub fn adoptions(&self, keys: Option<u32>) -> usize {
        adoptions(&self.guard.output_text(), keys)
    }

    /// Waits until each of its VMs (the workers' and the main thread's) holds a state of `keys`.
    pub async fn all_adopted(&self, keys: Option<u32>, workers: u16) -> Result<()> {
        eventually_adopted("Envoy", || self.guard.output_text(), keys, workers).await
    }

    /// Waits until its VMs have taken no new state for `window`; returns how many they took.
    pub async fn quiet(&self, window: Duration) -> Result<usize> {
        no_new_state(|| self.guard.output_text(), window).await
    }

    /// `VmRSS` in KiB once its VMs have taken no new state for `window`.
    pub async fn settled_rss(&self, window: Duration) -> Result<u64> {
        self.quiet(window).await?;
        rss_kib(self.pid)
    }

    pub async fn stop(&mut self) {
        self.guard.stop(Duration::from_secs(5)).await;
    }
}

/// Lines of an Envoy's output where one of its VMs took a key state (a whole one, or a change)
/// of `keys` keys, or of any size.
pub fn adoptions(output: &str, keys: Option<u32>) -> usize {
    let size = keys.map(|k| format!(": {k} keys,"));
    output
        .lines()
        .filter(|line| line.contains("key state adopted: ") || line.contains("key state changed: "))
        .filter(|line| size.as_ref().is_none_or(|s| line.contains(s.as_str())))
        .count()
}

/// Waits until `output` shows a state of `keys` taken by each of `workers` VMs and the main
/// thread's.
pub async fn eventually_adopted(
    what: &str,
    output: impl Fn() -> String,
    keys: Option<u32>,
    workers: u16,
) -> Result<()> {
    let vms = usize::from(workers) + 1;
    let deadline = Instant::now() + STEP_TIMEOUT;
    while adoptions(&output(), keys) < vms {
        if Instant::now() > deadline {
            bail!(
                "{what}: not every VM took a state of {keys:?} keys within {STEP_TIMEOUT:?}\n{}",
                output()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Waits until `output` shows no new state taken for `window` (the changes made so far have
/// reached every VM); returns how many states it shows.
pub async fn no_new_state(output: impl Fn() -> String, window: Duration) -> Result<usize> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    let (mut last, mut since) = (adoptions(&output(), None), Instant::now());
    while since.elapsed() < window {
        if Instant::now() > deadline {
            bail!("new key states kept coming for {STEP_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Output is kept bounded: older lines may go, so any difference counts as a change.
        let now = adoptions(&output(), None);
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    Ok(last)
}

/// The resident memory of a process, KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_rss_kib(&status).context("no VmRSS in /proc/<pid>/status")
}

fn parse_rss_kib(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
}

/// The scale Envoys' configuration: the stack's control plane and mock, the stack's template.
pub fn render(stack: &Stack, als: SocketAddr, dir: &Path) -> Result<String> {
    let models = stack
        .models
        .iter()
        .map(|(name, url)| format!("{name}={url}").parse())
        .collect::<Result<Vec<_>, _>>()?;
    let spec = GatewaySpec {
        listen: ([127, 0, 0, 1], 0).into(),
        admin_port: 0,
        control_plane_http: stack.control_plane,
        control_plane_als: als,
        filter: FilterBuild::Wasm(paths::filter_wasm()?),
        models,
        state_token: stack.state_token().into(),
        state_refresh_ms: 1000,
        cors_origins: gateway_envoy::DEFAULT_CORS_ORIGINS.iter().map(|o| o.to_string()).collect(),
        default_model: None,
        upstream_keys: Default::default(),
        access_log_file: dir.join("access.jsonl"),
    };
    Ok(gateway_envoy::render(&spec)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_and_state_counts_read_as_expected() {
        assert_eq!(
            parse_rss_kib("Name:\tenvoy\nVmRSS:\t  123456 kB\nVmData:\t1 kB\n"),
            Some(123_456)
        );
        assert_eq!(parse_rss_kib("Name:\tenvoy\n"), None);
        let log = "[info] wasm log: key state changed: 2000 keys, 1 JWT keys, version 9\n[info] wasm log: key state adopted: 2000 keys, 1 JWT keys, version 3\nkey state adopted: 0 keys, 1 JWT keys, version 1\nother";
        assert_eq!(adoptions(log, Some(2_000)), 2);
        assert_eq!(adoptions(log, Some(0)), 1);
        assert_eq!(adoptions(log, None), 3);
    }
}
