//! Renders the reference Envoy configuration (`envoy/gateway.yaml.tmpl`) for a set of models,
//! ports and paths. `cargo xtask up` and the end-to-end tests both use it, so what the tests run
//! is what users run. The filter's plugin configuration is built from the filter crate's own
//! [`PluginConfig`] type, so the two cannot drift apart.

mod endpoint;
mod upstream;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use vllm_gateway_filter::config::{
    self, ModelRoute, PluginConfig, StateFeed, DEFAULT_CLUSTER_HEADER,
};
use vllm_gateway_filter::record;

pub use endpoint::{Endpoint, EndpointError};
pub use upstream::{ModelUpstream, Upstream, UpstreamError};

/// The template, as shipped.
pub const TEMPLATE: &str = include_str!("../gateway.yaml.tmpl");

/// Why a configuration could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A `--model NAME=URL` that cannot be used.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The same model name twice.
    #[error("model `{0}` is configured twice")]
    DuplicateModel(String),
    /// No model at all.
    #[error("at least one model is required")]
    NoModels,
    /// The plugin configuration is invalid.
    #[error(transparent)]
    Plugin(#[from] vllm_gateway_filter::config::ConfigError),
    /// An upstream key for a model that is not configured.
    #[error("an upstream API key is given for `{0}`, which is not a configured model")]
    UnknownKeyModel(String),
    /// A placeholder the template has that nothing filled.
    #[error("template placeholder left unfilled: {0}")]
    Unfilled(String),
}

/// Everything the rendered configuration depends on.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    /// Where the gateway listens.
    pub listen: SocketAddr,
    /// Envoy's admin port (always on 127.0.0.1; 0 picks a free one).
    pub admin_port: u16,
    /// The control plane's HTTP API.
    pub control_plane_http: SocketAddr,
    /// The control plane's access-log gRPC sink.
    pub control_plane_als: SocketAddr,
    /// The built filter, and which build it is.
    pub filter: FilterBuild,
    /// Model → vLLM base URL.
    pub models: Vec<ModelUpstream>,
    /// The shared secret of the state feed.
    pub state_token: String,
    /// How often the filter pulls the key state.
    pub state_refresh_ms: u64,
    /// Browser origins allowed by CORS (exact matches).
    pub cors_origins: Vec<String>,
    /// Where `/v1/*` requests without a `model` go (must be one of `models`).
    pub default_model: Option<String>,
    /// Model → the key its vLLM server wants (`--api-key`), sent instead of the caller's.
    pub upstream_keys: BTreeMap<String, String>,
    /// Where Envoy writes the durable access log (JSON lines) that the control plane ingests.
    pub access_log_file: PathBuf,
}

/// Which build of the filter Envoy runs (the same plugin configuration either way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterBuild {
    /// The proxy-wasm filter at this path, in V8 (`envoy.filters.http.wasm`).
    Wasm(PathBuf),
    /// The native dynamic module (`envoy.filters.http.dynamic_modules`), `libvllm_gateway_filter.so`
    /// in this folder, which Envoy finds through `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
    Native(PathBuf),
}

/// The name Envoy loads the native module by (`lib<name>.so`): the filter crate's library name,
/// defined with the other facts about the workspace's built artifacts.
pub use gateway_workspace::paths::NATIVE_MODULE_NAME;

/// The Envoy release whose dynamic-module ABI (`v0.2.0`) the native module is written against;
/// no other is supported (Envoy only warns when a module's ABI differs).
pub const NATIVE_ENVOY_RELEASE: &str = "1.40";

