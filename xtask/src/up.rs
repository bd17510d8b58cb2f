//! `cargo xtask up`: sets up and builds what is missing (the filter's two builds, the control
//! plane in release), then becomes `gateway-up` (crate `gateway-stack`), which runs the gateway on
//! this machine until Ctrl-C or SIGTERM. Its flags are `gateway-up`'s (`cargo xtask up --help`).

use anyhow::Result;
use gateway_workspace::paths;

use crate::build::{self, Forwarded};

/// Sets up, builds, and runs `gateway-up` with `args` (in place of this process, so that Ctrl-C
/// and SIGTERM reach it directly).
pub fn run(args: &Forwarded) -> Result<()> {
    if !args.asks_for_help() {
        crate::setup::run()?;
        build::run()?;
        build::release_control_plane()?;
    }
    // A debug build cannot keep up with Envoy's access-log stream under load.
    let control_plane = paths::release_control_plane();
    build::become_bin(
        "gateway-stack",
        "gateway-up",
        false,
        &args.args,
        &[("GATEWAY_CONTROL_PLANE_BIN", control_plane.as_os_str())],
    )
}
