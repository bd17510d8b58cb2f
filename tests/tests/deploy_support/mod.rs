//! What the deployment-config tests share: reading the shipped files, the compose rendering of
//! the template, `envoy --mode validate` with the built filter, and small YAML accessors.
#![allow(dead_code)] // each test binary uses a part

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use gateway_envoy::{Endpoint, GatewaySpec, DEFAULT_CORS_ORIGINS};
use gateway_workspace::paths;
use serde::Deserialize;
use serde_yaml::Value;
use vllm_gateway_filter::config::PluginConfig;

pub const COMPOSE_ENVOY: &str = "envoy/compose/envoy.yaml";
pub const EXISTING_ENVOY: &str = "envoy/examples/existing-envoy.yaml";
/// The native module's filter block, in place of the wasm filter of [`EXISTING_ENVOY`].
pub const NATIVE_FILTER: &str = "envoy/examples/native-filter.yaml";
/// What the compose config holds in place of the state token; `envoy/compose/start.sh`
/// replaces it with the token the control plane generated.
pub const COMPOSE_STATE_TOKEN_PLACEHOLDER: &str = "__GATEWAY_STATE_TOKEN__";
/// Where the compose stack's Envoy writes the durable access log (a volume the control plane
/// also mounts).
pub const COMPOSE_ACCESS_LOG: &str = "/var/log/vllm-gateway/access.jsonl";
pub const GENERATED_HEADER: &str = "# GENERATED from envoy/gateway.yaml.tmpl for docker-compose.yml by tests/tests/deploy_configs.rs;\n# do not edit: change the test's compose_spec() and run it with UPDATE_DEPLOY_CONFIGS=1.\n";

pub fn root() -> PathBuf {
    paths::workspace_root()
}

pub fn read(rel: &str) -> Result<String> {
    std::fs::read_to_string(root().join(rel)).with_context(|| format!("reading {rel}"))
}

pub fn yaml(rel: &str) -> Result<Value> {
    serde_yaml::from_str(&read(rel)?).with_context(|| format!("parsing {rel}"))
}

pub fn yaml_docs(rel: &str) -> Result<Vec<Value>> {
    let text = read(rel)?;
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).with_context(|| format!("parsing {rel}")))
        .collect()
}

pub fn str_of<'a>(v: &'a Value, what: &str) -> Result<&'a str> {
    v.as_str().ok_or_else(|| anyhow!("{what} is not a string: {v:?}"))
}

/// The Envoy config docker-compose.yml runs: the template rendered for the compose services.
pub fn compose_spec() -> GatewaySpec {
    GatewaySpec {
        listen: "0.0.0.0:5000".parse().expect("address"),
        admin_port: 9901,
        // Replaced by host names in `render_compose`.
        control_plane_http: "127.0.0.1:8081".parse().expect("address"),
        control_plane_als: "127.0.0.1:8082".parse().expect("address"),
        filter: gateway_envoy::FilterBuild::Wasm("/etc/envoy/vllm_gateway_filter.wasm".into()),
        models: [
            "mock-qwen3-32b=http://mock-vllm:8000",
            "mock-llama-3.3-70b=http://mock-vllm:8000",
        ]
        .iter()
        .map(|m| m.parse().expect("model"))
        .collect(),
        state_token: COMPOSE_STATE_TOKEN_PLACEHOLDER.into(),
        state_refresh_ms: 1000,
        cors_origins: DEFAULT_CORS_ORIGINS.iter().map(|o| o.to_string()).collect(),
        default_model: None,
        upstream_keys: BTreeMap::new(),
        access_log_file: COMPOSE_ACCESS_LOG.into(),
    }
}

pub fn render_compose() -> Result<String> {
    let http: Endpoint = "control-plane:8081".parse()?;
    let als: Endpoint = "control-plane:8082".parse()?;
    Ok(format!(
        "{GENERATED_HEADER}{}",
        gateway_envoy::render_with_control_plane(&compose_spec(), &http, &als)?
    ))
}

/// `existing-envoy.yaml` with its wasm filter replaced by the native module's block of
/// `native-filter.yaml`.
pub fn with_native_filter(existing: &str, native: &str) -> Result<String> {
    let block = |text: &str, part: &str| -> Result<(usize, usize)> {
        let begin = text
            .find(&format!("          # --- vllm-gateway: begin {part} ---"))
            .ok_or_else(|| anyhow!("no begin {part}"))?;
        let end_marker = format!("# --- vllm-gateway: end {part} ---");
        let end =
            text.find(&end_marker).ok_or_else(|| anyhow!("no end {part}"))? + end_marker.len();
        Ok((begin, end))
    };
    let (b, e) = block(existing, "http_filter")?;
    let (nb, ne) = block(native, "native_http_filter")?;
    Ok(format!("{}{}{}", &existing[..b], &native[nb..ne], &existing[e..]))
}