impl FilterBuild {
    /// What the build is, in words (`cargo xtask up`'s banner).
    pub fn describe(&self) -> &'static str {
        match self {
            FilterBuild::Wasm(_) => "proxy-wasm filter (V8)",
            FilterBuild::Native(_) => "native dynamic module",
        }
    }

    /// The environment variable Envoy needs to find this build, if any.
    pub fn envoy_env(&self) -> Option<(&'static str, &std::path::Path)> {
        match self {
            FilterBuild::Wasm(_) => None,
            FilterBuild::Native(dir) => Some(("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", dir)),
        }
    }

    /// The HTTP filter entry of the rendered configuration.
    fn yaml(&self, plugin_json: &str) -> String {
        let config = plugin_json.replace('\'', "''");
        match self {
            FilterBuild::Wasm(path) => WASM_FILTER
                .replace("{{WASM_PATH}}", &yaml_double_quoted(&path.to_string_lossy()))
                .replace("{{PLUGIN_CONFIG}}", &config),
            FilterBuild::Native(_) => NATIVE_FILTER
                .replace("{{MODULE}}", NATIVE_MODULE_NAME)
                .replace("{{PLUGIN_CONFIG}}", &config),
        }
    }
}

const WASM_FILTER: &str = r#"          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: vllm_gateway
                root_id: vllm_gateway
                allow_on_headers_stop_iteration: true
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '{{PLUGIN_CONFIG}}'
                vm_config:
                  vm_id: vllm_gateway
                  runtime: envoy.wasm.runtime.v8
                  code:
                    local: { filename: "{{WASM_PATH}}" }"#;

const NATIVE_FILTER: &str = r#"          - name: envoy.filters.http.dynamic_modules
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config:
                name: {{MODULE}}
                do_not_close: true
                metrics_namespace: vllm_gateway
              filter_name: vllm_gateway
              filter_config:
                "@type": type.googleapis.com/google.protobuf.StringValue
                value: '{{PLUGIN_CONFIG}}'"#;

/// Envoy's heap cap in the rendered configuration (the overload manager's `fixed_heap`).
pub const MAX_HEAP_BYTES: u64 = 1 << 30;
/// Most downstream connections the rendered Envoy holds at once.
pub const MAX_CONNECTIONS: u64 = 10_000;

/// The CORS allow-list of the replaced system, the default.
pub const DEFAULT_CORS_ORIGINS: [&str; 2] = ["http://localhost:5173", "http://127.0.0.1:5173"];

/// The cluster name of the `index`-th model: only `[a-z0-9_]`, unique by its index.
pub fn cluster_name(index: usize, model: &str) -> String {
    let clean: String = model
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .take(40)
        .collect();
    format!("model_{index}_{clean}")
}

/// The filter's plugin configuration for a spec.
pub fn plugin_config(spec: &GatewaySpec) -> Result<PluginConfig, RenderError> {
    if spec.models.is_empty() {
        return Err(RenderError::NoModels);
    }
    let mut models = BTreeMap::new();
    for (i, m) in spec.models.iter().enumerate() {
        let api_key = spec.upstream_keys.get(&m.name).cloned();
        let route = ModelRoute { cluster: cluster_name(i, &m.name), api_key };
        if models.insert(m.name.clone(), route).is_some() {
            return Err(RenderError::DuplicateModel(m.name.clone()));
        }
    }
    let config = PluginConfig {
        models,
        state: StateFeed {
            cluster: "control_plane".to_owned(),
            authority: "control-plane".to_owned(),
            path: vllm_gateway_filter::feed::STATE_PATH.to_owned(),
            token: spec.state_token.clone(),
            refresh_ms: spec.state_refresh_ms,
            timeout_ms: 2000,
            long_poll_ms: config::DEFAULT_LONG_POLL_MS,
            lookup_negative_ttl_ms: config::DEFAULT_LOOKUP_NEGATIVE_TTL_MS,
            lookups_per_second: config::DEFAULT_LOOKUPS_PER_SECOND,
        },
        max_request_body_bytes: vllm_gateway_filter::config::DEFAULT_MAX_REQUEST_BODY_BYTES,
        max_buffered_request_bytes: vllm_gateway_filter::config::DEFAULT_MAX_BUFFERED_REQUEST_BYTES,
        cluster_header: DEFAULT_CLUSTER_HEADER.to_owned(),
        usage_injection: Default::default(),
        endpoints: vllm_gateway_filter::config::default_endpoints(),
        default_model: spec.default_model.clone(),
        limits: Default::default(),
    };
    if let Some(model) = spec.upstream_keys.keys().find(|m| !config.models.contains_key(*m)) {
        return Err(RenderError::UnknownKeyModel(model.clone()));
    }
    config.validate()?;
    Ok(config)
}

