//! The fuzz targets: one per parser of the filter's pure core. Each takes arbitrary bytes, must
//! never panic, and asserts its invariants (an assertion that fails is a panic too, so the runner
//! treats both alike). Each returns a small *outcome* (a hash of what the input led to: refused or
//! read, how many events, which source of usage, …) that the runner uses as its only feedback.

mod credential;
mod json;
mod jwt;
mod key_state;
mod record;
mod request_body;
mod rewriter;
mod sse;
mod usage;

pub use jwt::{signed_token, Signer, DEFAULT_HEADER, NOW};

/// One fuzz target.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Its name: `--target`, and the folder of its seeds.
    pub name: &'static str,
    /// What it drives and checks, in a line.
    pub about: &'static str,
    /// Runs one input; panics on a bug; returns the input's outcome.
    pub run: fn(&[u8]) -> u64,
    /// Tokens of its input's grammar, for the mutator.
    pub dictionary: &'static [&'static [u8]],
}

/// Every target, in the order a run takes them.
pub const TARGETS: &[Target] = &[
    sse::TARGET,
    rewriter::TARGET,
    request_body::TARGET,
    credential::TARGET,
    jwt::TOKEN_TARGET,
    jwt::CLAIMS_TARGET,
    key_state::TARGET,
    usage::STREAM_TARGET,
    usage::SCAN_TARGET,
    record::TARGET,
];

/// The target named `name`.
pub fn find(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// An outcome made of a few small facts.
fn outcome(facts: &[u64]) -> u64 {
    facts.iter().fold(0xcbf2_9ce4_8422_2325, |h, &f| (h ^ f).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for target in TARGETS {
            assert_eq!(find(target.name).map(|t| t.name), Some(target.name));
        }
        assert!(find("nope").is_none());
    }
}
