//! The load generator: `wrk` (Debian package `wrk`, installed with apt-get when missing). A Lua
//! script sets the request and prints the run's summary as one JSON line, which is parsed here.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use gateway_workspace::command::run_checked;
use gateway_workspace::paths;
use serde_json::{json, Value};

use crate::cpu::CpuPerRequest;

/// One request shape.
#[derive(Debug, Clone)]
pub struct Load {
    /// Full URL.
    pub url: String,
    /// `GET` or `POST`.
    pub method: &'static str,
    /// JSON body (POST only).
    pub body: Option<String>,
    /// `Authorization: Bearer …`, if any.
    pub bearer: Option<String>,
}

/// What one wrk run measured.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Completed requests.
    pub requests: f64,
    /// Wall time of the run, seconds.
    pub seconds: f64,
    /// Latency percentiles, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Response bytes read (headers and bodies).
    pub bytes: f64,
    /// CPU per request by process, when the caller measured it.
    pub cpu: Option<CpuPerRequest>,
}

impl Run {
    /// Requests per second.
    pub fn rps(&self) -> f64 {
        self.requests / self.seconds
    }

    /// As JSON for the report's details.
    pub fn json(&self) -> Value {
        let mut v = json!({"requests": self.requests, "seconds": self.seconds, "rps": self.rps(), "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "bytes_per_response": self.bytes / self.requests});
        if let Some(cpu) = self.cpu {
            v["cpu_us_per_request"] = cpu.json();
        }
        v
    }
}

/// The wrk binary: `WRK_BIN`, else on `PATH`, else installed with apt-get.
pub fn ensure() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("WRK_BIN") {
        return Ok(PathBuf::from(bin));
    }
    if let Some(found) = paths::find_on_path("wrk") {
        return Ok(found);
    }
    eprintln!("gateway-bench: installing wrk (Debian package)");
    let status = Command::new("apt-get").args(["install", "-y", "-qq", "wrk"]).status();
    if !status.is_ok_and(|s| s.success()) {
        // A stale package list is the usual cause.
        run_checked(Command::new("apt-get").args(["update", "-qq"]))?;
        run_checked(Command::new("apt-get").args(["install", "-y", "-qq", "wrk"]))?;
    }
    paths::find_on_path("wrk").context("wrk is still not on PATH after apt-get install wrk")
}

/// The Lua script for `load`: request set-up plus a `done` that prints one JSON line.
fn script(load: &Load) -> String {
    let mut lua = format!("wrk.method = \"{}\"\n", load.method);
    if let Some(body) = &load.body {
        lua.push_str(&format!(
            "wrk.body = [==[{body}]==]\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        ));
    }
    if let Some(token) = &load.bearer {
        lua.push_str(&format!("wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"));
    }
    lua.push_str(
        r#"done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_JSON {\"requests\":%d,\"bytes\":%d,\"duration_us\":%d,\"socket_errors\":%d,\"bad_status\":%d,\"p50_us\":%.1f,\"p99_us\":%.1f}\n",
    summary.requests, summary.bytes, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"#,
    );
    lua
}

/// Runs wrk for `duration` with `connections` (threads: at most 2, never more than connections).
/// Fails when any request failed or answered >= 400: a fast error is not a measurement.
pub fn run(
    wrk: &Path,
    dir: &Path,
    load: &Load,
    connections: u32,
    duration: Duration,
) -> Result<Run> {
    let script_path = dir.join(format!("wrk-{}.lua", std::process::id()));
    std::fs::write(&script_path, script(load))?;
    let threads = connections.clamp(1, 2);
    let secs = duration.as_secs().max(1);
    let output = Command::new(wrk)
        .args([
            "-t",
            &threads.to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{secs}s"),
        ])
        .args(["--timeout", "10s", "-s"])
        .arg(&script_path)
        .arg(&load.url)
        .output()
        .context("running wrk")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("wrk failed: {}\n{stdout}{}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    parse(&stdout).with_context(|| format!("wrk on {} ({} connections)", load.url, connections))
}

fn parse(stdout: &str) -> Result<Run> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("WRK_JSON "))
        .with_context(|| format!("no summary in wrk's output:\n{stdout}"))?;
    let v: Value = serde_json::from_str(line)?;
    let num = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    if num("socket_errors") > 0.0 || num("bad_status") > 0.0 {
        bail!("requests failed during the run: {line}\n{stdout}");
    }
    if num("requests") < 1.0 {
        bail!("no request completed: {line}");
    }
    Ok(Run {
        requests: num("requests"),
        seconds: num("duration_us") / 1e6,
        p50_ms: num("p50_us") / 1e3,
        p99_ms: num("p99_us") / 1e3,
        bytes: num("bytes"),
        cpu: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_line_parses_and_errors_fail() {
        let ok = "Running\nWRK_JSON {\"requests\":100,\"duration_us\":2000000,\"socket_errors\":0,\"bad_status\":0,\"p50_us\":500.0,\"p99_us\":1500.0}\n";
        let run = parse(ok).unwrap();
        assert_eq!(run.rps(), 50.0);
        assert_eq!((run.p50_ms, run.p99_ms), (0.5, 1.5));
        assert!(parse(&ok.replace("\"bad_status\":0", "\"bad_status\":3")).is_err());
        assert!(parse("nothing").is_err());
    }
}
