//! A running stack: the control plane, the upstreams (in-process mocks or real vLLM servers)
//! and Envoy with the filter, started in that order ([`Stack::start`]) and stopped in reverse
//! ([`Stack::stop`]); the control plane can be stopped, killed and started again on the same
//! addresses and database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use gateway_envoy::{GatewaySpec, ModelUpstream};
use gateway_workspace::paths;
use serde_json::Value;

use crate::control_plane::{start_control_plane, ControlPlaneLaunch};
use crate::cp_proxy::ControlPlaneProxy;
use crate::envoy::Envoy;
use crate::options::{FaultKnobs, StackOptions};
use crate::process::ChildGuard;
use crate::upstreams::{start_upstreams, MockUpstream};

/// How long the control plane gets to flush its queue when it is stopped.
const CONTROL_PLANE_GRACE: Duration = Duration::from_secs(10);

/// A running stack; everything stops when it is dropped.
pub struct Stack {
    /// Base URL of the gateway, e.g. `http://127.0.0.1:5000`.
    pub gateway_url: String,
    /// Envoy's admin address.
    pub envoy_admin: SocketAddr,
    /// Control-plane HTTP address.
    pub control_plane: SocketAddr,
    /// The admin token.
    pub admin_token: String,
    /// Every model and the base URL of the server serving it.
    pub models: Vec<(String, String)>,
    /// The mock upstreams (empty with real upstreams).
    pub mocks: Vec<MockUpstream>,
    /// The durable access log Envoy writes and the control plane ingests.
    pub access_log_file: PathBuf,
    pub(crate) http: reqwest::Client,
    pub(crate) envoy: Envoy,
    control_plane_process: ChildGuard,
    control_plane_launch: ControlPlaneLaunch,
    control_plane_proxy: Option<ControlPlaneProxy>,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// Starts everything and waits until the gateway answers.
    pub async fn start(options: StackOptions) -> Result<Stack> {
        Self::start_with(options, FaultKnobs::default()).await
    }

    /// [`Stack::start`] with what a fault test adds.
    pub async fn start_with(options: StackOptions, knobs: FaultKnobs) -> Result<Stack> {
        let dir = tempfile::Builder::new().prefix("vllm-gateway-").tempdir()?;
        let (mocks, models) = start_upstreams(&options.upstreams).await?;
        let model_urls = model_urls(&models);
        let access_log_file =
            options.access_log_file.clone().unwrap_or_else(|| dir.path().join("access-log.jsonl"));
        // The control plane starts first and is told where Envoy's admin will be.
        let admin_port = match options.envoy_admin_port {
            0 => free_port().await?,
            port => port,
        };
        let mut launch =
            control_plane_launch(&options, dir.path(), &access_log_file, admin_port, &model_urls)?;
        let mut control_plane_process = start_pinned(&mut launch).await?;
        let cp_http = launch.http;
        let control_plane_proxy = match knobs.control_plane_proxy {
            true => Some(ControlPlaneProxy::start(cp_http).await?),
            false => None,
        };
        let feed = control_plane_proxy.as_ref().map_or(cp_http, |p| p.addr);
        let spec = gateway_spec(&options, &launch, feed, models, admin_port)?;
        let envoy = start_envoy(
            spec,
            dir.path(),
            &options,
            &knobs,
            &mut control_plane_process,
            &mut launch,
        )
        .await?;
        if control_plane_process.has_exited() {
            bail!("the control plane exited\n{}", control_plane_process.output_text());
        }
        Ok(Stack {
            gateway_url: envoy.gateway_url.clone(),
            envoy_admin: envoy.admin,
            control_plane: cp_http,
            admin_token: options.admin_token,
            models: model_urls,
            mocks,
            access_log_file,
            http: reqwest::Client::new(),
            envoy,
            control_plane_process,
            control_plane_launch: launch,
            control_plane_proxy,
            _dir: dir,
        })
    }

    /// The stack's temp folder (database, configurations, access logs).
    pub(crate) fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// A plain HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The mock serving `model`.
    pub fn mock(&self, model: &str) -> &MockUpstream {
        self.mocks
            .iter()
            .find(|m| m.model == model)
            .unwrap_or_else(|| panic!("no mock for {model}"))
    }

    /// The control plane's gRPC access-log sink.
    pub fn control_plane_als(&self) -> SocketAddr {
        self.control_plane_launch.als
    }

    /// The shared secret of the state feed (and of the access-log stream).
    pub fn state_token(&self) -> &str {
        &self.control_plane_launch.state_token
    }

    /// Everything Envoy printed (its access-log lines included).
    pub fn envoy_output(&self) -> String {
        self.envoy.output_text()
    }

    /// Stops Envoy, then the control plane (which flushes its queue), then the mocks.
    pub async fn stop(mut self) {
        self.envoy.stop().await;
        self.control_plane_process.stop(CONTROL_PLANE_GRACE).await;
        for mock in &mut self.mocks {
            if let Some(stop) = mock.stop.take() {
                let _ = stop.send(());
            }
        }
    }

    /// Stops only the control plane (the gateway keeps serving from its last state).
    pub async fn stop_control_plane(&mut self) {
        self.control_plane_process.stop(CONTROL_PLANE_GRACE).await;
    }

    /// Kills the control plane with SIGKILL: nothing queued is flushed.
    pub async fn kill_control_plane(&mut self) {
        self.control_plane_process.kill().await;
    }

