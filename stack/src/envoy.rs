//! One Envoy of a stack: the configuration it was rendered from, its process and its addresses.
//! A stack runs one ([`Stack::start`]); a test can put more in front of the same control plane
//! and upstreams ([`Stack::start_second_envoy`]: same filter, same state feed, its own ports and
//! access-log file), and stop and start any of them again on the same addresses
//! ([`Envoy::restart`]). Each Envoy's filter is a fresh instance (its own lease of every limit).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use gateway_envoy::GatewaySpec;

use crate::envoy_process::start_envoy;
use crate::process::ChildGuard;
use crate::stack::Stack;

/// How long a stopped Envoy gets to drain before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long a key may take to reach an Envoy's filter.
const KEY_WAIT: Duration = Duration::from_secs(20);

/// A running Envoy with the filter; killed when dropped.
pub struct Envoy {
    /// Base URL of its gateway listener, e.g. `http://127.0.0.1:5000`.
    pub gateway_url: String,
    /// Its admin address (`/stats/prometheus`, `/ready`, …).
    pub admin: SocketAddr,
    process: ChildGuard,
    spec: GatewaySpec,
    dir: PathBuf,
    workers: u16,
    echo: bool,
    short_timeouts: Option<Duration>,
    /// The folder of an Envoy started beside the stack's own (removed with it).
    _own_dir: Option<tempfile::TempDir>,
}

impl Envoy {
    /// Renders `spec` into `dir` and starts Envoy on it with `workers` worker threads (its
    /// configured timeouts capped at `short_timeouts`, when given).
    pub(crate) async fn start(
        spec: GatewaySpec,
        dir: PathBuf,
        workers: u16,
        echo: bool,
        short_timeouts: Option<Duration>,
    ) -> Result<Envoy> {
        let (process, admin, gateway) =
            start_envoy(&spec, dir.clone(), workers, echo, short_timeouts).await?;
        Ok(Envoy {
            gateway_url: format!("http://{gateway}"),
            admin,
            process,
            spec,
            dir,
            workers,
            echo,
            short_timeouts,
            _own_dir: None,
        })
    }

    /// The durable access log it writes (JSON lines).
    pub fn access_log_file(&self) -> &Path {
        &self.spec.access_log_file
    }

    /// Stops it (SIGTERM, then SIGKILL after a grace period).
    pub async fn stop(&mut self) {
        self.process.stop(STOP_GRACE).await;
    }

    /// Kills it at once (SIGKILL: nothing flushed, nothing given back).
    pub async fn kill(&mut self) {
        self.process.kill().await;
    }

    /// Stops it if it runs, then starts it again on the same ports, configuration and access-log
    /// file; waits until it is ready.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await;
        let gateway: SocketAddr = self.gateway_url.trim_start_matches("http://").parse()?;
        self.spec.listen = gateway;
        self.spec.admin_port = self.admin.port();
        // The new process writes its own admin address; a stale one would be read first.
        let _ = std::fs::remove_file(self.dir.join("envoy-admin-address"));
        let (process, admin, _) =
            start_envoy(&self.spec, self.dir.clone(), self.workers, self.echo, self.short_timeouts)
                .await?;
        (self.process, self.admin) = (process, admin);
        Ok(())
    }

    /// Whether it is up and serving (its admin `/ready` answers 200).
    pub async fn ready(&self) -> bool {
        let ready = reqwest::get(format!("http://{}/ready", self.admin)).await;
        ready.is_ok_and(|r| r.status().is_success())
    }

    /// Its Prometheus exposition (admin `/stats/prometheus`), see [`prometheus`].
    pub async fn prometheus(&self) -> Result<String> {
        prometheus(self.admin).await
    }

    /// Waits until its filter accepts `token` (an API key or a JWT), see [`wait_for_key`]; the
    /// error carries what Envoy printed too.
    pub async fn wait_for_key(&self, token: &str) -> Result<()> {
        wait_for_key(&self.gateway_url, token)
            .await
            .map_err(|e| anyhow!("{e:#}\n{}", self.output_text()))
    }

    /// Everything it printed (since its last start).
    pub fn output_text(&self) -> String {
        self.process.output_text()
    }
}

impl Stack {
    /// Starts another Envoy in front of the same control plane and upstreams: the same filter
    /// and configuration, its own gateway and admin ports (any free ones) and its own
    /// access-log file (its rows reach the control plane through the access-log stream; the
    /// control plane tails only the first Envoy's file). Killed when the returned guard drops.
    pub async fn start_second_envoy(&self) -> Result<Envoy> {
        let own = tempfile::Builder::new().prefix("envoy-").tempdir_in(self.dir())?;
        let mut spec = self.envoy.spec.clone();
        spec.listen = SocketAddr::new(spec.listen.ip(), 0);
        spec.admin_port = 0;
        spec.access_log_file = own.path().join("access-log.jsonl");
        let (workers, echo, short) =
            (self.envoy.workers, self.envoy.echo, self.envoy.short_timeouts);
        let mut envoy = Envoy::start(spec, own.path().to_path_buf(), workers, echo, short)
            .await
            .context("starting a second Envoy")?;
        envoy._own_dir = Some(own);
        Ok(envoy)
    }

    /// The stack's own Envoy.
    pub fn envoy(&self) -> &Envoy {
        &self.envoy
    }

    /// Stops the stack's Envoy and starts it again on the same addresses (a fresh filter
    /// instance: its leases and in-memory state are gone); waits until it is ready.
    pub async fn restart_envoy(&mut self) -> Result<()> {
        self.envoy.restart().await
    }
}

/// The Prometheus exposition of the Envoy whose admin is `admin`, with the filter's metrics
/// under one name whichever build runs: Envoy names a dynamic module's metrics
/// `envoy_<namespace>_<name>` (`envoy_vllm_gateway_requests_total`) where the wasm filter's are
/// `vllm_gateway_requests_total`; the README says so, and the tests read both as the latter.
pub async fn prometheus(admin: SocketAddr) -> Result<String> {
    let url = format!("http://{admin}/stats/prometheus");
    let text = reqwest::get(url).await?.error_for_status()?.text().await?;
    Ok(text.replace("envoy_vllm_gateway_", "vllm_gateway_"))
}

/// Waits until the filter of the Envoy at `gateway_url` accepts `token` (an API key or a JWT) on
/// `GET /v1/models`, for at most 20 s; the error carries the last answer.
pub async fn wait_for_key(gateway_url: &str, token: &str) -> Result<()> {
    let url = format!("{gateway_url}/v1/models");
    let client = reqwest::Client::new();
    let what = format!("the key reaching {gateway_url}");
    crate::eventually(&what, KEY_WAIT, || async {
        let resp = client.get(&url).bearer_auth(token).send().await?;
        let status = resp.status();
        anyhow::ensure!(status.is_success(), "last answer: {status} {}", resp.text().await?);
        Ok(Some(()))
    })
    .await
}
