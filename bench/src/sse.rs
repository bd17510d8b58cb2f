//! (c) The filter's SSE parser and usage extraction alone (`StreamAccounting`), natively, over
//! the recorded streams in `shared/fixtures` (beside the workspace, or `GATEWAY_FIXTURES`), cut
//! into 512-byte pieces as a network would.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gateway_workspace::paths;
use serde_json::json;
use vllm_gateway_filter::usage::StreamAccounting;

use crate::report::Report;

/// The recorded streams' files (`*.sse`) in [`paths::fixtures_dir`].
pub fn stream_files() -> Result<Vec<PathBuf>> {
    let dir = paths::fixtures_dir();
    let mut streams = Vec::new();
    let entries = std::fs::read_dir(&dir)
        .with_context(|| format!("reading the fixtures in {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "sse") {
            streams.push(path.canonicalize()?);
        }
    }
    if streams.is_empty() {
        bail!("no recorded *.sse streams in {}", dir.display());
    }
    streams.sort();
    Ok(streams)
}

fn recorded_streams() -> Result<Vec<Vec<u8>>> {
    stream_files()?.iter().map(|p| Ok(std::fs::read(p)?)).collect()
}

/// Feeds every stream through a fresh `StreamAccounting` until `budget` has passed.
pub fn native(budget: Duration, report: &mut Report) -> Result<()> {
    let streams = recorded_streams()?;
    let mut bytes = 0usize;
    let mut completion_tokens = 0u64;
    let started = Instant::now();
    while started.elapsed() < budget {
        for stream in &streams {
            let mut accounting = StreamAccounting::default();
            for piece in stream.chunks(512) {
                accounting.feed(std::hint::black_box(piece));
            }
            completion_tokens += std::hint::black_box(accounting.finish()).usage.completion_tokens;
            bytes += stream.len();
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if completion_tokens == 0 {
        bail!("the recorded streams yielded no usage: the parser measured nothing");
    }
    let mb_per_s = bytes as f64 / 1e6 / seconds;
    let profile = if cfg!(debug_assertions) { "debug build (quick run)" } else { "release build" };
    report.set(
        "sse_mb_per_s_native",
        mb_per_s,
        "MB/s",
        format!("{} recorded streams, 512-byte pieces, {profile}", streams.len()),
    );
    report.detail(
        "sse_native",
        json!({"bytes": bytes, "seconds": seconds, "streams": streams.len()}),
    );
    Ok(())
}
