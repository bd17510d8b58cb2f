//! The control-plane binary: flags (with environment fallbacks), start-up, signals.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use control_plane::file_log;
use control_plane::reconcile::Upstream;
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
    /// Envoy's JSON-lines access-log file, ingested on start and continuously: every request
    /// the gRPC stream dropped is recorded from it, none twice. Without it, requests are
    /// recorded from the gRPC stream alone.
    #[arg(long, env = "GATEWAY_ACCESS_LOG_FILE", value_name = "PATH")]
    access_log_file: Option<PathBuf>,
    /// Rotate the access-log file beyond this many bytes: it is renamed to PATH.1 and Envoy
    /// reopens its log (needs --envoy-admin). On disk: the live file and one rotated file.
    #[arg(long, env = "GATEWAY_ACCESS_LOG_MAX_BYTES", default_value_t = file_log::DEFAULT_MAX_BYTES,
          value_parser = clap::value_parser!(u64).range(1..), requires = "access_log_file")]
    access_log_max_bytes: u64,
    /// Envoy's admin address (http://127.0.0.1:9901), asked to reopen its access log
    /// (POST /reopen_logs) after a rotation. Without it the file is never rotated.
    #[arg(long, env = "GATEWAY_ENVOY_ADMIN", value_name = "URL", value_parser = http_url, requires = "access_log_file")]
    envoy_admin: Option<String>,
    /// A model and the vLLM server serving it, for reconciliation with vLLM's own token
    /// counters (repeatable; the environment variable takes a comma-separated list).
    #[arg(long = "upstream", env = "GATEWAY_MODELS", value_name = "NAME=URL", value_delimiter = ',')]
    upstreams: Vec<Upstream>,
    /// Seconds between two scrapes of each upstream's /metrics (0 = only when
    /// GET /api/usage/reconcile asks about now).
    #[arg(long, env = "GATEWAY_RECONCILE_INTERVAL_SECS", default_value_t = 15)]
    reconcile_interval_secs: u64,
}

impl Cli {
    /// The file ingest's configuration, when a file is given.
    fn access_log_file(&self) -> Option<file_log::Config> {
        let path = self.access_log_file.clone()?;
        Some(file_log::Config {
            max_bytes: self.access_log_max_bytes,
            envoy_admin: self.envoy_admin.clone(),
            ..file_log::Config::new(path)
        })
    }

    /// Refuses what cannot work together.
    fn check(&self) -> anyhow::Result<()> {
        if self.admin_token.as_deref().is_some_and(|t| t.len() < 16) {
            anyhow::bail!("--admin-token must be at least 16 characters");
        }
        let mut models: Vec<&str> = self.upstreams.iter().map(|u| u.model.as_str()).collect();
        models.sort_unstable();
        if let Some(twice) = models.windows(2).find(|w| w[0] == w[1]) {
            anyhow::bail!("--upstream / GATEWAY_MODELS: model `{}` is given twice", twice[0]);
        }
        Ok(())
    }
}

/// An `http://` or `https://` URL.
fn http_url(text: &str) -> Result<String, String> {
    let url = text.trim().trim_end_matches('/');
    match url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) {
        Some(host) if !host.is_empty() => Ok(url.to_owned()),
        _ => Err(format!("expected http://host:port, got `{text}`")),
    }
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
    cli.check()?;
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
    let state = control_plane::api::AppState::new(db, state_token, admin.hash)
        .with_jwt_lifetime(cli.jwt_lifetime_secs)
        .with_upstreams(cli.upstreams.clone(), Duration::from_secs(cli.reconcile_interval_secs));
    let retention = control_plane::Retention {
        max_age_days: cli.log_retention_days,
        max_rows: cli.log_retention_rows,
        ..control_plane::Retention::default()
    };
    let tasks = control_plane::Tasks { retention, access_log_file: cli.access_log_file() };
    control_plane::serve(state, tasks, http, als, shutdown_signal()).await?;
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

    #[test]
    fn the_file_log_is_off_by_default_and_rotates_only_with_envoys_admin_address() {
        let cli = Cli::try_parse_from(["control-plane"]).unwrap();
        assert!(cli.access_log_file().is_none());
        let cli = Cli::try_parse_from(["control-plane", "--access-log-file", "/l/a.jsonl", "--envoy-admin", "http://127.0.0.1:9901/"]).unwrap();
        let config = cli.access_log_file().unwrap();
        assert_eq!((config.max_bytes, config.envoy_admin.as_deref()), (64 << 20, Some("http://127.0.0.1:9901")));
        assert_eq!(config.rotated_path(), PathBuf::from("/l/a.jsonl.1"));
        assert!(Cli::try_parse_from(["control-plane", "--envoy-admin", "http://e:1"]).is_err(), "nothing to rotate");
        assert!(Cli::try_parse_from(["control-plane", "--access-log-file", "f", "--envoy-admin", "e:1"]).is_err());
        assert!(Cli::try_parse_from(["control-plane", "--access-log-file", "f", "--access-log-max-bytes", "0"]).is_err());
        assert!(Cli::try_parse_from(["control-plane", "--access-log-max-bytes", "9"]).is_err(), "no file to bound");
        let cli = Cli::try_parse_from(["control-plane", "--access-log-file", "f", "--access-log-max-bytes", "9"]).unwrap();
        assert_eq!(cli.access_log_file().unwrap().max_bytes, 9);
    }

    #[test]
    fn upstreams_are_repeated_or_comma_separated_and_a_model_is_given_once() {
        let cli = Cli::try_parse_from(["control-plane", "--upstream", "a=http://h:1,b=http://h:2", "--upstream", "c=http://h:3"]).unwrap();
        let models: Vec<&str> = cli.upstreams.iter().map(|u| u.model.as_str()).collect();
        assert_eq!((models, cli.reconcile_interval_secs), (vec!["a", "b", "c"], 15));
        cli.check().unwrap();
        let twice = Cli::try_parse_from(["control-plane", "--upstream", "a=http://h:1", "--upstream", "a=http://h:2"]).unwrap();
        assert!(twice.check().is_err());
        assert!(Cli::try_parse_from(["control-plane", "--upstream", "a"]).is_err());
    }

    #[test]
    fn every_flag_names_its_environment_variable_in_help() {
        let help = <Cli as clap::CommandFactory>::command().render_long_help().to_string();
        for var in ["GATEWAY_ACCESS_LOG_FILE", "GATEWAY_ACCESS_LOG_MAX_BYTES", "GATEWAY_ENVOY_ADMIN", "GATEWAY_MODELS", "GATEWAY_RECONCILE_INTERVAL_SECS"] {
            assert!(help.contains(&format!("[env: {var}")), "{var} missing from\n{help}");
        }
    }
}
