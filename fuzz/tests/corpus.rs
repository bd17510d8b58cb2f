//! Replays the whole seed corpus through every target: fast and deterministic, so `cargo test`
//! keeps each recorded input and each regression input (a crash the fuzzer once found, kept in
//! the corpus under a name that says what it broke) passing.

use gateway_fuzz::corpus;
use gateway_fuzz::runner::run_once;
use gateway_fuzz::targets::TARGETS;

#[test]
fn every_seed_passes_its_target() {
    let mut failures = Vec::new();
    for target in TARGETS {
        let seeds = corpus::seeds(target.name).expect("the corpus reads");
        assert!(
            !seeds.is_empty(),
            "{} has no seeds in {}",
            target.name,
            corpus::corpus_dir().display()
        );
        for (name, input) in seeds {
            if let Err(panic) = run_once(target, &input) {
                failures.push(format!("{}/{name}: {panic}", target.name));
            }
        }
    }
    assert!(failures.is_empty(), "seeds that fail:\n{}", failures.join("\n"));
}

#[test]
fn the_corpus_stays_small() {
    let total: u64 = TARGETS
        .iter()
        .flat_map(|t| corpus::seeds(t.name).expect("the corpus reads"))
        .map(|(_, input)| input.len() as u64)
        .sum();
    assert!(total < 1 << 20, "the seed corpus is {total} bytes: keep it under 1 MiB");
}

#[test]
fn a_short_run_is_repeatable() {
    let target = gateway_fuzz::targets::find("sse").expect("the sse target");
    let seeds: Vec<Vec<u8>> =
        corpus::seeds("sse").expect("the corpus reads").into_iter().map(|(_, s)| s).collect();
    let budget = gateway_fuzz::runner::Budget { time: None, iterations: Some(300), seed: 11 };
    let crashes = std::env::temp_dir().join("gateway-fuzz-test-crashes");
    let first = gateway_fuzz::runner::fuzz(target, &seeds, &budget, &crashes).expect("no crash");
    let second = gateway_fuzz::runner::fuzz(target, &seeds, &budget, &crashes).expect("no crash");
    assert_eq!(
        (first.runs, first.pool, first.outcomes),
        (second.runs, second.pool, second.outcomes)
    );
}
