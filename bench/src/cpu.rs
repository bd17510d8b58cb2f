//! Where the CPU goes during a load run: the CPU time each process of the run used (from
//! `/proc/<pid>/stat`), per completed request. On a 2-core machine every arm is CPU-bound, so a
//! throughput ratio is a ratio of whole-machine CPU per request; this splits it by process, so
//! the report shows what the filter adds to Envoy itself and what it adds elsewhere.
//! [`group_cpu`] sums a whole process group (a peer proxy and its worker processes).

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::wrk::Run;

/// Pause after each run before its CPU is read, so that the control plane's share of the run
/// (Envoy flushes access-log entries every 0.2 s, the control plane writes them in batches) is
/// not counted in the next one.
pub const SETTLE: Duration = Duration::from_millis(600);

/// Linux reports process times in USER_HZ ticks, 100 per second on every architecture the
/// project builds for (x86_64, aarch64).
const TICKS_PER_SECOND: f64 = 100.0;

/// The processes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Processes {
    /// The Envoy under load.
    pub envoy: u32,
    /// The control plane (its access-log sink receives every request's entry).
    pub control_plane: u32,
}

/// CPU used so far, per process.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    envoy: Duration,
    control_plane: Duration,
    /// This process: the in-process mock vLLM and the bench's own runtime.
    mock: Duration,
    /// Waited-for children of this process: the load generator runs that ended.
    load_generator: Duration,
}

/// The fields of a `/proc/<pid>/stat` line after the command name, which may hold spaces and
/// parentheses (so they start after the last `)`): state is field 3 of proc(5), index 0 here.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default().split_whitespace().collect()
}

/// Field `i` of [`stat_fields`], as a number.
fn field(fields: &[&str], i: usize) -> Result<f64> {
    Ok(fields.get(i).context("a short /proc stat line")?.parse::<f64>()?)
}

fn ticks(n: f64) -> Duration {
    Duration::from_secs_f64(n / TICKS_PER_SECOND)
}

/// User plus system time of a process, and of its waited-for children, from its stat line.
fn times(pid: &str) -> Result<(Duration, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let fields = stat_fields(&stat);
    // utime (field 14 of proc(5)) is index 11 here; then stime, cutime, cstime.
    let own = field(&fields, 11)? + field(&fields, 12)?;
    let children = field(&fields, 13)? + field(&fields, 14)?;
    Ok((ticks(own), ticks(children)))
}

/// User plus system time used so far by the live processes of the process group `pgid` (a
/// server and its worker processes, started in a group of their own).
pub fn group_cpu(pgid: u32) -> Result<Duration> {
    let mut total = Duration::ZERO;
    for entry in std::fs::read_dir("/proc")? {
        let name = entry?.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else {
            continue;
        };
        // A process may end between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let fields = stat_fields(&stat);
        // pgrp is field 5 of proc(5).
        if field(&fields, 2)? == f64::from(pgid) {
            total += ticks(field(&fields, 11)? + field(&fields, 12)?);
        }
    }
    Ok(total)
}

impl Snapshot {
    /// The CPU used so far by each process of `p`.
    pub fn take(p: Processes) -> Result<Snapshot> {
        let (mock, load_generator) = times("self")?;
        Ok(Snapshot {
            envoy: times(&p.envoy.to_string())?.0,
            control_plane: times(&p.control_plane.to_string())?.0,
            mock,
            load_generator,
        })
    }

    /// Envoy's and the control plane's CPU so far: the gateway's whole stack.
    pub fn stack(&self) -> Duration {
        self.envoy + self.control_plane
    }

    /// Microseconds of CPU per request between `self` (before) and `after`, per process.
    pub fn per_request(&self, after: &Snapshot, requests: f64) -> CpuPerRequest {
        let us =
            |a: Duration, b: Duration| a.saturating_sub(b).as_secs_f64() * 1e6 / requests.max(1.0);
        CpuPerRequest {
            envoy: us(after.envoy, self.envoy),
            control_plane: us(after.control_plane, self.control_plane),
            mock: us(after.mock, self.mock),
            load_generator: us(after.load_generator, self.load_generator),
        }
    }
}

/// Microseconds of CPU per completed request, by process.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuPerRequest {
    /// Envoy (with or without the filter).
    pub envoy: f64,
    /// The control plane.
    pub control_plane: f64,
    /// The mock vLLM (and the bench process around it).
    pub mock: f64,
    /// wrk.
    pub load_generator: f64,
}

