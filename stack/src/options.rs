//! How to start a stack: its addresses, database, tokens, upstreams (mock or real vLLM), the
//! build of the filter, and what a fault test adds ([`FaultKnobs`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gateway_envoy::ModelUpstream;

/// Where model requests go.
#[derive(Debug, Clone)]
pub enum Upstreams {
    /// One in-process mock vLLM per model, each on its own ephemeral port.
    Mock {
        /// Model names.
        models: Vec<String>,
        /// Delay between streamed tokens.
        token_delay: Duration,
        /// Re-cut streamed bodies at pseudo-random byte positions from this seed.
        split_seed: Option<u64>,
    },
    /// Real vLLM servers.
    Real(Vec<ModelUpstream>),
}

/// How to start a stack. [`StackOptions::for_tests`] uses ephemeral ports and a temp database.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Gateway listener (port 0: any free port).
    pub gateway: SocketAddr,
    /// Envoy admin port on 127.0.0.1 (0: any).
    pub envoy_admin_port: u16,
    /// Control-plane HTTP API.
    pub control_plane_http: SocketAddr,
    /// Control-plane access-log sink.
    pub control_plane_als: SocketAddr,
    /// SQLite URL; `None` for a fresh file in the stack's temp folder.
    pub db: Option<String>,
    /// The admin token.
    pub admin_token: String,
    /// Model upstreams.
    pub upstreams: Upstreams,
    /// How often the filter pulls key state.
    pub state_refresh_ms: u64,
    /// Print every process's output live.
    pub echo: bool,
    /// Where `/v1/*` requests without a `model` go.
    pub default_model: Option<String>,
    /// Model → the key its upstream wants.
    pub upstream_keys: std::collections::BTreeMap<String, String>,
    /// The durable access log; `None` for a file in the stack's temp folder.
    pub access_log_file: Option<PathBuf>,
    /// The control-plane binary; `None`: `GATEWAY_CONTROL_PLANE_BIN`, else the debug build
    /// ([`gateway_workspace::paths::control_plane_bin`]).
    pub control_plane_bin: Option<PathBuf>,
    /// How often the control plane samples the upstreams' token counters (reconciliation).
    pub reconcile_interval_secs: u64,
    /// Envoy's worker threads (each has its own wasm VM and key state).
    pub envoy_workers: u16,
    /// The build of the filter Envoy runs; `None`: as `GATEWAY_FILTER_BUILD` says
    /// ([`crate::filter_build::from_env`]).
    pub filter: Option<gateway_envoy::FilterBuild>,
}

impl StackOptions {
    /// Ephemeral loopback ports, a temp database, two mock models (`model-a`, `model-b`).
    pub fn for_tests() -> Self {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        Self {
            gateway: any,
            envoy_admin_port: 0,
            control_plane_http: any,
            control_plane_als: any,
            db: None,
            admin_token: format!("test-admin-{}", gateway_os::new_token()),
            upstreams: Upstreams::Mock {
                models: vec!["model-a".into(), "model-b".into()],
                token_delay: Duration::ZERO,
                split_seed: None,
            },
            state_refresh_ms: 200,
            echo: false,
            default_model: None,
            upstream_keys: Default::default(),
            access_log_file: None,
            control_plane_bin: None,
            reconcile_interval_secs: 1,
            envoy_workers: 2,
            filter: None,
        }
    }
}

/// What the fault tests add to a stack; the default adds nothing (what
/// [`crate::Stack::start`] runs).
#[derive(Debug, Clone, Default)]
pub struct FaultKnobs {
    /// Caps every request and stream timeout the rendered Envoy configuration sets (see
    /// [`crate::timeouts`]), so a test can wait for one to fire.
    pub short_timeouts: Option<Duration>,
    /// Puts a [`crate::ControlPlaneProxy`] between Envoy and the control plane's HTTP API, so a
    /// test can garble the state feed ([`crate::Stack::control_plane_proxy`]).
    pub control_plane_proxy: bool,
}
