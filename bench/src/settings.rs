//! How long and how much each scenario runs: briefly for `--quick` (every scenario, figures only
//! indicative), fully otherwise.

use std::path::PathBuf;
use std::time::Duration;

use crate::scale;

/// How long and how much each scenario runs.
pub struct Settings {
    /// The wrk binary.
    pub wrk: PathBuf,
    /// Scratch folder (configs, scripts, database).
    pub dir: PathBuf,
    /// ABBA rounds per comparison.
    pub rounds: u32,
    /// Length of each wrk run.
    pub run_time: Duration,
    /// Time-to-first-byte samples per arm.
    pub ttft_samples: u32,
    /// ALS entries replayed.
    pub als_rows: u32,
    /// Rows seeded for the log query.
    pub log_rows: u32,
    /// Time spent in the native parser.
    pub sse_budget: Duration,
    /// Use the release control plane.
    pub release: bool,
    /// The scale scenario's fleet and runs.
    pub scale: scale::Sizes,
    /// Run the peer arm ([`crate::peers`]).
    pub peers: bool,
}

impl Settings {
    /// A quick run's settings or a full run's, with the wrk binary and a scratch folder.
    pub fn new(quick: bool, peers: bool, wrk: PathBuf, dir: PathBuf) -> Self {
        if quick {
            Settings {
                wrk,
                dir,
                rounds: 1,
                run_time: Duration::from_secs(1),
                ttft_samples: 5,
                als_rows: 5_000,
                log_rows: 20_000,
                sse_budget: Duration::from_millis(200),
                release: false,
                scale: scale::Sizes::new(true),
                peers,
            }
        } else {
            Settings {
                wrk,
                dir,
                rounds: 4,
                run_time: Duration::from_secs(5),
                ttft_samples: 100,
                als_rows: 100_000,
                log_rows: 1_000_000,
                sse_budget: Duration::from_secs(3),
                release: true,
                scale: scale::Sizes::new(false),
                peers,
            }
        }
    }
}
