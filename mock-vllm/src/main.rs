//! The `mock-vllm` binary: flags (with environment fallbacks), binding, the ready line on
//! stdout, and serving until Ctrl-C or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use mock_vllm::{MockConfig, MockState};
use tokio::net::TcpListener;

/// A vLLM-compatible mock server: vLLM's OpenAI API, deterministic multi-byte text.
///
/// Once listening it prints one line to stdout, `mock-vllm listening on http://ADDR`.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on (port 0 picks a free port; see the ready line).
    #[arg(long, env = "MOCK_VLLM_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// A model it serves (repeatable; the environment variable takes a comma-separated list).
    #[arg(
        long = "model",
        value_name = "NAME",
        env = "MOCK_VLLM_MODELS",
        value_delimiter = ',',
        required = true
    )]
    models: Vec<String>,
    /// Pause between two streamed frames, in milliseconds.
    #[arg(long, env = "MOCK_VLLM_TOKEN_DELAY_MS", default_value_t = 0)]
    token_delay_ms: u64,
    /// Context window, in tokens.
    #[arg(long, env = "MOCK_VLLM_MAX_MODEL_LEN", default_value_t = MockConfig::default().max_model_len)]
    max_model_len: u32,
    /// Completion tokens when a request sets no `max_tokens`.
    #[arg(long, env = "MOCK_VLLM_DEFAULT_MAX_TOKENS", default_value_t = MockConfig::default().default_max_tokens)]
    default_max_tokens: u32,
    /// Re-cut streamed bodies at pseudo-random byte positions drawn from this seed.
    #[arg(long, env = "MOCK_VLLM_SPLIT_SEED")]
    split_seed: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let config = MockConfig {
        models: cli.models,
        token_delay: Duration::from_millis(cli.token_delay_ms),
        split_seed: cli.split_seed,
        max_model_len: cli.max_model_len,
        default_max_tokens: cli.default_max_tokens,
    };
    tokio::runtime::Runtime::new()?.block_on(run(cli.listen, config))
}

async fn run(listen: SocketAddr, config: MockConfig) -> anyhow::Result<()> {
    let listener =
        TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(models = ?config.models, "serving");
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "mock-vllm listening on http://{addr}")?;
    stdout.flush()?;
    drop(stdout);
    let shutdown = gateway_os::shutdown_signal();
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down");
    };
    mock_vllm::serve(listener, MockState::new(config), shutdown).await.context("serving")
}
