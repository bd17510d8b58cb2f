//! The stack's model upstreams: one in-process mock vLLM per model, each on its own ephemeral
//! port (or, with real vLLM servers, only their routes).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use gateway_envoy::ModelUpstream;
use tokio::net::TcpListener;

use crate::options::Upstreams;

/// Connections a mock upstream's listener queues before it accepts them.
const MOCK_BACKLOG: u32 = 4096;

/// One in-process mock upstream.
pub struct MockUpstream {
    /// The model it serves.
    pub model: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state: what it has seen.
    pub state: mock_vllm::MockState,
    pub(crate) stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Starts the mocks `upstreams` asks for; returns them and every model's route.
pub(crate) async fn start_upstreams(
    upstreams: &Upstreams,
) -> Result<(Vec<MockUpstream>, Vec<ModelUpstream>)> {
    let (models, token_delay, split_seed) = match upstreams {
        Upstreams::Real(models) => return Ok((Vec::new(), models.clone())),
        Upstreams::Mock { models, token_delay, split_seed } => (models, *token_delay, *split_seed),
    };
    let mut mocks = Vec::new();
    let mut routes = Vec::new();
    for model in models {
        let mock = start_mock(model, token_delay, split_seed)?;
        routes.push(format!("{model}=http://{}", mock.addr).parse()?);
        mocks.push(mock);
    }
    Ok((mocks, routes))
}

/// One mock serving `model` on its own listener, until its `stop` is sent or dropped.
fn start_mock(model: &str, token_delay: Duration, split_seed: Option<u64>) -> Result<MockUpstream> {
    let listener = mock_listener()?;
    let addr = listener.local_addr()?;
    let state = mock_vllm::MockState::new(mock_vllm::MockConfig {
        models: vec![model.to_owned()],
        token_delay,
        split_seed,
        ..mock_vllm::MockConfig::default()
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(mock_vllm::serve(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    Ok(MockUpstream { model: model.to_owned(), addr, state, stop: Some(stop) })
}

/// A listener on an ephemeral port of 127.0.0.1 for a mock upstream, with room for a burst of
/// connections (Envoy opens one per concurrent request to an HTTP/1 upstream; a mock that is
/// slow to accept must not make Envoy's connects time out).
fn mock_listener() -> Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(([127, 0, 0, 1], 0).into())?;
    Ok(socket.listen(MOCK_BACKLOG)?)
}
