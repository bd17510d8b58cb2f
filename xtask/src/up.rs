//! `cargo xtask up`: sets up and builds what is missing, then runs the gateway on this machine —
//! the control plane on its SQLite file, the built-in mock vLLM (two models, two ports) unless
//! `--model` names real servers, and Envoy with the filter — prints the admin token, a fresh demo
//! API key and a ready-to-paste `curl`, and stops everything on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use gateway_e2e::{paths, Stack, StackOptions, Upstreams};
use gateway_envoy::{FilterBuild, ModelUpstream};

/// The two models the built-in mock serves.
const MOCK_MODELS: [&str; 2] = ["mock-qwen3-32b", "mock-llama-3.3-70b"];

/// `cargo xtask up` options (flags and environment variables of DESIGN.md).
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Gateway port (Envoy listener on 127.0.0.1).
    #[arg(long, env = "GATEWAY_PORT", default_value_t = 5000)]
    port: u16,
    /// Envoy admin port (127.0.0.1 only).
    #[arg(long, env = "GATEWAY_ENVOY_ADMIN_PORT", default_value_t = 9901)]
    envoy_admin_port: u16,
    /// A model and the vLLM server serving it, `NAME=http://host:port` (repeatable). Without
    /// any, the built-in mock vLLM serves two models.
    #[arg(long = "model", value_name = "NAME=URL")]
    models: Vec<String>,
    /// Control-plane HTTP address.
    #[arg(long, env = "GATEWAY_HTTP_ADDR", default_value = "127.0.0.1:8081")]
    http_addr: SocketAddr,
    /// Control-plane access-log gRPC address.
    #[arg(long, env = "GATEWAY_ALS_ADDR", default_value = "127.0.0.1:8082")]
    als_addr: SocketAddr,
    /// SQLite database.
    #[arg(long, env = "GATEWAY_DB", default_value = "sqlite://.data/gateway.db")]
    db: String,
    /// Where `/v1/*` requests without a `model` go (one of the models).
    #[arg(long, env = "GATEWAY_DEFAULT_MODEL")]
    default_model: Option<String>,
    /// The API key a model's vLLM server wants (`vllm serve --api-key`), `NAME=KEY`
    /// (repeatable; or GATEWAY_MODEL_API_KEYS="A=key,B=key"). Callers' own keys never reach it.
    #[arg(long = "model-api-key", value_name = "NAME=KEY")]
    model_api_keys: Vec<String>,
    /// Delay between the mock's streamed tokens, in milliseconds.
    #[arg(long, default_value_t = 40)]
    mock_token_delay_ms: u64,
    /// Which build of the filter Envoy runs: the proxy-wasm filter (`wasm`) or the native
    /// dynamic module (`native`).
    #[arg(long, env = "GATEWAY_FILTER_BUILD", value_enum, default_value_t = Build::Wasm)]
    filter: Build,
}

/// A build of the filter (`--filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Build {
    Wasm,
    Native,
}

/// Runs the stack until Ctrl-C or SIGTERM.
pub fn run(args: UpArgs) -> Result<()> {
    crate::setup::run()?;
    crate::build::run()?;
    let control_plane = crate::build::release_control_plane()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(serve(args, control_plane))
}

async fn serve(args: UpArgs, control_plane: PathBuf) -> Result<()> {
    let upstreams = upstreams(&args)?;
    let admin_token = admin_token()?;
    let options = StackOptions {
        gateway: SocketAddr::from(([127, 0, 0, 1], args.port)),
        envoy_admin_port: args.envoy_admin_port,
        control_plane_http: args.http_addr,
        control_plane_als: args.als_addr,
        db: Some(database_url(&args.db)),
        admin_token: admin_token.clone(),
        upstreams,
        state_refresh_ms: 1000,
        echo: true,
        default_model: args.default_model.clone(),
        upstream_keys: upstream_keys(&args)?,
        access_log_file: Some(paths::workspace_root().join(".data").join("access-log.jsonl")),
        control_plane_bin: Some(control_plane),
        reconcile_interval_secs: 15,
        envoy_workers: 2,
        filter: Some(match args.filter {
            Build::Wasm => FilterBuild::Wasm(paths::filter_wasm()?),
            Build::Native => FilterBuild::Native(paths::native_module_dir()?),
        }),
    };
    let stack = Stack::start(options).await?;
    let app = stack.create_app("demo").await.context("creating the demo app")?;
    stack.wait_for_key(&app.api_key).await?;
    print_welcome(&stack, &admin_token, &app.api_key);
    shutdown_signal().await;
    eprintln!("xtask: stopping");
    stack.stop().await;
    Ok(())
}

