//! The control-plane binary: flags (with environment fallbacks), start-up, signals.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use control_plane::client_addr::{Cidr, TrustedProxies};
use control_plane::reconcile::Upstream;
use control_plane::store::settings;
use control_plane::{file_log, secret_files, secrets};
use tokio::net::TcpListener;

/// vllm-gateway control plane: apps, API keys, the filter's state feed and the access-log sink.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address of the HTTP API (admin API unless --admin-addr is given, login, state feed).
    #[arg(long, env = "GATEWAY_HTTP_ADDR", default_value = "127.0.0.1:8081")]
    http_addr: SocketAddr,
    /// Serve the admin API (`/api/*`) on this address only; --http-addr then answers `/api/*`
    /// with 404. Without it, the admin API is on --http-addr.
    #[arg(long, env = "GATEWAY_ADMIN_ADDR")]
    admin_addr: Option<SocketAddr>,
    /// Address of the gRPC access-log sink Envoy streams to (each stream must carry
    /// `authorization: Bearer <state token>` metadata).
    #[arg(long, env = "GATEWAY_ALS_ADDR", default_value = "127.0.0.1:8082")]
    als_addr: SocketAddr,
    /// SQLite database (`sqlite://path` or a path); created if missing.
    #[arg(long, env = "GATEWAY_DB", default_value = "sqlite://.data/gateway.db")]
    db: String,
    /// The admin token. Without it, one is generated on first start and written to
    /// SECRETS_DIR/admin-token (mode 0600; only the path is printed).
    #[arg(long, env = "GATEWAY_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Shared secret of the state feed and the access-log stream (must match the filter's
    /// `state.token` and Envoy's access-log `initial_metadata`). Without it, one is generated
    /// on first start, stored, and written to SECRETS_DIR/state-token (mode 0600).
    #[arg(long, env = "GATEWAY_STATE_TOKEN", hide_env_values = true)]
    state_token: Option<String>,
    /// Folder of the files generated tokens are written to (default: the database's folder).
    #[arg(long, env = "GATEWAY_SECRETS_DIR", value_name = "DIR")]
    secrets_dir: Option<PathBuf>,
    /// Accept demo and placeholder tokens (containing `change-me`, `demo`, `example`, `secret`,
    /// …, or one character repeated), for a local demo only.
    #[arg(long, env = "GATEWAY_DEV")]
    dev: bool,
    /// Proxies whose `x-forwarded-for` names the client of a login (comma-separated CIDRs),
    /// for login throttling by client address; other peers are the client themselves.
    #[arg(
        long,
        env = "GATEWAY_TRUSTED_PROXIES",
        value_name = "CIDR",
        value_delimiter = ',',
        default_value = "127.0.0.0/8,::1/128"
    )]
    trusted_proxies: Vec<Cidr>,
    /// How long a JWT issued by `/user/user_login` is valid, in seconds.
    #[arg(long, env = "GATEWAY_JWT_LIFETIME_SECS", default_value_t = control_plane::api::DEFAULT_JWT_LIFETIME_SECS,
          value_parser = clap::value_parser!(i64).range(60..=31_536_000))]
    jwt_lifetime_secs: i64,
    /// Access-log rows older than this many days are deleted (0 = keep every day).
    #[arg(long, env = "GATEWAY_LOG_RETENTION_DAYS", default_value_t = 30)]
    log_retention_days: u32,
    /// At most this many access-log rows are kept, the oldest deleted first — rows without
    /// identity (no app, user or tokens) before any other (0 = unlimited).
    #[arg(long, env = "GATEWAY_LOG_RETENTION_ROWS", default_value_t = 10_000_000)]
    log_retention_rows: u64,
    /// At most this many access-log rows without identity (requests refused before
    /// authentication) are kept, the oldest deleted first (default: a tenth of
    /// --log-retention-rows; 0 = no own limit).
    #[arg(long, env = "GATEWAY_LOG_RETENTION_UNAUTHENTICATED_ROWS")]
    log_retention_unauthenticated_rows: Option<u64>,
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
    #[arg(
        long = "upstream",
        env = "GATEWAY_MODELS",
        value_name = "NAME=URL",
        value_delimiter = ','
    )]
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

    /// The retention policy the flags ask for.
    fn retention(&self) -> control_plane::Retention {
        control_plane::Retention {
            max_age_days: self.log_retention_days,
            max_rows: self.log_retention_rows,
            max_unauthenticated_rows: self
                .log_retention_unauthenticated_rows
                .unwrap_or(self.log_retention_rows / 10),
            ..control_plane::Retention::default()
        }
    }

    /// Where generated tokens are written.
    fn secrets_dir(&self) -> PathBuf {
        self.secrets_dir.clone().unwrap_or_else(|| secret_files::default_dir(&self.db))
    }

    /// Refuses what cannot work together.
    fn check(&self) -> anyhow::Result<()> {
        if self.admin_token.as_deref().is_some_and(|t| t.len() < 16) {
            anyhow::bail!("--admin-token must be at least 16 characters");
        }
        refuse_placeholder(
            "--admin-token / GATEWAY_ADMIN_TOKEN",
            self.admin_token.as_deref(),
            self.dev,
        )?;
        refuse_placeholder(
            "--state-token / GATEWAY_STATE_TOKEN",
            self.state_token.as_deref(),
            self.dev,
        )?;
        let mut models: Vec<&str> = self.upstreams.iter().map(|u| u.model.as_str()).collect();
        models.sort_unstable();
        if let Some(twice) = models.windows(2).find(|w| w[0] == w[1]) {
            anyhow::bail!("--upstream / GATEWAY_MODELS: model `{}` is given twice", twice[0]);
        }
        Ok(())
    }
}

