//! Reading a reply's body through the client library to its end, or to where the connection
//! broke (a cut-off or reset stream), within a deadline.

use std::time::Duration;

/// What was read of a body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyRead {
    /// The bytes read.
    pub bytes: Vec<u8>,
    /// The connection broke before the body's end.
    pub broke: bool,
    /// The deadline passed first.
    pub timed_out: bool,
}

/// Reads `resp`'s body until it ends or breaks, for at most `wait`.
pub async fn read_body(mut resp: reqwest::Response, wait: Duration) -> BodyRead {
    let mut read = BodyRead::default();
    let done = tokio::time::timeout(wait, async {
        loop {
            match resp.chunk().await {
                Ok(Some(bytes)) => read.bytes.extend_from_slice(&bytes),
                Ok(None) => break,
                Err(_) => {
                    read.broke = true;
                    break;
                }
            }
        }
    })
    .await;
    read.timed_out = done.is_err();
    read
}