/// Runs `envoy --mode validate` on `config` with the native module (found through
/// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`, as the guide says).
pub fn envoy_validate_native(config: &str, name: &str) -> Result<()> {
    validate(config, name, Some(paths::native_module_dir()?))
}

/// Runs `envoy --mode validate` on `config` with every `filename:` of a `.wasm` replaced by the
/// built filter and every `.jsonl` access-log path by a temp file (validation opens it); the
/// error carries Envoy's output.
pub fn envoy_validate(config: &str, name: &str) -> Result<()> {
    validate(config, name, None)
}

fn validate(config: &str, name: &str, native: Option<std::path::PathBuf>) -> Result<()> {
    let wasm = paths::filter_wasm()?;
    let local = serde_yaml::to_string(&wasm.to_string_lossy().into_owned())?;
    let mut replaced = 0;
    let text: Vec<String> = config
        .lines()
        .map(|line| match line.find("filename: \"") {
            Some(at) if line.contains(".wasm\"") => {
                replaced += 1;
                let end = line[at..].find(" }").map(|e| at + e).unwrap_or(line.len());
                format!("{}filename: {}{}", &line[..at], local.trim(), &line[end..])
            }
            _ => line.to_owned(),
        })
        .collect();
    if replaced == 0 && native.is_none() {
        bail!("{name}: no wasm filename to replace");
    }
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("access.jsonl");
    let text: Vec<String> = text
        .into_iter()
        .map(|line| match line.find("path: ") {
            Some(at) if line.trim_end_matches('"').ends_with(".jsonl") => {
                format!("{}path: \"{}\"", &line[..at], log.display())
            }
            _ => line,
        })
        .collect();
    let path = dir.path().join(name);
    std::fs::write(&path, text.join("\n"))?;
    let mut envoy = std::process::Command::new(paths::envoy_bin()?);
    envoy
        .args(["--mode", "validate", "--disable-hot-restart", "--log-level", "warn", "-c"])
        .arg(&path);
    if let Some(dir) = native {
        envoy.env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", dir);
    }
    let out = envoy.output()?;
    if !out.status.success() {
        bail!(
            "Envoy refused {name}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The HTTP connection manager of the first listener.
pub fn hcm(envoy: &Value) -> &Value {
    &envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
}

pub fn listener_filters(envoy: &Value) -> Result<&Vec<Value>> {
    hcm(envoy)["http_filters"]
        .as_sequence()
        .ok_or_else(|| anyhow!("no http_filters in the first listener"))
}

pub fn wasm_filter(envoy: &Value) -> Result<&Value> {
    listener_filters(envoy)?
        .iter()
        .find(|f| f["name"].as_str() == Some("envoy.filters.http.wasm"))
        .map(|f| &f["typed_config"]["config"])
        .ok_or_else(|| anyhow!("no wasm filter"))
}

pub fn plugin_config_of(envoy: &Value) -> Result<PluginConfig> {
    let json = str_of(&wasm_filter(envoy)?["configuration"]["value"], "the plugin configuration")?;
    PluginConfig::parse(json.as_bytes()).map_err(|e| anyhow!("{e}"))
}

/// Cluster name → (address, port) of its first endpoint.
pub fn clusters(envoy: &Value) -> Result<BTreeMap<String, (String, u64)>> {
    let list = envoy["static_resources"]["clusters"]
        .as_sequence()
        .ok_or_else(|| anyhow!("no clusters"))?;
    list.iter()
        .map(|c| {
            let sa = &c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
                ["address"]["socket_address"];
            let port = sa["port_value"]
                .as_u64()
                .ok_or_else(|| anyhow!("cluster without a port: {c:?}"))?;
            Ok((
                str_of(&c["name"], "cluster name")?.to_owned(),
                (str_of(&sa["address"], "address")?.to_owned(), port),
            ))
        })
        .collect()
}

pub fn port_of(addr: &str) -> Result<u64> {
    Ok(addr.rsplit_once(':').ok_or_else(|| anyhow!("no port in {addr}"))?.1.parse()?)
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| s.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The value after `flag` in a command line, for each occurrence.
pub fn flag_values(command: &[String], flag: &str) -> Vec<String> {
    command.windows(2).filter(|w| w[0] == flag).map(|w| w[1].clone()).collect()
}

/// (source, target, read-only) of each `src:dst[:ro]` volume of a service.
pub fn mounts(service: &Value) -> Vec<(String, String, bool)> {
    strings(&service["volumes"])
        .iter()
        .map(|v| {
            let parts: Vec<&str> = v.split(':').collect();
            (
                parts[0].to_owned(),
                parts.get(1).copied().unwrap_or("").to_owned(),
                parts.get(2) == Some(&"ro"),
            )
        })
        .collect()
}
