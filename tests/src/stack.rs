//! The whole stack: control plane, upstreams (mock or real), Envoy with the filter.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use gateway_envoy::{GatewaySpec, ModelUpstream};
use serde::Deserialize;
use serde_json::Value;

use crate::cp_proxy::ControlPlaneProxy;
use crate::envoy::Envoy;
use crate::launch::{start_control_plane, start_upstreams, ControlPlaneLaunch};
use crate::paths;
use crate::process::ChildGuard;

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
    /// The control-plane binary; `None` for the debug build ([`paths::control_plane_bin`]).
    pub control_plane_bin: Option<PathBuf>,
    /// How often the control plane samples the upstreams' token counters (reconciliation).
    pub reconcile_interval_secs: u64,
    /// Envoy's worker threads (each has its own wasm VM and key state).
    pub envoy_workers: u16,
    /// The build of the filter Envoy runs; `None`: as `GATEWAY_FILTER_BUILD` says
    /// ([`paths::filter_build`]).
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
            admin_token: format!("test-admin-{}", random_hex()),
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

/// What the fault tests add to a stack; the default adds nothing (what [`Stack::start`] runs).
#[derive(Debug, Clone, Default)]
pub struct FaultKnobs {
    /// Caps every request and stream timeout the rendered Envoy configuration sets (see
    /// [`crate::timeouts`]), so a test can wait for one to fire.
    pub short_timeouts: Option<Duration>,
    /// Puts a [`ControlPlaneProxy`] between Envoy and the control plane's HTTP API, so a test
    /// can garble the state feed ([`Stack::control_plane_proxy`]).
    pub control_plane_proxy: bool,
}

