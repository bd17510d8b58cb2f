//! `cargo xtask`: the project's own commands (the rust-analyzer convention). Each task is a
//! module; everything a fresh machine needs is installed by [`setup`]. xtask itself stays light
//! (its dependencies build in seconds): what runs the stack (`up`) and measures it (`bench`) are
//! binaries of their own crates, `gateway-stack` and `gateway-bench`, that xtask builds and runs
//! once it has set up and built everything they need.
//!
//! - `cargo xtask up`    — set up, build and run the gateway locally (see `up`).
//! - `cargo xtask test`  — set up, build and run every test.
//! - `cargo xtask build` — set up and build the filter and the binaries.
//! - `cargo xtask setup` — install the wasm target and Envoy only.
//! - `cargo xtask bench` — measure the gateway's cost side by side (see `bench`).
//! - `cargo xtask oci`   — package the filter as an OCI image (see `oci`).
//! - `cargo xtask fuzz`  — fuzz the filter's parsers from the seed corpus (see `fuzz`).

mod bench;
mod build;
mod fuzz;
mod oci;
mod setup;
mod test;
mod up;
mod wasm_bindgen;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "vllm-gateway's project commands"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what is missing: the wasm32-wasip1 target and an Envoy binary.
    Setup,
    /// Set up, then build the filter (wasm and native) and the control plane.
    Build,
    /// Set up, build, and run every test (unit and end-to-end).
    Test(test::TestArgs),
    /// Set up, build, and run the gateway: control plane, mock vLLM (unless --model), Envoy
    /// (`gateway-up`; `cargo xtask up --help` for its flags).
    Up(build::Forwarded),
    /// Measure the gateway's cost side by side, target/bench/report.json (`gateway-bench`;
    /// `cargo xtask bench --help` for its flags).
    Bench(build::Forwarded),
    /// Package the filter as an OCI image (Istio Wasm format) in target/oci/, without Docker.
    Oci(oci::OciArgs),
    /// Fuzz the filter's parsers (mutational, from fuzz/corpus); crashes go to target/fuzz-crashes/.
    Fuzz(fuzz::FuzzArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run().map(|_| ()),
        Task::Build => {
            setup::run()?;
            build::run()
        }
        Task::Test(args) => test::run(&args),
        Task::Up(args) => up::run(&args),
        Task::Bench(args) => bench::run(&args),
        Task::Oci(args) => oci::run(&args),
        Task::Fuzz(args) => fuzz::run(&args),
    }
}
