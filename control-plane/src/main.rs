//! The control-plane binary: flags (with environment fallbacks), start-up, signals.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;

/// vllm-gateway control plane: apps, API keys, the filter's state feed and the access-log sink.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address of the HTTP API (admin API, login, state feed).
    #[arg(long, env = "GATEWAY_HTTP_ADDR", default_value = "127.0.0.1:8081")]
    http_addr: SocketAddr,
    /// Address of the gRPC access-log sink Envoy streams to.
    #[arg(long, env = "GATEWAY_ALS_ADDR", default_value = "127.0.0.1:8082")]
    als_addr: SocketAddr,
    /// SQLite database (`sqlite://path` or a path); created if missing.
    #[arg(long, env = "GATEWAY_DB", default_value = "sqlite://.data/gateway.db")]
    db: String,
    /// The admin token. Without it, one is generated on first start and printed once.
    #[arg(long, env = "GATEWAY_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Shared secret of the state feed (must match the filter's `state.token`). Without it,
    /// one is generated on first start, stored, and printed once.
    #[arg(long, env = "GATEWAY_STATE_TOKEN", hide_env_values = true)]
    state_token: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if cli.admin_token.as_deref().is_some_and(|t| t.len() < 16) {
        anyhow::bail!("--admin-token must be at least 16 characters");
    }
    let db = control_plane::db::open(&cli.db).await?;
    let admin = control_plane::store::settings::admin_token(&db, cli.admin_token.as_deref()).await?;
    let (state_token, new_state_token) =
        control_plane::store::settings::state_token(&db, cli.state_token.as_deref()).await?;
    if let Some(token) = &admin.generated {
        println!("admin token (shown once, stored hashed): {token}");
    }
    if new_state_token {
        println!("state feed token (put it in the filter's state.token): {state_token}");
    }
    let http = TcpListener::bind(cli.http_addr).await.with_context(|| format!("binding {}", cli.http_addr))?;
    let als = TcpListener::bind(cli.als_addr).await.with_context(|| format!("binding {}", cli.als_addr))?;
    // One machine-readable line, for whoever started us with port 0.
    println!("control-plane listening http={} als={}", http.local_addr()?, als.local_addr()?);
    control_plane::serve(db, state_token, admin.hash, http, als, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