/// Refuses a demo or placeholder `token` given as `flag`, unless `dev`.
fn refuse_placeholder(flag: &str, token: Option<&str>, dev: bool) -> anyhow::Result<()> {
    match token.and_then(secrets::placeholder_reason) {
        Some(reason) if !dev => anyhow::bail!(
            "{flag} looks like a demo or placeholder value ({reason}): give a random token \
             (e.g. `openssl rand -hex 32`), or pass --dev (GATEWAY_DEV=true) for a local demo"
        ),
        _ => Ok(()),
    }
}

/// Settles both tokens: given ones win; generated ones are written to owner-only files in
/// the secrets folder and only the paths are printed. Returns the admin token's hash and the
/// state token.
async fn settle_tokens(cli: &Cli, db: &control_plane::Db) -> anyhow::Result<(String, String)> {
    let dir = cli.secrets_dir();
    let publish = |name: &'static str, what: &'static str| {
        let dir = dir.clone();
        move |token: &str| {
            let path = secret_files::write_owner_only(&dir, name, token)?;
            println!(
                "{what} generated: written to {} (mode 0600; shown nowhere else)",
                path.display()
            );
            Ok(())
        }
    };
    let admin_hash = settings::admin_token(
        db,
        cli.admin_token.as_deref(),
        publish(secret_files::ADMIN_TOKEN_FILE, "admin token"),
    )
    .await?;
    let state_publish = publish(
        secret_files::STATE_TOKEN_FILE,
        "state token (the filter's state.token and Envoy's access-log metadata)",
    );
    let state_token = settings::state_token(db, cli.state_token.as_deref(), state_publish).await?;
    // One stored by an earlier start (from the flag then) is held to the same rule.
    refuse_placeholder(
        "the stored state token (set a new one with --state-token / GATEWAY_STATE_TOKEN)",
        Some(&state_token),
        cli.dev,
    )?;
    Ok((admin_hash, state_token))
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
    let (admin_hash, state_token) = settle_tokens(&cli, &db).await?;
    let listeners = bind(&cli).await?;
    // The signing key exists before the filter's first pull, so the first login's token verifies.
    control_plane::jwt::current_key(&db).await?;
    let state = control_plane::api::AppState::new(db, state_token, admin_hash)
        .with_jwt_lifetime(cli.jwt_lifetime_secs)
        .with_trusted_proxies(TrustedProxies::new(cli.trusted_proxies.clone()))
        .with_upstreams(cli.upstreams.clone(), Duration::from_secs(cli.reconcile_interval_secs));
    let tasks =
        control_plane::Tasks { retention: cli.retention(), access_log_file: cli.access_log_file() };
    let shutdown = gateway_os::shutdown_signal();
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down");
    };
    control_plane::serve(state, tasks, listeners, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Binds every listener and prints one machine-readable line of the addresses bound, for
/// whoever started us with port 0.
async fn bind(cli: &Cli) -> anyhow::Result<control_plane::Listeners> {
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))
    };
    let http = bind(cli.http_addr).await?;
    let als = bind(cli.als_addr).await?;
    let admin = match cli.admin_addr {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let mut line =
        format!("control-plane listening http={} als={}", http.local_addr()?, als.local_addr()?);
    if let Some(admin) = &admin {
        line.push_str(&format!(" admin={}", admin.local_addr()?));
    }
    println!("{line}");
    Ok(control_plane::Listeners::new(http, als).with_admin(admin))
}

#[cfg(test)]
#[path = "main/tests.rs"]
mod tests;