/// Renders the Envoy configuration for a spec.
pub fn render(spec: &GatewaySpec) -> Result<String, RenderError> {
    render_with_control_plane(spec, &spec.control_plane_http.into(), &spec.control_plane_als.into())
}

/// Renders the Envoy configuration for a spec whose control plane is reached by host name (such
/// as `control-plane:8081` in docker-compose); `spec.control_plane_http`/`_als` are ignored.
pub fn render_with_control_plane(
    spec: &GatewaySpec,
    http: &Endpoint,
    als: &Endpoint,
) -> Result<String, RenderError> {
    let plugin = plugin_config(spec)?;
    let plugin_json = serde_json::to_string(&plugin).unwrap_or_default();
    let clusters: Vec<String> = spec
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| upstream::cluster_yaml(&cluster_name(i, &m.name), &m.upstream))
        .collect();
    let values = [
        ("ADMIN_PORT", spec.admin_port.to_string()),
        ("LISTEN_ADDRESS", spec.listen.ip().to_string()),
        ("GATEWAY_PORT", spec.listen.port().to_string()),
        ("BUFFER_LIMIT_BYTES", (plugin.max_request_body_bytes + 1024 * 1024).to_string()),
        ("MAX_BODY_BYTES", plugin.max_request_body_bytes.to_string()),
        ("MAX_HEAP_BYTES", MAX_HEAP_BYTES.to_string()),
        ("MAX_CONNECTIONS", MAX_CONNECTIONS.to_string()),
        ("STATE_TOKEN", yaml_double_quoted(&plugin.state.token)),
        ("CLUSTER_HEADER", plugin.cluster_header.clone()),
        ("ACCESS_LOG_BATCH_BYTES", record::ACCESS_LOG_BATCH_BYTES.to_string()),
        ("GATEWAY_FILTER", spec.filter.yaml(&plugin_json)),
        ("ACCESS_LOG_FILE", yaml_double_quoted(&spec.access_log_file.to_string_lossy())),
        ("CONTROL_PLANE_HTTP_HOST", http.host.clone()),
        ("CONTROL_PLANE_HTTP_PORT", http.port.to_string()),
        ("CONTROL_PLANE_HTTP_TYPE", http.cluster_type().to_owned()),
        ("CONTROL_PLANE_ALS_HOST", als.host.clone()),
        ("CONTROL_PLANE_ALS_PORT", als.port.to_string()),
        ("CONTROL_PLANE_ALS_TYPE", als.cluster_type().to_owned()),
        ("MODEL_CLUSTERS", clusters.join("")),
        ("CORS_ORIGINS", cors_origins_yaml(&spec.cors_origins)),
    ];
    let mut out = TEMPLATE.to_owned();
    for (key, value) in values {
        out = out.replace(&format!("{{{{{key}}}}}"), &value);
    }
    match out.lines().find(|l| l.contains("{{")) {
        Some(line) => Err(RenderError::Unfilled(line.trim().to_owned())),
        None => Ok(out),
    }
}

fn cors_origins_yaml(origins: &[String]) -> String {
    if origins.is_empty() {
        // Nothing allowed: a match no origin can have.
        return "                  - exact: \"\"".to_owned();
    }
    origins
        .iter()
        .map(|o| format!("                  - exact: \"{}\"", yaml_double_quoted(o)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn yaml_double_quoted(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests;
