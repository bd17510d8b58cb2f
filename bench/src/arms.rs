//! The side-by-side arms: one control plane, one mock vLLM, and Envoys from the same binary on
//! the same rendered configuration: one with the wasm filter, one without it (the filter removed
//! and `/v1/` routed straight to the model's cluster), one with the minimal floor filter
//! ([`crate::floor`]) and one with the native dynamic module. The scenarios alternate two arms
//! (ABBA) so that machine noise hits both.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use gateway_envoy::{FilterBuild, GatewaySpec};
use gateway_stack::process::ChildGuard;
use gateway_workspace::paths;
use serde_json::{json, Value};
use vllm_gateway_filter::config::DEFAULT_CLUSTER_HEADER;

use crate::cp::ControlPlane;
use crate::cpu::Processes;
use crate::wrk::Load;

/// The model the mock serves and every request asks for.
pub const MODEL: &str = "bench-model";

/// Every limit of the limited app, far beyond what a run can use (a lease is an eighth of it:
/// one lease call per limit and window).
const HUGE: i64 = 1_000_000_000_000;

/// One arm: the base URL of its Envoy's gateway listener and the processes a request goes
/// through.
#[derive(Debug, Clone)]
pub struct Arm {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its Envoy and the control plane.
    pub processes: Processes,
}

/// The running arms.
pub struct Arms {
    /// Envoy with the wasm filter.
    pub filtered: Arm,
    /// The same Envoy configuration without the filter (router only).
    pub plain: Arm,
    /// Envoy with the minimal body-routing filter (see [`crate::floor`]).
    pub floor: Arm,
    /// Envoy with the native dynamic module in place of the wasm filter.
    pub native: Arm,
    /// The mock's own URL (the peer arm, [`crate::peers`], goes straight to it).
    pub mock: String,
    /// The key of an app without limits.
    pub api_key: String,
    /// The key of an app with limits so generous they never refuse (see [`crate::limits`]).
    pub limited_key: String,
    /// The mock's state (to pace its streams like a real server).
    pub mock_state: mock_vllm::MockState,
    _envoys: [ChildGuard; 4],
    _mock_stop: tokio::sync::oneshot::Sender<()>,
}

impl Arms {
    /// Starts the mock and the four Envoys next to `cp`, and waits until the filters accept the
    /// keys.
    pub async fn start(cp: &ControlPlane, dir: &Path) -> Result<Arms> {
        let (mock, mock_state, mock_stop) = start_mock().await?;
        let [with, without, floor, native] = configs(cp, dir, mock)?;
        let control_plane = cp.pid().context("the control plane has exited")?;
        let (filtered, filtered_envoy) =
            start_arm(dir, "with-filter", &with, control_plane).await?;
        let (plain, plain_envoy) =
            start_arm(dir, "without-filter", &without, control_plane).await?;
        let (floor, floor_envoy) = start_arm(dir, "floor-filter", &floor, control_plane).await?;
        let (native, native_envoy) =
            start_arm(dir, "native-filter", &native, control_plane).await?;
        let api_key = cp.create_app_key().await?;
        let limited_key = cp.create_limited_app_key(generous_limits()).await?;
        for (arm, key) in [(&filtered, &api_key), (&filtered, &limited_key), (&native, &api_key)] {
            gateway_stack::envoy::wait_for_key(&arm.url, key).await?;
        }
        Ok(Arms {
            filtered,
            plain,
            floor,
            native,
            mock: format!("http://{mock}"),
            api_key,
            limited_key,
            mock_state,
            _envoys: [filtered_envoy, plain_envoy, floor_envoy, native_envoy],
            _mock_stop: mock_stop,
        })
    }

    /// A load on `base` with the plain app's key (the plain arm gets the same header: same bytes
    /// on the wire, nobody reads it).
    pub fn load(&self, base: &str, body: &str) -> Load {
        self.load_as(base, body, &self.api_key)
    }

    /// A load on `base` sending `key`.
    pub fn load_as(&self, base: &str, body: &str, key: &str) -> Load {
        Load {
            url: format!("{base}/v1/chat/completions"),
            method: "POST",
            body: Some(body.into()),
            bearer: Some(key.to_owned()),
        }
    }
}

/// Limits of every kind that never refuse a bench run.
pub fn generous_limits() -> Value {
    json!({"requestsPerMinute": HUGE, "tokensPerMinute": HUGE, "concurrentRequests": HUGE, "tokensPerDay": HUGE, "tokensPerMonth": HUGE})
}

/// A chat completion for [`MODEL`], streamed or not, of at most `max_tokens`.
pub fn chat_body(stream: bool, max_tokens: u32) -> String {
    json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say something about gateways."}],
        "max_tokens": max_tokens,
        "stream": stream,
    })
    .to_string()
}

