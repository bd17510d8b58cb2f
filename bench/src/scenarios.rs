//! Which scenarios a run measures, in which order and on which processes: every one (a control
//! plane and the arms shared by the gateway scenarios, then the scale scenario on its own stack),
//! or one group alone (`--only`) on its own control plane and Envoys.

use anyhow::{Context, Result};
use gateway_workspace::paths;

use crate::arms::Arms;
use crate::cp::{self, ControlPlane};
use crate::report::Report;
use crate::settings::Settings;
use crate::{gateway, limits, peers, scale, sse, sse_wasm, ttft};

/// Every scenario (the peer arm only when `s.peers`).
pub async fn all(s: &Settings, report: &mut Report) -> Result<()> {
    filter_alone(s, report)?;
    let cp = start_control_plane(s).await?;
    cp::als_ingest(&cp, s.als_rows, report).await?;
    {
        let arms = Arms::start(&cp, &s.dir).await.context("starting the Envoys")?;
        gateway::mock_capacity(&arms, s, report)?;
        gateway::non_streamed(&arms, s, report)?;
        gateway::floor(&arms, s, report)?;
        gateway::floor_gap(report);
        gateway::native(&arms, s, report)?;
        limits::non_streamed(&arms, s, report)?;
        gateway::streamed(&arms, s, report)?;
        ttft::paced(&arms, s, report).await?;
        if s.peers {
            peers::measure(&arms, s, report).await;
        } else {
            peers::skipped(report);
        }
    }
    cp::logs_query(&cp, s, s.log_rows, report).await?;
    drop(cp);
    scale::measure(s, report).await.context("the scale scenario")
}

/// The filter without Envoy: its size, and its SSE parser natively and as wasm under Node (the
/// latter reported as not measured when it cannot run here).
fn filter_alone(s: &Settings, report: &mut Report) -> Result<()> {
    let wasm = paths::filter_wasm()?;
    let bytes = std::fs::metadata(&wasm)?.len() as f64;
    report.set("wasm_bytes", bytes, "bytes", "the filter, profile wasm (LTO, stripped)");
    sse::native(s.sse_budget, report)?;
    if let Err(e) = sse_wasm::measure(&sse::stream_files()?, s.sse_budget, report) {
        eprintln!("gateway-bench: the wasm parser was not measured: {e:#}");
        report.not_measured("sse_mb_per_s_wasm", "MB/s", format!("{e:#}"));
    }
    Ok(())
}

/// The two builds and the floor against no filter (`--only builds`), on their own control plane
/// and Envoys.
pub async fn builds_alone(s: &Settings, report: &mut Report) -> Result<()> {
    let cp = start_control_plane(s).await?;
    let arms = Arms::start(&cp, &s.dir).await.context("starting the Envoys")?;
    gateway::non_streamed(&arms, s, report)?;
    gateway::floor(&arms, s, report)?;
    gateway::floor_gap(report);
    gateway::native(&arms, s, report)?;
    gateway::streamed(&arms, s, report)
}

/// The native module against no filter alone (`--only native`), on its own control plane and
/// Envoys.
pub async fn native_alone(s: &Settings, report: &mut Report) -> Result<()> {
    let cp = start_control_plane(s).await?;
    let arms = Arms::start(&cp, &s.dir).await.context("starting the Envoys")?;
    gateway::native(&arms, s, report)
}

/// The control plane's access-log ingest alone (`--only ingest`), on its own control plane.
pub async fn ingest_alone(s: &Settings, report: &mut Report) -> Result<()> {
    let cp = start_control_plane(s).await?;
    cp::als_ingest(&cp, s.als_rows, report).await
}

/// The limits arm alone (`--only limits`), on its own control plane and Envoys.
pub async fn limits_alone(s: &Settings, report: &mut Report) -> Result<()> {
    let cp = start_control_plane(s).await?;
    let arms = Arms::start(&cp, &s.dir).await.context("starting the Envoys")?;
    limits::non_streamed(&arms, s, report)
}

/// The peer arm alone (`--only peers`), on its own control plane and Envoys.
pub async fn peers_alone(s: &Settings, report: &mut Report) -> Result<()> {
    let cp = start_control_plane(s).await?;
    let arms = Arms::start(&cp, &s.dir).await.context("starting the Envoys")?;
    peers::measure(&arms, s, report).await;
    Ok(())
}

/// The scale scenario alone (`--only scale`): it starts a stack of its own either way.
pub async fn scale_alone(s: &Settings, report: &mut Report) -> Result<()> {
    scale::measure(s, report).await.context("the scale scenario")
}

async fn start_control_plane(s: &Settings) -> Result<ControlPlane> {
    ControlPlane::start(&cp::binary(s.release)?, &s.dir).await.context("starting the control plane")
}
