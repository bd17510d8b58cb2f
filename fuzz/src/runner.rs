//! The fuzzing loop: each target's seeds are run as they are, then, until the time or the
//! iteration budget is spent, an input of the pool is picked, mutated and run. A mutated input
//! whose outcome no earlier input had joins the pool (bounded), so later mutations build on it.
//!
//! A panic is caught (the target's own output is kept quiet), the input is shrunk for a moment
//! (bytes removed while the same panic, at the same place, still happens) and written to the
//! crash directory. An input that runs for [`HANG_SECS`] is written there too, and the process
//! exits: a loop that never ends is a bug like a panic.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use crate::corpus;
use crate::mutate::Mutator;
use crate::rng::{hash_bytes, Rng};
use crate::targets::Target;

/// An input that runs this long is a hang.
pub const HANG_SECS: u64 = 10;
/// The pool of inputs to mutate stops growing here.
const MAX_POOL: usize = 4096;
/// How long a crashing input is shrunk.
const SHRINK_TIME: Duration = Duration::from_secs(3);

/// How long to fuzz one target (until the first limit is reached; with none, forever), and from
/// which seed.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Stop after this long.
    pub time: Option<Duration>,
    /// Stop after this many mutated inputs.
    pub iterations: Option<u64>,
    /// The random seed (the same seed gives the same inputs).
    pub seed: u64,
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target.
    pub target: &'static str,
    /// Seeds and mutated inputs run.
    pub runs: u64,
    /// How long it took.
    pub elapsed: Duration,
    /// Inputs in the pool at the end (seeds included).
    pub pool: usize,
    /// Distinct outcomes seen.
    pub outcomes: usize,
}

impl Report {
    /// Inputs run per second.
    pub fn per_second(&self) -> f64 {
        self.runs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} runs in {:.1} s ({:.0}/s), pool {}, {} outcomes",
            self.target,
            self.runs,
            self.elapsed.as_secs_f64(),
            self.per_second(),
            self.pool,
            self.outcomes
        )
    }
}

/// An input that broke a target.
#[derive(Debug, Clone)]
pub struct Crash {
    /// The target.
    pub target: &'static str,
    /// Where the (shrunk) input was written.
    pub path: PathBuf,
    /// The panic, with where it happened.
    pub panic: String,
    /// The input's start, printable.
    pub preview: String,
}

impl fmt::Display for Crash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} crashed: {}\n  input: {}\n  saved: {}",
            self.target,
            self.panic,
            self.preview,
            self.path.display()
        )
    }
}

impl std::error::Error for Crash {}

/// Fuzzes `target` from `seeds` within `budget`; crashes are written under `crash_dir`.
pub fn fuzz(
    target: &'static Target,
    seeds: &[Vec<u8>],
    budget: &Budget,
    crash_dir: &Path,
) -> Result<Report, Crash> {
    quiet_panics();
    let watchdog = Watchdog::start(target.name, crash_dir.to_owned());
    let started = Instant::now();
    let mut pool: Vec<Vec<u8>> = if seeds.is_empty() { vec![Vec::new()] } else { seeds.to_vec() };
    let mut outcomes = HashSet::new();
    let mut runs = 0;
    let crash = |input: &[u8], panic: Panic| save_crash(target, input, panic, crash_dir, &watchdog);
    for seed in &pool {
        runs += 1;
        outcomes.insert(watchdog.run(target, seed).map_err(|p| crash(seed, p))?);
    }
    let mutator = Mutator::new(target.dictionary);
    let mut rng = Rng::new(budget.seed ^ hash_bytes(target.name.as_bytes()));
    let deadline = budget.time.map(|t| started + t);
    let mut mutated = 0;
    while budget.iterations.is_none_or(|n| mutated < n)
        && deadline.is_none_or(|d| Instant::now() < d)
    {
        let base = pool.get(rng.below(pool.len())).map_or(&[][..], Vec::as_slice);
        let input = mutator.mutate(base, &pool, &mut rng);
        mutated += 1;
        let outcome = watchdog.run(target, &input).map_err(|p| crash(&input, p))?;
        if outcomes.insert(outcome) && pool.len() < MAX_POOL {
            pool.push(input);
        }
    }
    watchdog.stop();
    Ok(Report {
        target: target.name,
        runs: runs + mutated,
        elapsed: started.elapsed(),
        pool: pool.len(),
        outcomes: outcomes.len(),
    })
}

/// Runs one input, reporting a panic as an error (with the panic's message and place).
pub fn run_once(target: &Target, input: &[u8]) -> Result<u64, String> {
    quiet_panics();
    run_caught(target, input).map_err(|p| p.to_string())
}

/// A caught panic.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Panic {
    message: String,
    /// `file:line:column`.
    place: String,
}