fn upstreams(args: &UpArgs) -> Result<Upstreams> {
    let mut given: Vec<String> = args.models.clone();
    if given.is_empty() {
        if let Ok(env) = std::env::var("GATEWAY_MODELS") {
            given = env
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
        }
    }
    if given.is_empty() {
        return Ok(Upstreams::Mock {
            models: MOCK_MODELS.iter().map(|m| m.to_string()).collect(),
            token_delay: Duration::from_millis(args.mock_token_delay_ms),
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

fn upstream_keys(args: &UpArgs) -> Result<std::collections::BTreeMap<String, String>> {
    let mut given = args.model_api_keys.clone();
    if given.is_empty() {
        if let Ok(env) = std::env::var("GATEWAY_MODEL_API_KEYS") {
            given = env
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
        }
    }
    given
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((name, key)) if !name.trim().is_empty() && !key.is_empty() => {
                Ok((name.trim().to_owned(), key.to_owned()))
            }
            _ => bail!("--model-api-key / GATEWAY_MODEL_API_KEYS: expected NAME=KEY, got `{pair}`"),
        })
        .collect()
}

/// `GATEWAY_ADMIN_TOKEN`, else the token this runner generated before (kept, owner-only, in
/// `.data/admin-token` so the runner can create the demo key), else a new one.
fn admin_token() -> Result<String> {
    if let Ok(token) = std::env::var("GATEWAY_ADMIN_TOKEN") {
        if token.len() < 16 {
            bail!("GATEWAY_ADMIN_TOKEN must be at least 16 characters");
        }
        return Ok(token);
    }
    let file = paths::workspace_root().join(".data").join("admin-token");
    if let Ok(token) = std::fs::read_to_string(&file) {
        return Ok(token.trim().to_owned());
    }
    let token = new_token()?;
    std::fs::create_dir_all(file.parent().unwrap_or(&paths::workspace_root()))?;
    write_owner_only(&file, &token)?;
    Ok(token)
}

fn new_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_owner_only(file: &PathBuf, contents: &str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(file)?.write_all(contents.as_bytes())?;
    Ok(())
}

/// A relative SQLite path is taken from the workspace root, wherever `cargo xtask` runs.
fn database_url(db: &str) -> String {
    let path = db.strip_prefix("sqlite://").or_else(|| db.strip_prefix("sqlite:")).unwrap_or(db);
    if path.starts_with('/') || path.starts_with(':') {
        return format!("sqlite://{path}");
    }
    format!("sqlite://{}", paths::workspace_root().join(path).display())
}

fn print_welcome(stack: &Stack, admin_token: &str, api_key: &str) {
    let gw = &stack.gateway_url;
    let model = stack.models.first().map_or("<your model>", |(name, _)| name.as_str());
    let kind = if stack.mocks.is_empty() { "vLLM" } else { "built-in mock vLLM" };
    let models: Vec<String> =
        stack.models.iter().map(|(name, url)| format!("{name} → {url} ({kind})")).collect();
    println!(
        "\nvllm-gateway is up.\n\
         \n  gateway       {gw}  (OpenAI API under {gw}/v1)\
         \n  admin token   {admin_token}\
         \n  demo API key  {api_key}\
         \n  Envoy admin   http://{}\
         \n  access log    {} (ingested by the control plane too)\
         \n  models        {}\
         \n\nStream a chat completion:\n\
         \n  curl -N {gw}/v1/chat/completions -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' \\\
         \n    -d '{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"你好\"}}],\"stream\":true}}'\n\
         \nThen see it in the access log:\n\
         \n  curl -s '{gw}/api/logs?size=5' -H 'Authorization: Bearer {admin_token}'\n\
         \nCtrl-C stops everything.\n",
        stack.envoy_admin,
        stack.access_log_file.display(),
        models.join("\n                "),
    );
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