impl CpuPerRequest {
    /// All processes together.
    pub fn total(&self) -> f64 {
        self.envoy + self.control_plane + self.mock + self.load_generator
    }

    /// What the gateway's whole stack costs per request: Envoy plus the control plane (which
    /// ingests every request's access-log entry).
    pub fn stack(&self) -> f64 {
        self.envoy + self.control_plane
    }

    /// The note of `stack_cpu_us_per_request`: `self` is the filtered arm's, `plain` plain
    /// Envoy's (router only) under the same load.
    pub fn stack_note(&self, plain: &CpuPerRequest) -> String {
        format!(
            "Envoy with the filter ({:.0}) plus the control plane's access-log ingest ({:.0}), per request, non-streamed, concurrency 32; plain Envoy (router only) {:.0} us: {:.0} us more",
            self.envoy,
            self.control_plane,
            plain.envoy,
            self.stack() - plain.envoy
        )
    }

    /// The request-weighted mean of several runs' figures.
    pub fn mean(runs: &[(CpuPerRequest, f64)]) -> CpuPerRequest {
        let requests: f64 = runs.iter().map(|(_, n)| n).sum::<f64>().max(1.0);
        let sum = |f: fn(&CpuPerRequest) -> f64| {
            runs.iter().map(|(c, n)| f(c) * n).sum::<f64>() / requests
        };
        CpuPerRequest {
            envoy: sum(|c| c.envoy),
            control_plane: sum(|c| c.control_plane),
            mock: sum(|c| c.mock),
            load_generator: sum(|c| c.load_generator),
        }
    }

    /// As JSON for the report's details.
    pub fn json(&self) -> Value {
        let round = |v: f64| (v * 10.0).round() / 10.0;
        json!({"envoy": round(self.envoy), "control_plane": round(self.control_plane), "mock": round(self.mock), "load_generator": round(self.load_generator), "total": round(self.total())})
    }
}

/// Runs `run_one(true)` and `run_one(false)` alternated ABBA over `rounds` (so that a drift of
/// the machine weighs on both alike), each with the CPU per request of the processes
/// `processes` names for its side, read once Envoy has flushed the run's access-log entries and
/// the control plane written them ([`SETTLE`]). Returns the `true` runs and the `false` runs.
pub fn abba(
    rounds: u32,
    processes: impl Fn(bool) -> Processes,
    mut run_one: impl FnMut(bool) -> Result<Run>,
) -> Result<(Vec<Run>, Vec<Run>)> {
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let first = round % 2 == 0;
        for side in [first, !first] {
            let before = Snapshot::take(processes(side))?;
            let mut run = run_one(side)?;
            std::thread::sleep(SETTLE);
            run.cpu = Some(before.per_request(&Snapshot::take(processes(side))?, run.requests));
            if side {
                with.push(run)
            } else {
                without.push(run)
            }
        }
    }
    Ok((with, without))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_readable_stat_line_and_uses_cpu() {
        let before = times("self").unwrap();
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = times("self").unwrap();
        assert!(after.0 > before.0, "60 ms of spinning shows as CPU time");
    }

    #[test]
    fn per_request_figures_divide_by_requests_and_weigh_runs() {
        let zero = Duration::ZERO;
        let before =
            Snapshot { envoy: zero, control_plane: zero, mock: zero, load_generator: zero };
        let after = Snapshot {
            envoy: Duration::from_millis(100),
            control_plane: Duration::from_millis(50),
            mock: zero,
            load_generator: Duration::from_millis(10),
        };
        let c = before.per_request(&after, 1000.0);
        assert_eq!((c.envoy, c.control_plane, c.load_generator), (100.0, 50.0, 10.0));
        assert_eq!(c.total(), 160.0);
        assert_eq!(c.stack(), 150.0);
        let m = CpuPerRequest::mean(&[(c, 1000.0), (CpuPerRequest::default(), 3000.0)]);
        assert_eq!(m.envoy, 25.0);
    }

    #[test]
    fn this_process_group_uses_at_least_this_process_cpu() {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let pgid = field(&stat_fields(&stat), 2).unwrap() as u32;
        let own = times("self").unwrap().0;
        assert!(group_cpu(pgid).unwrap() >= own);
    }
}
