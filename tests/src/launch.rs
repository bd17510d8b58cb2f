//! Starting the stack's processes: the control-plane binary (reading the addresses it bound
//! from its ready line), in-process mock upstreams, and Envoy on a rendered configuration
//! (waiting for its admin endpoint and reading the gateway listener's real port).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use gateway_envoy::{GatewaySpec, ModelUpstream};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::process::Command;

use crate::paths;
use crate::process::ChildGuard;
use crate::stack::{MockUpstream, Upstreams};

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How the stack runs its control plane; kept so that it can be started again on the same
/// addresses and database.
#[derive(Debug, Clone)]
pub(crate) struct ControlPlaneLaunch {
    pub bin: PathBuf,
    pub http: SocketAddr,
    pub als: SocketAddr,
    pub db: String,
    pub admin_token: String,
    pub state_token: String,
    /// The durable access log Envoy writes.
    pub access_log_file: PathBuf,
    /// Envoy's admin, for reopening the access log after rotation.
    pub envoy_admin: SocketAddr,
    /// Model → base URL, for reconciliation with vLLM's counters.
    pub upstreams: Vec<(String, String)>,
    /// How often those counters are sampled.
    pub reconcile_interval_secs: u64,
    pub echo: bool,
}

/// Starts the control plane; returns it with the addresses it bound.
pub(crate) async fn start_control_plane(
    launch: &ControlPlaneLaunch,
) -> Result<(ChildGuard, SocketAddr, SocketAddr)> {
    let mut command = Command::new(&launch.bin);
    command
        .arg("--http-addr")
        .arg(launch.http.to_string())
        .arg("--als-addr")
        .arg(launch.als.to_string())
        .arg("--db")
        .arg(&launch.db)
        .arg("--access-log-file")
        .arg(&launch.access_log_file)
        .arg("--envoy-admin")
        .arg(format!("http://{}", launch.envoy_admin))
        .arg("--reconcile-interval-secs")
        .arg(launch.reconcile_interval_secs.to_string())
        .env("GATEWAY_ADMIN_TOKEN", &launch.admin_token)
        .env("GATEWAY_STATE_TOKEN", &launch.state_token)
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info,sqlx=warn".into()));
    for (model, url) in &launch.upstreams {
        command.arg("--upstream").arg(format!("{model}={url}"));
    }
    let mut guard = ChildGuard::spawn("control-plane", command, launch.echo)?;
    let line = guard.wait_for_line("control-plane listening ", START_TIMEOUT).await?;
    let addr = |key: &str| -> Result<SocketAddr> {
        let value = line
            .split_whitespace()
            .find_map(|part| part.strip_prefix(key))
            .ok_or_else(|| anyhow!("no {key} in `{line}`"))?;
        value.parse().with_context(|| format!("bad address in `{line}`"))
    };
    let (http, als) = (addr("http=")?, addr("als=")?);
    Ok((guard, http, als))
}

