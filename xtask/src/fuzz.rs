//! `cargo xtask fuzz`: runs the fuzz targets of `fuzz/` (crate `gateway-fuzz`), built with the
//! release profile. The fuzzer is mutational, seeded from the recorded inputs in `fuzz/corpus/`
//! (not coverage-guided; see that crate's docs). A crashing input is written to
//! `target/fuzz-crashes/<target>/` and the command fails.
//!
//! `cargo xtask test` runs every target briefly ([`brief`]) with a fixed seed, so that CI tries
//! the same inputs on every run; the corpus itself is replayed by `cargo test`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use clap::Args;

use gateway_workspace::command::{cargo, run_checked};

/// Seconds per target in `cargo xtask test` (nine targets: under 20 s, plus a cold release build
/// of about 30 s).
const BRIEF_SECONDS: &str = "2";
/// The seed of the brief run.
const BRIEF_SEED: &str = "14";

/// `cargo xtask fuzz` options.
#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Seconds per target.
    #[arg(long, default_value_t = 60.0)]
    pub seconds: f64,
    /// Only these targets (comma-separated; `--list` names them).
    #[arg(long)]
    pub target: Option<String>,
    /// The random seed, to repeat a run (default: from the clock, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run one saved input through `--target` instead of fuzzing.
    #[arg(long, requires = "target")]
    pub replay: Option<PathBuf>,
    /// List the targets.
    #[arg(long)]
    pub list: bool,
}

/// Runs the fuzzer as asked.
pub fn run(args: &FuzzArgs) -> Result<()> {
    let mut command = fuzzer();
    command.args(["--seconds", &args.seconds.to_string()]);
    if let Some(target) = &args.target {
        command.args(["--target", target]);
    }
    if let Some(seed) = args.seed {
        command.args(["--seed", &seed.to_string()]);
    }
    if let Some(file) = &args.replay {
        command.arg("--replay").arg(file);
    }
    if args.list {
        command.arg("--list");
    }
    run_checked(&mut command)
}

/// Every target for [`BRIEF_SECONDS`], from [`BRIEF_SEED`].
pub fn brief() -> Result<()> {
    run_checked(fuzzer().args(["--seconds", BRIEF_SECONDS, "--seed", BRIEF_SEED]))
}

/// `gateway-fuzz`, built with the release profile (the debug build is many times slower).
fn fuzzer() -> Command {
    let mut command = cargo();
    command.args(["run", "--quiet", "--release", "--package", "gateway-fuzz", "--"]);
    command
}
