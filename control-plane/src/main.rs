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
    /// How long a JWT issued by `/user/user_login` is valid, in seconds.
    #[arg(long, env = "GATEWAY_JWT_LIFETIME_SECS", default_value_t = control_plane::api::DEFAULT_JWT_LIFETIME_SECS,
          value_parser = clap::value_parser!(i64).range(60..=31_536_000))]
    jwt_lifetime_secs: i64,
    /// Access-log rows older than this many days are deleted (0 = keep every day).
    #[arg(long, env = "GATEWAY_LOG_RETENTION_DAYS", default_value_t = 30)]
    log_retention_days: u32,
    /// At most this many access-log rows are kept, the oldest deleted first (0 = unlimited).
    #[arg(long, env = "GATEWAY_LOG_RETENTION_ROWS", default_value_t = 10_000_000)]
    log_retention_rows: u64,
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
    // The signing key exists before the filter's first pull, so the first login's token verifies.
    control_plane::jwt::current_key(&db).await?;
    let state = control_plane::api::AppState::new(db, state_token, admin.hash).with_jwt_lifetime(cli.jwt_lifetime_secs);
    let retention = control_plane::Retention {
        max_age_days: cli.log_retention_days,
        max_rows: cli.log_retention_rows,
        ..control_plane::Retention::default()
    };
    control_plane::serve(state, retention, http, als, shutdown_signal()).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_flags_default_to_30_days_and_10_million_rows() {
        let cli = Cli::try_parse_from(["control-plane"]).unwrap();
        assert_eq!((cli.log_retention_days, cli.log_retention_rows), (30, 10_000_000));
        let cli = Cli::try_parse_from(["control-plane", "--log-retention-days", "0", "--log-retention-rows", "5"]).unwrap();
        assert_eq!((cli.log_retention_days, cli.log_retention_rows), (0, 5));
        assert!(Cli::try_parse_from(["control-plane", "--log-retention-days", "-1"]).is_err());
    }
}