/// One in-process mock upstream.
pub struct MockUpstream {
    /// The model it serves.
    pub model: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state: what it has seen.
    pub state: mock_vllm::MockState,
    pub(crate) stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A created app with its key.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApp {
    /// App id.
    pub id: i64,
    /// The plaintext key (shown once).
    pub api_key: String,
}

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
    http: reqwest::Client,
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
        let model_urls: Vec<(String, String)> = models
            .iter()
            .map(|m| {
                let scheme = if m.upstream.tls { "https" } else { "http" };
                (m.name.clone(), format!("{scheme}://{}:{}", m.upstream.host, m.upstream.port))
            })
            .collect();
        let access_log_file =
            options.access_log_file.clone().unwrap_or_else(|| dir.path().join("access-log.jsonl"));
        // The control plane starts first and is told where Envoy's admin will be.
        let admin_port = match options.envoy_admin_port {
            0 => free_port().await?,
            port => port,
        };
        let mut launch = ControlPlaneLaunch {
            bin: options.control_plane_bin.clone().map_or_else(paths::control_plane_bin, Ok)?,
            http: options.control_plane_http,
            als: options.control_plane_als,
            db: options
                .db
                .clone()
                .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("gateway.db").display())),
            admin_token: options.admin_token.clone(),
            state_token: random_hex(),
            access_log_file: access_log_file.clone(),
            envoy_admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            upstreams: model_urls.clone(),
            reconcile_interval_secs: options.reconcile_interval_secs,
            echo: options.echo,
        };
        let (mut control_plane_process, cp_http, cp_als) = start_control_plane(&launch).await?;
        // A restart binds the same addresses: Envoy's clusters point at them.
        (launch.http, launch.als) = (cp_http, cp_als);
        let state_token = launch.state_token.clone();
        let control_plane_proxy = if knobs.control_plane_proxy {
            Some(ControlPlaneProxy::start(cp_http).await?)
        } else {
            None
        };
        let mut spec = GatewaySpec {
            listen: options.gateway,
            admin_port,
            control_plane_http: control_plane_proxy.as_ref().map_or(cp_http, |p| p.addr),
            control_plane_als: cp_als,
            filter: match &options.filter {
                Some(build) => build.clone(),
                None => paths::filter_build()?,
            },
            models,
            state_token,
            state_refresh_ms: options.state_refresh_ms,
            cors_origins: gateway_envoy::DEFAULT_CORS_ORIGINS
                .iter()
                .map(|o| o.to_string())
                .collect(),
            default_model: options.default_model.clone(),
            upstream_keys: options.upstream_keys.clone(),
            access_log_file: access_log_file.clone(),
        };
        let mut attempts = 0;
        let envoy = loop {
            let (workers, echo) = (options.envoy_workers, options.echo);
            match Envoy::start(
                spec.clone(),
                dir.path().to_path_buf(),
                workers,
                echo,
                knobs.short_timeouts,
            )
            .await
            {
                // Envoy's admin port was picked before Envoy could bind it (the control plane is
                // told it first); another process took it meanwhile: pick again, and tell the
                // control plane.
                Err(e) if attempts < 3 && e.to_string().contains("Address already in use") => {
                    attempts += 1;
                    spec.admin_port = free_port().await?;
                    launch.envoy_admin = SocketAddr::from(([127, 0, 0, 1], spec.admin_port));
                    control_plane_process.stop(Duration::from_secs(5)).await;
                    (control_plane_process, _, _) = start_control_plane(&launch).await?;
                }
                started => break started?,
            }
        };
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
    pub(crate) fn dir(&self) -> &std::path::Path {
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

    /// Creates an app through the gateway's `/api/apps` (admin token) and returns its key.
    pub async fn create_app(&self, org_name: &str) -> Result<CreatedApp> {
        let resp = self
            .http
            .post(format!("{}/api/apps", self.gateway_url))
            .bearer_auth(&self.admin_token)
            .json(&serde_json::json!({"orgName": org_name, "remark": "created by the stack"}))
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        if status.as_u16() != 201 {
            bail!("creating an app answered {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// An admin API call through the gateway: `method` on `path` with an optional JSON body;
    /// returns the status and the JSON reply.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.gateway_url))
            .bearer_auth(&self.admin_token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    /// Creates a user through the admin API; returns its id.
    pub async fn create_user(&self, email: &str, password: &str) -> Result<i64> {
        let body = serde_json::json!({"email": email, "password": password});
        let (status, user) = self.admin(reqwest::Method::POST, "/api/users", Some(body)).await?;
        if status != 201 {
            bail!("creating a user answered {status}: {user}");
        }
        user["id"].as_i64().ok_or_else(|| anyhow!("no id in {user}"))
    }

    /// Logs in through the gateway's `/user/user_login`; returns the reply's `data`.
    pub async fn login(&self, email: &str, password: &str) -> Result<Value> {
        let resp = self
            .http
            .post(format!("{}/user/user_login", self.gateway_url))
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await?;
        let status = resp.status();
        let reply: Value = resp.json().await?;
        if !status.is_success() || reply["success"] != true {
            bail!("login answered {status}: {reply}");
        }
        Ok(reply["data"].clone())
    }

    /// Waits until the gateway answers `GET /v1/models` with `token` by `status`.
    pub async fn wait_for_status(&self, token: &str, status: u16) -> Result<Value> {
        let url = format!("{}/v1/models", self.gateway_url);
        let mut last = Value::Null;
        for _ in 0..200 {
            let resp = self.http.get(&url).bearer_auth(token).send().await?;
            let got = resp.status().as_u16();
            last = resp.json().await.unwrap_or(Value::Null);
            if got == status {
                return Ok(last);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(anyhow!("the gateway never answered {status}; last reply: {last}"))
    }

    /// Waits until the filter accepts `api_key` (an API key or a JWT) on `GET /v1/models`.
    pub async fn wait_for_key(&self, api_key: &str) -> Result<()> {
        let url = format!("{}/v1/models", self.gateway_url);
        let mut last = String::new();
        for _ in 0..200 {
            let resp = self.http.get(&url).bearer_auth(api_key).send().await?;
            if resp.status().is_success() {
                return Ok(());
            }
            last = format!("{} {}", resp.status(), resp.text().await.unwrap_or_default());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(anyhow!(
            "the gateway never accepted the new key; last answer: {last}\n{}",
            self.envoy.output_text()
        ))
    }

    /// `GET /api/logs` rows (newest first).
    pub async fn logs(&self) -> Result<Vec<Value>> {
        let page: Value = self
            .http
            .get(format!("{}/api/logs?size=500", self.gateway_url))
            .bearer_auth(&self.admin_token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(page["records"].as_array().cloned().unwrap_or_default())
    }

    /// Every access-log row of a request that started before now (all pages, newest first).
    /// Asked of the control plane directly, with the end of the range fixed, so that the
    /// listing's own requests neither add rows nor shift the pages.
    pub async fn all_logs(&self) -> Result<Vec<Value>> {
        let to = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
        let mut rows = Vec::new();
        for page in 1.. {
            let url =
                format!("http://{}/api/logs?size=500&page={page}&to={to}", self.control_plane);
            let reply: Value = self
                .http
                .get(url)
                .bearer_auth(&self.admin_token)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let records = reply["records"].as_array().cloned().unwrap_or_default();
            let done = records.len() < 500;
            rows.extend(records);
            if done {
                break;
            }
        }
        Ok(rows)
    }

    /// Waits for a log row matching `pred` (the access log is flushed on a short interval).
    pub async fn wait_for_log(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Result<Value> {
        for _ in 0..100 {
            if let Some(row) = self.logs().await?.into_iter().find(|r| pred(r)) {
                return Ok(row);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(anyhow!("no access-log row for {what}; rows: {:#?}", self.logs().await?))
    }

    /// The sum of the samples of metric `name` at the control plane's `/metrics` (every label).
    pub async fn control_plane_metric(&self, name: &str) -> Result<f64> {
        let text = self
            .http
            .get(format!("http://{}/metrics", self.control_plane))
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|l| l.split([' ', '{']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
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
        self.control_plane_process.stop(Duration::from_secs(10)).await;
        for mock in &mut self.mocks {
            if let Some(stop) = mock.stop.take() {
                let _ = stop.send(());
            }
        }
    }

    /// Stops only the control plane (the gateway keeps serving from its last state).
    pub async fn stop_control_plane(&mut self) {
        self.control_plane_process.stop(Duration::from_secs(10)).await;
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

/// A port that was free a moment ago on 127.0.0.1 (for a process that cannot report the port it
/// bound before another one needs it).
async fn free_port() -> Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?.port())
}

/// 128 random bits from the OS, hex: tokens for the stack (`/dev/urandom`; Linux/macOS only).
fn random_hex() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if let Err(e) = read {
        panic!("reading /dev/urandom failed: {e}");
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
