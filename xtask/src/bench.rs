//! `cargo xtask bench`: sets up and builds what the bench measures (the filter's two builds, the
//! control plane; for a full run the control plane in release too, and the `wasm32-unknown-unknown`
//! target the SSE parser is measured in), then becomes `gateway-bench` (crate `gateway-bench`):
//! built in release for a full run, so that the native parser and the in-process mock are
//! measured optimised, and as it is for `--quick`. Its flags are `gateway-bench`'s
//! (`cargo xtask bench --help`).

use anyhow::Result;

use crate::build::{self, Forwarded};

/// Sets up, builds, and runs `gateway-bench` with `args`.
pub fn run(args: &Forwarded) -> Result<()> {
    let quick = args.args.iter().any(|a| a == "--quick");
    if !args.asks_for_help() {
        crate::setup::run()?;
        crate::setup::ensure_rust_target("wasm32-unknown-unknown")?;
        build::run()?;
        if !quick {
            build::release_control_plane()?;
        }
    }
    build::become_bin("gateway-bench", "gateway-bench", !quick, &args.args, &[])
}
