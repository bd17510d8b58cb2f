//! Clients an HTTP library cannot play: one that sends its request a few bytes at a time and
//! watches whether the gateway cuts it off, and the reply it gets read off the wire.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::support::WAIT;

/// A reply read off the wire.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Header lines, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: String,
}

impl Reply {
    /// The first value of header `name` (lowercase), or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
    }
}

/// How a slow client's connection ended.
#[derive(Debug, Clone)]
pub enum Ending {
    /// The gateway answered (and closed).
    Answered(Reply),
    /// The gateway closed the connection without an answer.
    Closed,
    /// Still open after [`WAIT`].
    StillOpen,
}

/// Sends `head`, then `trickle` one byte at a time (a pause between bytes) until the gateway
/// answers or closes the connection, or [`WAIT`] is over; the trickle is repeated as needed.
pub async fn trickle(addr: &str, head: &[u8], trickle: &[u8]) -> Ending {
    let mut tcp = TcpStream::connect(addr).await.expect("connect to the gateway");
    if tcp.write_all(head).await.is_err() {
        return read_rest(tcp, Vec::new()).await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    for byte in trickle.iter().cycle() {
        if tokio::time::Instant::now() > deadline {
            return Ending::StillOpen;
        }
        if tcp.write_all(&[*byte]).await.is_err() {
            return read_rest(tcp, Vec::new()).await;
        }
        // The pause between two bytes; anything the gateway sends meanwhile ends the trickle.
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(50), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ending::Closed,
            Ok(Ok(n)) => return read_rest(tcp, buf[..n].to_vec()).await,
            Err(_) => {}
        }
    }
    Ending::StillOpen
}

/// Reads what is left of a reply (whose first bytes are `start`) until the connection closes.
pub async fn read_rest(mut tcp: TcpStream, mut raw: Vec<u8>) -> Ending {
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut raw)).await;
    match parse(&raw) {
        Some(reply) => Ending::Answered(reply),
        None => Ending::Closed,
    }
}

/// A reply from its bytes; `None` without a complete head.
pub fn parse(raw: &[u8]) -> Option<Reply> {
    let reply = gateway_e2e::http_wire::parse_reply(raw)?;
    Some(Reply {
        status: reply.status,
        headers: reply.headers,
        body: String::from_utf8_lossy(&reply.body).into_owned(),
    })
}
