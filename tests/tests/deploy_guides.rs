//! The configurations a team copies into its own Envoy or Istio, checked without Kubernetes: the
//! existing-Envoy example (wasm and native) with `envoy --mode validate` (real binary, real
//! filter: an invalid plugin configuration fails validation), the guides against the files they
//! quote, the plugin-configuration reference against the parser, and the Istio manifests' plugin
//! configuration with the filter's own parser.

mod deploy_support;

use std::collections::BTreeSet;

use anyhow::{anyhow, Result};
use deploy_support::*;
use serde_yaml::Value;
use vllm_gateway_filter::config::PluginConfig;

#[test]
fn existing_envoy_example_passes_envoy_validate() -> Result<()> {
    envoy_validate(&read(EXISTING_ENVOY)?, "existing-envoy.yaml")
}

#[test]
fn envoy_validate_refuses_an_invalid_plugin_configuration() -> Result<()> {
    let bad = read(EXISTING_ENVOY)?.replace("\"cluster\": \"control_plane\"", "\"cluster\": \"\"");
    let err = envoy_validate(&bad, "bad.yaml")
        .err()
        .ok_or_else(|| anyhow!("Envoy accepted an empty state.cluster"))?;
    assert!(err.to_string().contains("invalid plugin configuration: state.cluster"), "{err}");
    Ok(())
}

/// The guide's native configuration: the example with the dynamic module in place of the wasm
/// filter.
fn native_example() -> Result<String> {
    with_native_filter(&read(EXISTING_ENVOY)?, &read(NATIVE_FILTER)?)
}

#[test]
fn existing_envoy_example_with_the_native_module_passes_envoy_validate() -> Result<()> {
    let native = native_example()?;
    assert!(
        native.contains("envoy.filters.http.dynamic_modules")
            && !native.contains("envoy.filters.http.wasm")
    );
    envoy_validate_native(&native, "existing-envoy-native.yaml")
}

#[test]
fn envoy_validate_refuses_an_invalid_plugin_configuration_of_the_native_module() -> Result<()> {
    let bad = native_example()?.replace("\"cluster\": \"control_plane\"", "\"cluster\": \"\"");
    let err = envoy_validate_native(&bad, "bad-native.yaml")
        .err()
        .ok_or_else(|| anyhow!("Envoy accepted an empty state.cluster"))?;
    assert!(err.to_string().contains("invalid plugin configuration: state.cluster"), "{err}");
    Ok(())
}

#[test]
fn existing_envoy_example_is_consistent() -> Result<()> {
    let config = yaml(EXISTING_ENVOY)?;
    let plugin = plugin_config_of(&config)?;
    let clusters = clusters(&config)?;
    for route in plugin.models.values() {
        assert!(
            clusters.contains_key(&route.cluster),
            "model cluster {} is not defined",
            route.cluster
        );
    }
    assert!(clusters.contains_key(&plugin.state.cluster));
    assert!(clusters.contains_key("gateway_als"));
    let wasm = wasm_filter(&config)?;
    assert_eq!(wasm["allow_on_headers_stop_iteration"].as_bool(), Some(true));
    assert_eq!(wasm["root_id"].as_str(), Some("vllm_gateway"));
    let text = read(EXISTING_ENVOY)?;
    assert!(text.contains(&format!("cluster_header: {}", plugin.cluster_header)));
    assert!(text.contains("filter_state_objects_to_log: [\"wasm.gw_usage\"]"));
    // The wasm filter comes before the router.
    let names: Vec<&str> =
        listener_filters(&config)?.iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(names.last(), Some(&"envoy.filters.http.router"));
    Ok(())
}

