//! `gateway-up`, what `cargo xtask up` runs once it has set up and built everything: the gateway
//! on this machine — the control plane on its SQLite file, the built-in mock vLLM (two models,
//! two ports) unless `--model` names real servers, and Envoy with the filter. It prints the admin
//! token, a fresh demo API key and a ready-to-paste `curl`, and stops everything on Ctrl-C or
//! SIGTERM (one arriving during start-up included).
//!
//! - [`args`]: the command line and what it means for the stack.
//! - [`admin_token`]: the admin token, kept across runs in `.data/admin-token`.

mod admin_token;
mod args;

use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Parser;
use gateway_envoy::FilterBuild;
use gateway_stack::{Stack, StackOptions};
use gateway_workspace::paths;

use crate::args::UpArgs;

#[tokio::main]
async fn main() -> Result<()> {
    let args = UpArgs::parse();
    // Listened for from here: a signal during start-up stops what has started.
    let mut shutdown = std::pin::pin!(gateway_os::shutdown_signal());
    let options = stack_options(&args)?;
    let admin_token = options.admin_token.clone();
    let filter = options.filter.as_ref().map_or("", FilterBuild::describe);
    let (stack, api_key) = tokio::select! {
        started = start(options) => started?,
        () = &mut shutdown => {
            eprintln!("gateway-up: stopped during start-up");
            return Ok(());
        }
    };
    print_welcome(&stack, filter, &admin_token, &api_key);
    shutdown.await;
    eprintln!("gateway-up: stopping");
    stack.stop().await;
    Ok(())
}

/// Starts the stack and creates the demo app; returns the stack and the app's key once the
/// filter accepts it.
async fn start(options: StackOptions) -> Result<(Stack, String)> {
    let stack = Stack::start(options).await?;
    let app = stack.create_app("demo").await.context("creating the demo app")?;
    stack.wait_for_key(&app.api_key).await?;
    Ok((stack, app.api_key))
}

/// The stack `args` ask for: fixed local addresses, the database and access log under `.data/`,
/// every process's output echoed.
fn stack_options(args: &UpArgs) -> Result<StackOptions> {
    Ok(StackOptions {
        gateway: SocketAddr::from(([127, 0, 0, 1], args.port)),
        envoy_admin_port: args.envoy_admin_port,
        control_plane_http: args.http_addr,
        control_plane_als: args.als_addr,
        db: Some(args.database_url()),
        admin_token: admin_token::admin_token()?,
        upstreams: args.upstreams()?,
        state_refresh_ms: 1000,
        echo: true,
        default_model: args.default_model.clone(),
        upstream_keys: args.upstream_keys()?,
        access_log_file: Some(paths::workspace_root().join(".data").join("access-log.jsonl")),
        // `GATEWAY_CONTROL_PLANE_BIN` (the release build: `cargo xtask up` sets it), else the
        // debug one.
        control_plane_bin: Some(paths::control_plane_bin()?),
        reconcile_interval_secs: 15,
        envoy_workers: 2,
        filter: Some(args.filter.build()?),
    })
}

/// What is running and how to try it.
fn print_welcome(stack: &Stack, filter: &str, admin_token: &str, api_key: &str) {
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
         \n  filter        {filter} (`--filter wasm|native` to choose)\
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
