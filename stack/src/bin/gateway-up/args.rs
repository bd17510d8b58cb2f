//! `gateway-up`'s command line (flags and environment variables of DESIGN.md), and what it
//! means for the stack: the upstreams (the built-in mock unless `--model` names real vLLM
//! servers), the keys they want, the database.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use gateway_envoy::ModelUpstream;
use gateway_stack::filter_build::Choice;
use gateway_stack::Upstreams;
use gateway_workspace::paths;

/// The two models the built-in mock serves.
const MOCK_MODELS: [&str; 2] = ["mock-qwen3-32b", "mock-llama-3.3-70b"];

/// Runs the gateway on this machine: the control plane, the built-in mock vLLM (unless --model),
/// Envoy with the filter; prints the admin token, a demo API key and a `curl` to try; Ctrl-C or
/// SIGTERM stops everything.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask up", bin_name = "cargo xtask up")]
pub struct UpArgs {
    /// Gateway port (Envoy listener on 127.0.0.1).
    #[arg(long, env = "GATEWAY_PORT", default_value_t = 5000)]
    pub port: u16,
    /// Envoy admin port (127.0.0.1 only).
    #[arg(long, env = "GATEWAY_ENVOY_ADMIN_PORT", default_value_t = 9901)]
    pub envoy_admin_port: u16,
    /// A model and the vLLM server serving it, `NAME=http://host:port` (repeatable). Without
    /// any, the built-in mock vLLM serves two models.
    #[arg(long = "model", value_name = "NAME=URL")]
    pub models: Vec<String>,
    /// Control-plane HTTP address.
    #[arg(long, env = "GATEWAY_HTTP_ADDR", default_value = "127.0.0.1:8081")]
    pub http_addr: SocketAddr,
    /// Control-plane access-log gRPC address.
    #[arg(long, env = "GATEWAY_ALS_ADDR", default_value = "127.0.0.1:8082")]
    pub als_addr: SocketAddr,
    /// SQLite database.
    #[arg(long, env = "GATEWAY_DB", default_value = "sqlite://.data/gateway.db")]
    pub db: String,
    /// Where `/v1/*` requests without a `model` go (one of the models).
    #[arg(long, env = "GATEWAY_DEFAULT_MODEL")]
    pub default_model: Option<String>,
    /// The API key a model's vLLM server wants (`vllm serve --api-key`), `NAME=KEY`
    /// (repeatable; or GATEWAY_MODEL_API_KEYS="A=key,B=key"). Callers' own keys never reach it.
    #[arg(long = "model-api-key", value_name = "NAME=KEY")]
    pub model_api_keys: Vec<String>,
    /// Delay between the mock's streamed tokens, in milliseconds.
    #[arg(long, default_value_t = 40)]
    pub mock_token_delay_ms: u64,
    /// Which build of the filter Envoy runs: the proxy-wasm filter (`wasm`), the native
    /// dynamic module (`native`), or `auto`: the native module when Envoy is the release it is
    /// written for (1.40, the one `cargo xtask setup` installs), else the wasm filter.
    #[arg(long, env = "GATEWAY_FILTER_BUILD", value_enum, default_value_t = Choice::Auto)]
    pub filter: Choice,
}

impl UpArgs {
    /// The mock's two models, or the servers of `--model` (else `GATEWAY_MODELS`).
    pub fn upstreams(&self) -> Result<Upstreams> {
        let given = given_or_env(&self.models, "GATEWAY_MODELS");
        if given.is_empty() {
            return Ok(Upstreams::Mock {
                models: MOCK_MODELS.iter().map(|m| m.to_string()).collect(),
                token_delay: Duration::from_millis(self.mock_token_delay_ms),
                split_seed: None,
            });
        }
        let models = given
            .iter()
            .map(|m| m.parse::<ModelUpstream>())
            .collect::<Result<Vec<_>, _>>()
            .context("--model / GATEWAY_MODELS")?;
        Ok(Upstreams::Real(models))
    }

    /// Model → the key its server wants, from `--model-api-key` (else `GATEWAY_MODEL_API_KEYS`).
    pub fn upstream_keys(&self) -> Result<BTreeMap<String, String>> {
        given_or_env(&self.model_api_keys, "GATEWAY_MODEL_API_KEYS")
            .iter()
            .map(|pair| match pair.split_once('=') {
                Some((name, key)) if !name.trim().is_empty() && !key.is_empty() => {
                    Ok((name.trim().to_owned(), key.to_owned()))
                }
                _ => bail!(
                    "--model-api-key / GATEWAY_MODEL_API_KEYS: expected NAME=KEY, got `{pair}`"
                ),
            })
            .collect()
    }

    /// `--db` as a SQLite URL: a relative path is taken from the workspace root, wherever
    /// `cargo xtask up` runs.
    pub fn database_url(&self) -> String {
        let db = &self.db;
        let path =
            db.strip_prefix("sqlite://").or_else(|| db.strip_prefix("sqlite:")).unwrap_or(db);
        if path.starts_with('/') || path.starts_with(':') {
            return format!("sqlite://{path}");
        }
        format!("sqlite://{}", paths::workspace_root().join(path).display())
    }
}

/// The repeatable flag's values, else the comma-separated list in environment variable `var`.
fn given_or_env(given: &[String], var: &str) -> Vec<String> {
    if !given.is_empty() {
        return given.to_vec();
    }
    let Ok(env) = std::env::var(var) else { return Vec::new() };
    env.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> UpArgs {
        UpArgs::try_parse_from(std::iter::once("gateway-up").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn models_keys_and_databases_are_read_as_before() {
        let args = parse(&["--model", "a=http://127.0.0.1:1", "--model-api-key", "a=k=1"]);
        assert!(matches!(args.upstreams().unwrap(), Upstreams::Real(m) if m.len() == 1));
        assert_eq!(args.upstream_keys().unwrap()["a"], "k=1");
        assert!(parse(&["--model-api-key", "=k"]).upstream_keys().is_err());
        assert_eq!(parse(&["--db", "sqlite:///x/g.db"]).database_url(), "sqlite:///x/g.db");
        assert_eq!(parse(&["--db", "sqlite::memory:"]).database_url(), "sqlite://:memory:");
        let relative = parse(&["--db", "sqlite://.data/g.db"]).database_url();
        assert!(relative.ends_with("/.data/g.db") && relative.starts_with("sqlite:///"));
        let native = parse(&["--filter", "native", "--mock-token-delay-ms", "5"]);
        assert_eq!(native.filter, Choice::Native);
        let mock = native.upstreams().unwrap();
        assert!(matches!(mock, Upstreams::Mock { models, .. } if models.len() == 2));
    }
}
