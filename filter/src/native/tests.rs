//! Checks of the glue that need no Envoy: the callbacks it declares exist in the Envoy the
//! project installs (a module calling one it lacks would fail to load, or worse).

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
    // Every callback the glue can call is declared in `abi.rs`: read the declarations there, so
    // that a new one cannot miss the check.
    let abi = include_str!("abi.rs");
    let declared: Vec<&str> = abi
        .split("pub fn ")
        .skip(1)
        .filter_map(|rest| rest.split('(').next())
        .filter(|name| name.starts_with("envoy_dynamic_module_callback_"))
        .collect();
    assert!(declared.len() >= 20, "found only {declared:?} in abi.rs");
    for name in declared {
        // An exported symbol's name is an entry of the dynamic string table: NUL on each side.
        let needle = [b"\0", name.as_bytes(), b"\0"].concat();
        let found = memchr::memmem::find(&bytes, &needle).is_some();
        assert!(found, "{name} is not exported by {}", bin.display());
    }
}
