//! Checks of the glue that need no Envoy: the callbacks it declares exist in the Envoy the
//! project installs (a module calling one it lacks would fail to load, or worse).

use super::abi::CALLBACKS;

/// The installed Envoy (`ENVOY_BIN`, else the project's own under `.tools/`), if there is one.
fn envoy_binary() -> Option<std::path::PathBuf> {
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        return Some(bin.into());
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let bin = root.join(".tools/envoy/envoy/_bin/envoy");
    bin.is_file().then_some(bin)
}

#[test]
fn every_callback_is_exported_by_the_installed_envoy() {
    let Some(bin) = envoy_binary() else {
        panic!("no Envoy binary: run `cargo xtask setup` or set ENVOY_BIN");
    };
    let bytes = std::fs::read(&bin).expect("the Envoy binary reads");
    for name in CALLBACKS {
        // An exported symbol's name is an entry of the dynamic string table: NUL on each side.
        let needle = [b"\0", name.as_bytes(), b"\0"].concat();
        let found = memchr::memmem::find(&bytes, &needle).is_some();
        assert!(found, "{name} is not exported by {}", bin.display());
    }
}