    /// Starts the control plane again, on the same addresses and database, after a stop or a
    /// kill; waits until it listens.
    pub async fn restart_control_plane(&mut self) -> Result<()> {
        let (process, _, _) = start_control_plane(&self.control_plane_launch).await?;
        self.control_plane_process = process;
        Ok(())
    }

    /// Everything the control plane printed (since its last start).
    pub fn control_plane_output(&self) -> String {
        self.control_plane_process.output_text()
    }

    /// The proxy in front of the control plane, when [`FaultKnobs::control_plane_proxy`] asked
    /// for one.
    pub fn control_plane_proxy(&self) -> Option<&ControlPlaneProxy> {
        self.control_plane_proxy.as_ref()
    }

    /// Envoy's whole running configuration (its admin `/config_dump`).
    pub async fn envoy_config_dump(&self) -> Result<Value> {
        let url = format!("http://{}/config_dump", self.envoy_admin);
        Ok(self.http.get(url).send().await?.error_for_status()?.json().await?)
    }

    /// Whether Envoy is up and serving (its admin `/ready` answers 200).
    pub async fn envoy_ready(&self) -> bool {
        let ready = self.http.get(format!("http://{}/ready", self.envoy_admin)).send().await;
        ready.is_ok_and(|r| r.status().is_success())
    }
}

/// Every model and the base URL of the server serving it.
fn model_urls(models: &[ModelUpstream]) -> Vec<(String, String)> {
    models
        .iter()
        .map(|m| {
            let scheme = if m.upstream.tls { "https" } else { "http" };
            (m.name.clone(), format!("{scheme}://{}:{}", m.upstream.host, m.upstream.port))
        })
        .collect()
}

/// How the stack's control plane runs: as `options` say, its database in `dir` unless they name
/// one, a fresh state token, and the Envoy admin at `envoy_admin_port`.
fn control_plane_launch(
    options: &StackOptions,
    dir: &Path,
    access_log_file: &Path,
    envoy_admin_port: u16,
    model_urls: &[(String, String)],
) -> Result<ControlPlaneLaunch> {
    Ok(ControlPlaneLaunch {
        bin: options.control_plane_bin.clone().map_or_else(paths::control_plane_bin, Ok)?,
        http: options.control_plane_http,
        als: options.control_plane_als,
        db: options
            .db
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.join("gateway.db").display())),
        admin_token: options.admin_token.clone(),
        state_token: gateway_os::new_token(),
        access_log_file: access_log_file.to_path_buf(),
        envoy_admin: SocketAddr::from(([127, 0, 0, 1], envoy_admin_port)),
        upstreams: model_urls.to_vec(),
        reconcile_interval_secs: options.reconcile_interval_secs,
        echo: options.echo,
    })
}

/// Starts the control plane of `launch` and pins `launch` to the addresses it bound: a restart
/// binds the same ones (Envoy's clusters point at them).
async fn start_pinned(launch: &mut ControlPlaneLaunch) -> Result<ChildGuard> {
    let (process, http, als) = start_control_plane(launch).await?;
    (launch.http, launch.als) = (http, als);
    Ok(process)
}

/// What the stack's Envoy is rendered from: its state feed at `feed` (the control plane, or a
/// proxy in front of it), the access-log sink and secret of `launch`.
fn gateway_spec(
    options: &StackOptions,
    launch: &ControlPlaneLaunch,
    feed: SocketAddr,
    models: Vec<ModelUpstream>,
    admin_port: u16,
) -> Result<GatewaySpec> {
    Ok(GatewaySpec {
        listen: options.gateway,
        admin_port,
        control_plane_http: feed,
        control_plane_als: launch.als,
        filter: match &options.filter {
            Some(build) => build.clone(),
            None => crate::filter_build::from_env()?,
        },
        models,
        state_token: launch.state_token.clone(),
        state_refresh_ms: options.state_refresh_ms,
        cors_origins: gateway_envoy::DEFAULT_CORS_ORIGINS.iter().map(|o| o.to_string()).collect(),
        default_model: options.default_model.clone(),
        upstream_keys: options.upstream_keys.clone(),
        access_log_file: launch.access_log_file.clone(),
    })
}

/// Starts the stack's Envoy on `spec`. Envoy's admin port was picked before Envoy could bind it
/// (the control plane is told it first): when another process took it meanwhile, a new one is
/// picked and the control plane is started again with it, up to three times.
async fn start_envoy(
    mut spec: GatewaySpec,
    dir: &Path,
    options: &StackOptions,
    knobs: &FaultKnobs,
    control_plane: &mut ChildGuard,
    launch: &mut ControlPlaneLaunch,
) -> Result<Envoy> {
    let (workers, echo, short) = (options.envoy_workers, options.echo, knobs.short_timeouts);
    let mut attempts = 0;
    loop {
        match Envoy::start(spec.clone(), dir.to_path_buf(), workers, echo, short).await {
            Err(e) if attempts < 3 && e.to_string().contains("Address already in use") => {
                attempts += 1;
                spec.admin_port = free_port().await?;
                launch.envoy_admin = SocketAddr::from(([127, 0, 0, 1], spec.admin_port));
                control_plane.stop(Duration::from_secs(5)).await;
                (*control_plane, _, _) = start_control_plane(launch).await?;
            }
            started => return started,
        }
    }
}

/// A port that was free a moment ago on 127.0.0.1 (for a process that cannot report the port it
/// bound before another one needs it).
async fn free_port() -> Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?.port())
}
