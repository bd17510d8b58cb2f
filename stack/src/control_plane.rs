//! The control-plane process of a stack: how it is started (kept, so that it can be started
//! again on the same addresses and database) and the addresses it reports when it listens.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio::process::Command;

use crate::process::ChildGuard;

/// How long the control plane may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What the control plane prints once it listens, before the addresses it bound
/// (`http=… als=…`).
pub const LISTENING_LINE: &str = "control-plane listening ";

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
    let mut guard = ChildGuard::spawn("control-plane", command(launch), launch.echo)?;
    let (http, als) = wait_until_listening(&mut guard).await?;
    Ok((guard, http, als))
}

/// The control plane's command line and environment for `launch`.
fn command(launch: &ControlPlaneLaunch) -> Command {
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
    command
}

/// Waits for a started control plane's [`LISTENING_LINE`]; returns its HTTP and access-log
/// addresses.
pub async fn wait_until_listening(
    control_plane: &mut ChildGuard,
) -> Result<(SocketAddr, SocketAddr)> {
    let line = control_plane.wait_for_line(LISTENING_LINE, START_TIMEOUT).await?;
    Ok((bound_address(&line, "http=")?, bound_address(&line, "als=")?))
}

/// The address after `key` in the rest of a listening line.
fn bound_address(line: &str, key: &str) -> Result<SocketAddr> {
    let value = line
        .split_whitespace()
        .find_map(|part| part.strip_prefix(key))
        .ok_or_else(|| anyhow!("no {key} in `{line}`"))?;
    value.parse().with_context(|| format!("bad address in `{line}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_names_both_addresses() {
        let line = "http=127.0.0.1:8081 als=127.0.0.1:8082 admin=127.0.0.1:9";
        assert_eq!(bound_address(line, "http=").unwrap().port(), 8081);
        assert_eq!(bound_address(line, "als=").unwrap().port(), 8082);
        assert!(bound_address("http=nowhere", "http=").is_err());
        assert!(bound_address(line, "grpc=").is_err());
    }
}