/// The fenced ```yaml blocks of a Markdown file.
fn yaml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```yaml") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap_or_default().join("\n")),
            (Some(lines), _) => lines.push(line),
            _ => {}
        }
    }
    blocks
}

#[test]
fn existing_envoy_guide_quotes_the_validated_example() -> Result<()> {
    let guide = read("docs/existing-envoy.md")?;
    let example = read(EXISTING_ENVOY)?;
    let native = read(NATIVE_FILTER)?;
    let blocks = yaml_blocks(&guide);
    assert!(blocks.len() >= 5, "the guide shows {} blocks", blocks.len());
    for block in &blocks {
        let quoted = example.contains(block.as_str()) || native.contains(block.as_str());
        assert!(
            quoted,
            "this block of the guide is not in {EXISTING_ENVOY} or {NATIVE_FILTER}:\n{block}"
        );
    }
    assert!(
        blocks.iter().any(|b| b.contains("# --- vllm-gateway: begin native_http_filter ---")),
        "the guide does not show the native module"
    );
    for part in [
        "stats_config",
        "buffer_limit",
        "request_ids_and_paths",
        "access_log",
        "routes",
        "http_filter",
        "clusters",
    ] {
        let begin = format!("# --- vllm-gateway: begin {part} ---");
        assert!(example.contains(&begin), "{begin}");
        assert!(
            blocks.iter().any(|b| b.contains(&begin)),
            "the guide does not show the {part} block"
        );
    }
    Ok(())
}

/// Every field path of a fully populated plugin configuration (`state.refresh_ms`, …).
fn field_paths(value: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let serde_json::Value::Object(map) = value {
        for (k, v) in map {
            let path = if prefix == "models." {
                "models.<name>".to_owned()
            } else {
                format!("{prefix}{k}")
            };
            out.insert(path.clone());
            field_paths(v, &format!("{path}."), out);
        }
    }
}

#[test]
fn plugin_config_reference_documents_every_field() -> Result<()> {
    let full = serde_json::json!({
        "models": {"m": {"cluster": "c", "api_key": "k"}},
        "state": {"cluster": "control_plane", "token": "0123456789abcdef", "authority": "a", "path": "/p", "refresh_ms": 1000, "timeout_ms": 2000, "long_poll_ms": 20000, "lookup_negative_ttl_ms": 2000, "lookups_per_second": 20},
        "max_request_body_bytes": 1, "max_buffered_request_bytes": 1, "cluster_header": "x-h", "usage_injection": "final", "default_model": "m",
        "endpoints": ["/v1/chat/completions"]
    });
    let parsed = PluginConfig::parse(full.to_string().as_bytes()).map_err(|e| anyhow!("{e}"))?;
    let mut fields = BTreeSet::new();
    field_paths(&serde_json::to_value(&parsed)?, "", &mut fields);
    let reference = read("docs/plugin-config.md")?;
    for field in &fields {
        assert!(
            reference.contains(&format!("`{field}`")),
            "docs/plugin-config.md does not document `{field}`"
        );
    }
    assert!(
        fields.contains("models.<name>.api_key") && fields.contains("state.timeout_ms"),
        "{fields:?}"
    );
    for mode in ["continuous", "final", "off"] {
        assert!(reference.contains(&format!("`{mode}`")), "usage_injection mode {mode}");
    }
    Ok(())
}

#[test]
fn istio_wasm_plugin_config_parses_with_the_filter_parser() -> Result<()> {
    let plugin = yaml("deploy/istio/wasmplugin.yaml")?;
    assert_eq!(plugin["kind"].as_str(), Some("WasmPlugin"));
    let spec = &plugin["spec"];
    assert!(str_of(&spec["url"], "url")?.starts_with("oci://"));
    assert_eq!(spec["phase"].as_str(), Some("AUTHN"));
    assert_eq!(spec["pluginName"].as_str(), Some("vllm_gateway"));
    let json = serde_json::to_string(&spec["pluginConfig"])?;
    let config = PluginConfig::parse(json.as_bytes()).map_err(|e| anyhow!("{e}"))?;
    for route in config.models.values() {
        assert!(
            route.cluster.starts_with("outbound|"),
            "{} is not an Istio cluster name",
            route.cluster
        );
    }
    // The route patch reads the header the plugin writes.
    let route = yaml("deploy/istio/envoyfilter-route.yaml")?;
    assert_eq!(route["kind"].as_str(), Some("EnvoyFilter"));
    let value = &route["spec"]["configPatches"][0]["patch"]["value"];
    assert_eq!(value["route"]["cluster_header"].as_str(), Some(config.cluster_header.as_str()));
    assert_eq!(strings(&value["request_headers_to_remove"]), vec![config.cluster_header.clone()]);
    Ok(())
}

/// The EnvoyFilter install: its filter block, put in place of the compose config's wasm filter,
/// passes `envoy --mode validate`, and its plugin config parses and sets what body routing needs.
#[test]
fn istio_envoyfilter_install_sets_stop_iteration_and_validates() -> Result<()> {
    let patch = yaml("deploy/istio/envoyfilter-wasm.yaml")?;
    assert_eq!(patch["kind"].as_str(), Some("EnvoyFilter"));
    let change = &patch["spec"]["configPatches"][0];
    assert_eq!(change["patch"]["operation"].as_str(), Some("INSERT_BEFORE"));
    let filter = change["patch"]["value"].clone();
    let config = &filter["typed_config"]["config"];
    assert_eq!(
        config["allow_on_headers_stop_iteration"].as_bool(),
        Some(true),
        "body routing needs it"
    );
    let plugin =
        PluginConfig::parse(str_of(&config["configuration"]["value"], "plugin config")?.as_bytes())
            .map_err(|e| anyhow!("{e}"))?;
    let wasm_plugin = yaml("deploy/istio/wasmplugin.yaml")?;
    let same = PluginConfig::parse(
        serde_json::to_string(&wasm_plugin["spec"]["pluginConfig"])?.as_bytes(),
    )
    .map_err(|e| anyhow!("{e}"))?;
    assert_eq!(plugin, same, "both Istio installs configure the filter the same way");

    let mut bootstrap: Value = serde_yaml::from_str(&render_compose()?)?;
    let filters = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"]
        .as_sequence_mut()
        .ok_or_else(|| anyhow!("no http_filters"))?;
    let at = filters
        .iter()
        .position(|f| f["name"].as_str() == Some("envoy.filters.http.wasm"))
        .ok_or_else(|| anyhow!("no wasm filter"))?;
    filters[at] = filter;
    // envoy_validate swaps quoted `.wasm` file names for the built filter.
    let text = serde_yaml::to_string(&bootstrap)?.replace(
        "filename: /var/local/wasm/vllm_gateway_filter.wasm",
        "filename: \"/var/local/wasm/vllm_gateway_filter.wasm\"",
    );
    envoy_validate(&text, "istio-envoyfilter.yaml")
}
