//! `gateway-fuzz`: fuzzes the filter's parsers (see the library docs); `cargo xtask fuzz` runs it
//! built with the release profile.
//!
//! ```text
//! gateway-fuzz [--seconds N] [--iterations N] [--target NAME[,NAME…]] [--seed S]
//! gateway-fuzz --target NAME --replay FILE
//! gateway-fuzz --list
//! ```
//!
//! Without `--seconds` or `--iterations` each target runs for 60 s; with both, whichever ends
//! first. Without `--seed` a seed is drawn from the clock and printed, so a run can be repeated.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use gateway_fuzz::corpus;
use gateway_fuzz::runner::{self, Budget, Crash};
use gateway_fuzz::targets::{self, Target, TARGETS};

/// The command line.
#[derive(Debug, Default)]
struct Args {
    seconds: Option<f64>,
    iterations: Option<u64>,
    targets: Vec<String>,
    seed: Option<u64>,
    replay: Option<PathBuf>,
    list: bool,
}

fn main() -> Result<()> {
    let args = parse_args(std::env::args().skip(1))?;
    if args.list {
        for target in TARGETS {
            println!("{:<14} {}", target.name, target.about);
        }
        return Ok(());
    }
    let chosen = chosen_targets(&args.targets)?;
    if let Some(file) = &args.replay {
        return replay(&chosen, file);
    }
    let seed = args.seed.unwrap_or_else(clock_seed);
    let budget = Budget {
        time: match (args.seconds, args.iterations) {
            (None, None) => Some(Duration::from_secs(60)),
            (seconds, _) => seconds.map(Duration::from_secs_f64),
        },
        iterations: args.iterations,
        seed,
    };
    eprintln!("fuzz: seed {seed} (repeat with --seed {seed}); mutational, seeded from fuzz/corpus, not coverage-guided");
    let crashes = fuzz_all(&chosen, &budget)?;
    if !crashes.is_empty() {
        for crash in &crashes {
            eprintln!("fuzz: {crash}");
        }
        bail!(
            "{} target(s) crashed; each input is saved above (replay: --target NAME --replay FILE)",
            crashes.len()
        );
    }
    Ok(())
}

/// Fuzzes each target in turn; the crashes found.
fn fuzz_all(chosen: &[&'static Target], budget: &Budget) -> Result<Vec<Crash>> {
    let crash_dir = corpus::crash_dir();
    let mut crashes = Vec::new();
    for target in chosen {
        let seeds: Vec<Vec<u8>> = corpus::seeds(target.name)
            .with_context(|| format!("reading the seeds of {}", target.name))?
            .into_iter()
            .map(|(_, bytes)| bytes)
            .collect();
        match runner::fuzz(target, &seeds, budget, &crash_dir) {
            Ok(report) => eprintln!("fuzz: {report}"),
            Err(crash) => {
                eprintln!("fuzz: {crash}");
                crashes.push(crash);
            }
        }
    }
    Ok(crashes)
}

/// Runs one saved input through the chosen target.
fn replay(chosen: &[&'static Target], file: &PathBuf) -> Result<()> {
    let [target] = chosen else { bail!("--replay needs exactly one --target") };
    let input = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    match runner::run_once(target, &input) {
        Ok(_) => {
            eprintln!("fuzz: {}: {} passes", target.name, file.display());
            Ok(())
        }
        Err(panic) => bail!("{}: {} {panic}", target.name, file.display()),
    }
}

fn chosen_targets(names: &[String]) -> Result<Vec<&'static Target>> {
    if names.is_empty() {
        return Ok(TARGETS.iter().collect());
    }
    names
        .iter()
        .flat_map(|n| n.split(','))
        .map(|name| targets::find(name).with_context(|| format!("no target {name:?} (see --list)")))
        .collect()
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args> {
    let mut parsed = Args::default();
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => parsed.seconds = Some(value()?.parse().context("--seconds")?),
            "--iterations" => parsed.iterations = Some(value()?.parse().context("--iterations")?),
            "--target" => parsed.targets.push(value()?),
            "--seed" => parsed.seed = Some(value()?.parse().context("--seed")?),
            "--replay" => parsed.replay = Some(PathBuf::from(value()?)),
            "--list" => parsed.list = true,
            "-h" | "--help" => {
                println!("gateway-fuzz [--seconds N] [--iterations N] [--target NAME[,NAME…]] [--seed S] [--replay FILE] [--list]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    Ok(parsed)
}

fn clock_seed() -> u64 {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    now.as_nanos() as u64 ^ u64::from(std::process::id())
}
