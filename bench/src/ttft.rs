//! Time to first token, one request at a time, both arms alternated: with the mock paced like a
//! real server (the headline: the first token arrives on its own, as from vLLM) and, for
//! comparison, the first response byte with the mock unpaced (measured by `curl`).

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::arms::{chat_body, Arms};
use crate::report::Report;
use crate::settings::Settings;
use crate::summary::median;

/// Between two tokens of a paced stream: a fast real server (vLLM decodes a 7B–70B model at
/// roughly 10–50 ms per token).
const PACED_TOKEN_DELAY: Duration = Duration::from_millis(20);

/// (b) Time to first token as a caller sees it, with the mock paced like a real server: the
/// first token arrives on its own, as it does from vLLM. Alternates the arms one request at a
/// time; each request is dropped once its first token is in.
pub async fn paced(arms: &Arms, s: &Settings, report: &mut Report) -> Result<()> {
    arms.mock_state.set_token_delay(PACED_TOKEN_DELAY);
    let measured = first_token_times(arms, s.ttft_samples).await;
    arms.mock_state.set_token_delay(Duration::ZERO);
    let (with, without) = measured?;
    report.set(
        "ttft_added_ms",
        median(with.clone()) - median(without.clone()),
        "ms",
        "first token of a paced stream (20 ms per token), median, one request at a time",
    );
    report.detail("ttft_paced", json!({"token_delay_ms": 20, "samples_per_arm": with.len(), "with_filter_p50_ms": median(with), "without_filter_p50_ms": median(without)}));
    Ok(())
}

async fn first_token_times(arms: &Arms, samples: u32) -> Result<(Vec<f64>, Vec<f64>)> {
    let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let body = chat_body(true, 8);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for i in 0..samples * 2 {
        let filtered = i % 2 == 0;
        let base = if filtered { &arms.filtered.url } else { &arms.plain.url };
        let ms =
            first_token_ms(&client, &format!("{base}/v1/chat/completions"), &arms.api_key, &body)
                .await?;
        if filtered {
            with.push(ms)
        } else {
            without.push(ms)
        }
    }
    Ok((with, without))
}

/// Milliseconds from sending a streamed request to the first event that carries content.
async fn first_token_ms(client: &reqwest::Client, url: &str, key: &str, body: &str) -> Result<f64> {
    let started = std::time::Instant::now();
    let mut response = client
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("a paced stream answered {}", response.status());
    }
    let mut seen = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        seen.extend_from_slice(&chunk);
        if has_first_token(&seen) {
            return Ok(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    bail!("a paced stream ended without a token: {}", String::from_utf8_lossy(&seen))
}

/// Whether a complete SSE event with non-empty `content` has arrived.
fn has_first_token(stream: &[u8]) -> bool {
    let complete = match stream.windows(2).rposition(|w| w == b"\n\n") {
        Some(end) => &stream[..end],
        None => return false,
    };
    String::from_utf8_lossy(complete)
        .split("\"content\":\"")
        .skip(1)
        .any(|rest| !rest.starts_with('"'))
}

/// Times to first byte with and without the filter, alternating, measured by curl.
pub fn first_byte_times(arms: &Arms, body: &str, samples: u32) -> Result<(Vec<f64>, Vec<f64>)> {
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for i in 0..samples * 2 {
        let filtered = i % 2 == 0;
        let base = if filtered { &arms.filtered.url } else { &arms.plain.url };
        let output = Command::new("curl")
            .args([
                "-sS",
                "-N",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{time_starttransfer}",
                "-H",
                "Content-Type: application/json",
            ])
            .args(["-H", &format!("Authorization: Bearer {}", arms.api_key), "--data-binary", body])
            .arg(format!("{base}/v1/chat/completions"))
            .output()
            .context("running curl (is it installed?)")?;
        let text = String::from_utf8_lossy(&output.stdout);
        let mut parts = text.split_whitespace();
        if parts.next() != Some("200") {
            bail!(
                "a streamed request answered `{text}`: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let seconds: f64 = parts.next().context("no time from curl")?.parse()?;
        if filtered {
            with.push(seconds * 1e3)
        } else {
            without.push(seconds * 1e3)
        }
    }
    Ok((with, without))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_token_is_the_first_complete_event_with_content() {
        let role =
            b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"
                .to_vec();
        assert!(!has_first_token(&role));
        let mut partial = role.clone();
        partial.extend_from_slice(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}");
        assert!(!has_first_token(&partial), "not complete yet");
        partial.extend_from_slice(b"\n\n");
        assert!(has_first_token(&partial));
    }
}
