//! Starting an Envoy process on a rendered configuration: its command line (the native module's
//! folder on its search path), then waiting for its admin endpoint and reading the gateway
//! listener's real port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use gateway_envoy::GatewaySpec;
use gateway_workspace::paths;
use serde_json::Value;
use tokio::process::Command;

use crate::process::ChildGuard;

/// How long Envoy may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

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
    config: &Path,
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

async fn wait_for_admin(envoy: &mut ChildGuard, admin_path: &Path) -> Result<SocketAddr> {
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