impl fmt::Display for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "panicked at {}: {}", self.place, self.message)
    }
}

thread_local! {
    /// Whether this thread is running a target under [`run_caught`].
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    /// The last panic caught on this thread, as the hook saw it.
    static LAST_PANIC: RefCell<Option<Panic>> = const { RefCell::new(None) };
}

/// Wraps the panic hook, once, so that a panic inside [`run_caught`] is kept for it and printed
/// nowhere (a run panics on purpose many times while it shrinks an input); any other panic goes
/// to the hook that was there before.
fn quiet_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !CATCHING.with(Cell::get) {
                return previous(info);
            }
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let place = info.location().map(|l| l.to_string()).unwrap_or_default();
            LAST_PANIC.with(|last| *last.borrow_mut() = Some(Panic { message, place }));
        }));
    });
}

fn run_caught(target: &Target, input: &[u8]) -> Result<u64, Panic> {
    CATCHING.with(|c| c.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    CATCHING.with(|c| c.set(false));
    result.map_err(|_| {
        let unknown = || Panic { message: "unknown panic".into(), place: String::new() };
        LAST_PANIC.with(|last| last.borrow_mut().take()).unwrap_or_else(unknown)
    })
}

fn save_crash(
    target: &'static Target,
    input: &[u8],
    panic: Panic,
    dir: &Path,
    watchdog: &Watchdog,
) -> Crash {
    let shrunk = shrink(target, input, &panic, watchdog);
    let path = corpus::save(dir, target.name, &shrunk)
        .unwrap_or_else(|e| PathBuf::from(format!("(not saved: {e})")));
    if shrunk.len() != input.len() {
        let _ = corpus::save(dir, &format!("{}-unshrunk", target.name), input);
    }
    watchdog.stop();
    Crash {
        target: target.name,
        path,
        panic: panic.to_string(),
        preview: corpus::preview(&shrunk, 400),
    }
}

/// `input` with as many bytes removed as can be while it still panics at the same place.
fn shrink(target: &Target, input: &[u8], panic: &Panic, watchdog: &Watchdog) -> Vec<u8> {
    let deadline = Instant::now() + SHRINK_TIME;
    let mut best = input.to_vec();
    let mut width = best.len().div_ceil(2).max(1);
    loop {
        let mut at = 0;
        let mut shrunk = false;
        while at < best.len() && Instant::now() < deadline {
            let mut candidate = best.clone();
            candidate.drain(at..(at + width).min(best.len()));
            match watchdog.run(target, &candidate) {
                Err(p) if p.place == panic.place => {
                    best = candidate;
                    shrunk = true;
                }
                _ => at += width,
            }
        }
        if Instant::now() >= deadline || (width == 1 && !shrunk) {
            return best;
        }
        if !shrunk {
            width = width.div_ceil(2);
        }
    }
}

/// Watches the running input from another thread: one that runs for [`HANG_SECS`] is written to
/// the crash directory and the process exits.
struct Watchdog {
    shared: Arc<Watched>,
}

struct Watched {
    /// Inputs started so far.
    started: AtomicU64,
    input: Mutex<Vec<u8>>,
    stopped: AtomicBool,
}

impl Watchdog {
    fn start(target: &'static str, crash_dir: PathBuf) -> Self {
        let shared = Arc::new(Watched {
            started: AtomicU64::new(0),
            input: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
        });
        let watched = shared.clone();
        std::thread::spawn(move || watch(&watched, target, &crash_dir));
        Self { shared }
    }

    fn run(&self, target: &Target, input: &[u8]) -> Result<u64, Panic> {
        if let Ok(mut held) = self.shared.input.lock() {
            held.clear();
            held.extend_from_slice(input);
        }
        self.shared.started.fetch_add(1, Ordering::Relaxed);
        run_caught(target, input)
    }

    fn stop(&self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

fn watch(watched: &Watched, target: &str, crash_dir: &Path) {
    let mut last = (u64::MAX, Instant::now());
    while !watched.stopped.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        let started = watched.started.load(Ordering::Relaxed);
        if started != last.0 {
            last = (started, Instant::now());
        } else if last.1.elapsed() >= Duration::from_secs(HANG_SECS) {
            let input = watched.input.lock().map(|i| i.clone()).unwrap_or_default();
            let saved = corpus::save(crash_dir, target, &input);
            eprintln!(
                "fuzz: {target} hangs (one input ran {HANG_SECS} s): {}",
                corpus::preview(&input, 400)
            );
            match saved {
                Ok(path) => eprintln!("fuzz: saved: {}", path.display()),
                Err(e) => eprintln!("fuzz: could not save it: {e}"),
            }
            std::process::exit(3);
        }
    }
}
