//! The workspace on this machine, for the tools that build, run and measure it (`cargo xtask`,
//! the stack launcher, the bench, the end-to-end tests): where its parts are ([`paths`]) and how
//! commands run in it ([`command`]). Deliberately light (only `anyhow`), so that `cargo xtask`
//! builds in seconds.

pub mod command;
pub mod paths;
