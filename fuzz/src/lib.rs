//! Mutational fuzzing of the filter's pure core on stable Rust: no libFuzzer, no nightly.
//!
//! Each [`targets::Target`] takes arbitrary bytes, drives one parser of `vllm_gateway_filter` with
//! them and checks cheap invariants (the same result whatever way the input is split, a caller who
//! asked for everything gets the stream byte for byte, a reference model agrees, …). A panic is a
//! bug: the filter must never panic, because a trapped VM stops it for every request on that worker.
//!
//! The [`runner`] is mutational, seeded from recorded inputs (`fuzz/corpus/<target>/`: real vLLM
//! streams and bodies, request bodies, tokens, state documents). It is **not** coverage-guided:
//! its only feedback is which distinct outcomes a target reported, and a mutated input that
//! gives a new one joins the pool of inputs that are mutated further. Runs are repeatable: the
//! same seed gives the same inputs in the same order.

pub mod corpus;
pub mod mutate;
pub mod rng;
pub mod runner;
pub mod split;
pub mod targets;