/// The four arms' configurations, rendered from one template: with the wasm filter, without a
/// filter, with the floor filter, with the native module.
fn configs(cp: &ControlPlane, dir: &Path, mock: SocketAddr) -> Result<[String; 4]> {
    let spec = GatewaySpec {
        listen: ([127, 0, 0, 1], 0).into(),
        admin_port: 0,
        control_plane_http: cp.http,
        control_plane_als: cp.als,
        filter: FilterBuild::Wasm(paths::filter_wasm()?),
        models: vec![format!("{MODEL}=http://{mock}").parse()?],
        state_token: cp.state_token.clone(),
        state_refresh_ms: 1000,
        cors_origins: gateway_envoy::DEFAULT_CORS_ORIGINS.iter().map(|o| o.to_string()).collect(),
        default_model: None,
        upstream_keys: Default::default(),
        access_log_file: dir.join("access.jsonl"),
    };
    let with_filter = gateway_envoy::render(&spec)?;
    let cluster = gateway_envoy::cluster_name(0, MODEL);
    let without_filter = strip_filter(&with_filter, &cluster)?;
    let floor_wasm = crate::floor::build(DEFAULT_CLUSTER_HEADER, &cluster)
        .context("building the floor filter")?;
    let native_dir = paths::native_module_dir()?;
    let native = gateway_envoy::render(&GatewaySpec {
        filter: FilterBuild::Native(native_dir),
        ..spec.clone()
    })?;
    let floor =
        gateway_envoy::render(&GatewaySpec { filter: FilterBuild::Wasm(floor_wasm), ..spec })?;
    Ok([with_filter, without_filter, floor, native])
}

/// The same configuration without the wasm filter: the filter's block is cut out and the `/v1/`
/// route goes to `cluster` instead of the cluster header the filter would have set.
pub fn strip_filter(config: &str, cluster: &str) -> Result<String> {
    let start = config
        .find("          - name: envoy.filters.http.wasm")
        .context("no wasm filter in the rendered config")?;
    let end = config[start..]
        .find("          - name: envoy.filters.http.router")
        .context("no router after the wasm filter")?
        + start;
    let mut out = format!("{}{}", &config[..start], &config[end..]);
    let header_route =
        out.find("cluster_header:").context("no cluster_header route in the rendered config")?;
    let line_end =
        out[header_route..].find('\n').context("unterminated route line")? + header_route;
    out.replace_range(header_route..line_end, &format!("cluster: {cluster}"));
    Ok(out)
}

/// The mock vLLM serving [`MODEL`] in this process, until the returned sender is dropped.
async fn start_mock() -> Result<(SocketAddr, mock_vllm::MockState, tokio::sync::oneshot::Sender<()>)>
{
    // TCP_NODELAY on the listener is inherited by accepted sockets (Linux): without it, Nagle on
    // the mock's small SSE writes meets Envoy's delayed ACKs and stalls streams by ~40 ms, in
    // whichever arm it happens to hit, which would measure the kernel rather than the filter.
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_nodelay(true)?;
    socket.bind(([127, 0, 0, 1], 0).into())?;
    let listener = socket.listen(1024)?;
    let addr = listener.local_addr()?;
    let state = mock_vllm::MockState::new(mock_vllm::MockConfig {
        models: vec![MODEL.into()],
        ..Default::default()
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(mock_vllm::serve(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    Ok((addr, state, stop))
}

/// Envoy with two workers on `config`, in its own folder `name` under `dir`.
async fn start_arm(
    dir: &Path,
    name: &str,
    config: &str,
    control_plane: u32,
) -> Result<(Arm, ChildGuard)> {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub)?;
    let path = sub.join("envoy.yaml");
    std::fs::write(&path, config)?;
    let (envoy, _admin, listener) =
        gateway_stack::start_envoy_with(&path, sub, ([127, 0, 0, 1], 0).into(), 2, false).await?;
    let pid = envoy.pid().with_context(|| format!("the {name} Envoy has exited"))?;
    let arm = Arm {
        url: format!("http://{listener}"),
        processes: Processes { envoy: pid, control_plane },
    };
    Ok((arm, envoy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_config_has_no_filter_and_a_fixed_cluster() {
        let spec = GatewaySpec {
            listen: ([127, 0, 0, 1], 0).into(),
            admin_port: 0,
            control_plane_http: ([127, 0, 0, 1], 1).into(),
            control_plane_als: ([127, 0, 0, 1], 2).into(),
            filter: FilterBuild::Wasm("/x.wasm".into()),
            models: vec!["m=http://127.0.0.1:3".parse().unwrap()],
            state_token: "t".repeat(32),
            state_refresh_ms: 1000,
            cors_origins: vec![],
            default_model: None,
            upstream_keys: Default::default(),
            access_log_file: "/tmp/access.jsonl".into(),
        };
        let config = gateway_envoy::render(&spec).unwrap();
        let plain = strip_filter(&config, "the_cluster").unwrap();
        assert!(!plain.contains("envoy.filters.http.wasm"));
        assert!(!plain.contains("cluster_header"));
        assert!(plain.contains("cluster: the_cluster"));
        assert!(
            plain.contains("envoy.filters.http.router")
                && plain.contains("envoy.filters.http.cors")
        );
    }
}