pub(crate) async fn start_upstreams(
    upstreams: &Upstreams,
) -> Result<(Vec<MockUpstream>, Vec<ModelUpstream>)> {
    let (models, token_delay, split_seed) = match upstreams {
        Upstreams::Real(models) => return Ok((Vec::new(), models.clone())),
        Upstreams::Mock { models, token_delay, split_seed } => (models, *token_delay, *split_seed),
    };
    let mut mocks = Vec::new();
    let mut routes = Vec::new();
    for model in models {
        let listener = mock_listener()?;
        let addr = listener.local_addr()?;
        let state = mock_vllm::MockState::new(mock_vllm::MockConfig {
            models: vec![model.clone()],
            token_delay,
            split_seed,
            ..mock_vllm::MockConfig::default()
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(mock_vllm::serve(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        routes.push(format!("{model}=http://{addr}").parse()?);
        mocks.push(MockUpstream { model: model.clone(), addr, state, stop: Some(stop) });
    }
    Ok((mocks, routes))
}

/// A listener on an ephemeral port of 127.0.0.1 for a mock upstream, with room for a burst of
/// connections (Envoy opens one per concurrent request to an HTTP/1 upstream; a mock that is
/// slow to accept must not make Envoy's connects time out).
fn mock_listener() -> Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(([127, 0, 0, 1], 0).into())?;
    Ok(socket.listen(MOCK_BACKLOG)?)
}

/// Connections a mock upstream's listener queues before it accepts them.
const MOCK_BACKLOG: u32 = 4096;

/// Renders `spec` (its timeouts capped at `short_timeouts`, when given) and starts Envoy on it.
pub(crate) async fn start_envoy(
    spec: &GatewaySpec,
    dir: PathBuf,
    workers: u16,
    echo: bool,
    short_timeouts: Option<Duration>,
) -> Result<(ChildGuard, SocketAddr, SocketAddr)> {
    let config = dir.join("envoy.yaml");
    let mut yaml = gateway_envoy::render(spec)?;
    if let Some(cap) = short_timeouts {
        yaml = crate::timeouts::cap_timeouts(&yaml, cap)?;
    }
    std::fs::write(&config, yaml)?;
    start_envoy_with(&config, dir, spec.listen, workers, echo).await
}

/// Starts Envoy with `workers` worker threads on an already rendered configuration file.
pub async fn start_envoy_with(
    config: &std::path::Path,
    dir: PathBuf,
    listen: SocketAddr,
    workers: u16,
    echo: bool,
) -> Result<(ChildGuard, SocketAddr, SocketAddr)> {
    let admin_path = dir.join("envoy-admin-address");
    let mut command = Command::new(paths::envoy_bin()?);
    command
        .arg("-c")
        .arg(config)
        .arg("--admin-address-path")
        .arg(&admin_path)
        .arg("--disable-hot-restart")
        // The durable access log reaches the disk within a quarter of a second.
        .arg("--file-flush-interval-msec")
        .arg("250")
        .arg("--concurrency")
        .arg(workers.to_string())
        .arg("--log-level")
        .arg("warn")
        .arg("--component-log-level")
        .arg("wasm:info,dynamic_modules:info");
    if let Ok(dir) = paths::native_module_dir() {
        // Where Envoy finds the native module when the configuration names it.
        command.env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", dir);
    }
    let mut envoy = ChildGuard::spawn("envoy", command, echo)?;
    let admin = wait_for_admin(&mut envoy, &admin_path).await?;
    let gateway = wait_for_listener(&mut envoy, admin, listen).await?;
    Ok((envoy, admin, gateway))
}

async fn wait_for_admin(
    envoy: &mut ChildGuard,
    admin_path: &std::path::Path,
) -> Result<SocketAddr> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let client = reqwest::Client::new();
    loop {
        if envoy.has_exited() {
            bail!("Envoy exited during start-up\n{}", envoy.output_text());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("Envoy did not become ready within {START_TIMEOUT:?}\n{}", envoy.output_text());
        }
        if let Ok(text) = std::fs::read_to_string(admin_path) {
            if let Ok(addr) = text.trim().parse::<SocketAddr>() {
                let ready = client.get(format!("http://{addr}/ready")).send().await;
                if ready.is_ok_and(|r| r.status().is_success()) {
                    return Ok(addr);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The gateway listener's real address (it may have been bound to port 0).
async fn wait_for_listener(
    envoy: &mut ChildGuard,
    admin: SocketAddr,
    asked: SocketAddr,
) -> Result<SocketAddr> {
    if asked.port() != 0 {
        return Ok(asked);
    }
    let listeners: Value =
        reqwest::get(format!("http://{admin}/listeners?format=json")).await?.json().await?;
    let address = listeners["listener_statuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["name"] == "gateway")
        .map(|l| &l["local_address"]["socket_address"]);
    let port = address.and_then(|a| a["port_value"].as_u64()).and_then(|p| u16::try_from(p).ok());
    match port {
        Some(port) => Ok(SocketAddr::new(asked.ip(), port)),
        None => bail!("Envoy reported no gateway listener: {listeners}\n{}", envoy.output_text()),
    }
}
