//! Every deployment config the project ships is checked here, without Docker or Kubernetes:
//! `docker-compose.yml` against the Envoy config it mounts (files, hostnames, ports, tokens), that
//! Envoy config and the existing-Envoy example with `envoy --mode validate` (real binary, real
//! filter: an invalid plugin configuration fails validation), the guides against the files they
//! quote, and the Istio manifests' plugin configuration with the filter's own parser.

mod deploy_support;

use std::collections::BTreeSet;

use anyhow::{anyhow, Result};
use deploy_support::*;
use gateway_workspace::paths;
use serde_yaml::Value;
use vllm_gateway_filter::config::PluginConfig;
#[test]
fn compose_envoy_config_is_rendered_from_the_template() -> Result<()> {
    let rendered = render_compose()?;
    if std::env::var_os("UPDATE_DEPLOY_CONFIGS").is_some() {
        std::fs::write(root().join(COMPOSE_ENVOY), &rendered)?;
    }
    assert!(
        read(COMPOSE_ENVOY)? == rendered,
        "{COMPOSE_ENVOY} is stale: run this test with UPDATE_DEPLOY_CONFIGS=1"
    );
    Ok(())
}

#[test]
fn compose_envoy_config_passes_envoy_validate() -> Result<()> {
    envoy_validate(&read(COMPOSE_ENVOY)?, "compose-envoy.yaml")
}

#[test]
fn compose_file_mounts_existing_files_read_only() -> Result<()> {
    let compose = yaml("docker-compose.yml")?;
    let services = compose["services"].as_mapping().ok_or_else(|| anyhow!("no services"))?;
    let named: BTreeSet<String> = compose["volumes"]
        .as_mapping()
        .map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    for (name, service) in services {
        let name = str_of(name, "service name")?;
        assert!(service["healthcheck"]["test"].is_sequence(), "service {name} has no health check");
        for (source, target, ro) in mounts(service) {
            if source.starts_with("./") {
                assert!(
                    root().join(&source).is_file(),
                    "{name} mounts {source}, which does not exist"
                );
                assert!(ro, "{name} mounts {source} writable");
            } else {
                assert!(
                    named.contains(&source),
                    "{name} mounts volume {source}, not declared under volumes:"
                );
            }
            assert!(target.starts_with('/'), "{name}: mount target {target}");
        }
    }
    let envoy = &compose["services"]["envoy"];
    assert_eq!(envoy["image"].as_str(), Some("envoyproxy/envoy:v1.40.0"));
    let wasm_rel = paths::filter_wasm()?.strip_prefix(root())?.to_string_lossy().into_owned();
    assert!(
        mounts(envoy).iter().any(|(s, _, _)| s == &format!("./{wasm_rel}")),
        "the built filter ({wasm_rel}) is not mounted"
    );
    Ok(())
}

#[test]
fn compose_envoy_image_is_the_version_the_tests_use() -> Result<()> {
    let out = std::process::Command::new(paths::envoy_bin()?).arg("--version").output()?;
    let version = String::from_utf8_lossy(&out.stdout).into_owned();
    let image = yaml("docker-compose.yml")?["services"]["envoy"]["image"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let tag = image.rsplit_once(":v").map(|(_, t)| t.to_owned()).unwrap_or_default();
    let minor = tag.rsplit_once('.').map(|(m, _)| m.to_owned()).unwrap_or_default();
    assert!(
        !minor.is_empty() && version.contains(&format!("/{minor}.")),
        "image {image}, tests use {version}"
    );
    Ok(())
}

#[test]
fn compose_ports_and_hostnames_agree_with_the_envoy_config() -> Result<()> {
    let compose = yaml("docker-compose.yml")?;
    let svc = |n: &str| compose["services"][n].clone();
    let (envoy_svc, cp, mock) = (svc("envoy"), svc("control-plane"), svc("mock-vllm"));
    // Envoy starts through the start script, which renders the config mounted at its default
    // path (the token filled in) and runs Envoy on the result.
    let command = strings(&envoy_svc["command"]);
    assert_eq!(
        command.get(..2),
        Some(&["sh".to_owned(), "/etc/envoy/start.sh".to_owned()][..]),
        "{command:?}"
    );
    let source_of = |target: &str| {
        mounts(&envoy_svc).into_iter().find(|(_, t, _)| t == target).map(|(s, _, _)| s)
    };
    assert_eq!(source_of("/etc/envoy/start.sh").as_deref(), Some("./envoy/compose/start.sh"));
    assert_eq!(source_of("/etc/envoy/envoy.yaml").as_deref(), Some(&*format!("./{COMPOSE_ENVOY}")));
    let config = yaml(COMPOSE_ENVOY)?;
    // Wasm: the filename in the config is where the built filter is mounted.
    let wasm_in_config =
        str_of(&wasm_filter(&config)?["vm_config"]["code"]["local"]["filename"], "wasm filename")?;
    assert!(
        mounts(&envoy_svc).iter().any(|(s, t, _)| t == wasm_in_config && s.ends_with(".wasm")),
        "{wasm_in_config} is not mounted"
    );
    // Gateway port: published 5000 → the listener's port, on all interfaces inside the container.
    let listener = &config["static_resources"]["listeners"][0]["address"]["socket_address"];
    let published = strings(&envoy_svc["ports"]);
    let container_port: u64 =
        published.first().and_then(|p| p.rsplit(':').next()).unwrap_or_default().parse()?;
    assert!(
        published.iter().any(|p| p.ends_with(":5000:5000") || p == "5000:5000"),
        "gateway not on 5000: {published:?}"
    );
    assert_eq!(
        (listener["address"].as_str(), listener["port_value"].as_u64()),
        (Some("0.0.0.0"), Some(container_port))
    );
    // Control plane: cluster hosts are the service name, ports are the ones it listens on.
    let clusters = clusters(&config)?;
    let env = |k: &str| {
        cp["environment"][k]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("control-plane has no {k}"))
    };
    assert_eq!(
        clusters["control_plane"],
        ("control-plane".to_owned(), port_of(&env("GATEWAY_HTTP_ADDR")?)?)
    );
    assert_eq!(
        clusters["gateway_als"],
        ("control-plane".to_owned(), port_of(&env("GATEWAY_ALS_ADDR")?)?)
    );
    // The SQLite file is on the named volume.
    let db = env("GATEWAY_DB")?;
    assert!(
        mounts(&cp)
            .iter()
            .any(|(s, t, _)| !s.starts_with('.') && db.starts_with(&format!("sqlite://{t}/"))),
        "{db} is not on a volume"
    );
    // The filter's state token is the one the control plane generates into the secrets volume,
    // which Envoy mounts read-only where its start script reads it; no token is in the files.
    let plugin = plugin_config_of(&config)?;
    assert_eq!(plugin.state.token, COMPOSE_STATE_TOKEN_PLACEHOLDER);
    assert!(
        env("GATEWAY_STATE_TOKEN").is_err()
            && env("GATEWAY_ADMIN_TOKEN").is_err()
            && env("GATEWAY_DEV").is_err()
    );
    let secrets = env("GATEWAY_SECRETS_DIR")?;
    let volume_at = |service: &Value, writable: bool| {
        mounts(service)
            .into_iter()
            .find(|(s, t, ro)| *t == secrets && !s.starts_with('.') && *ro != writable)
            .map(|m| m.0)
    };
    assert!(volume_at(&cp, true).is_some(), "the control plane cannot write {secrets}");
    assert_eq!(
        volume_at(&envoy_svc, false),
        volume_at(&cp, true),
        "Envoy does not read the control plane's {secrets}"
    );
    assert_eq!(secrets, "/secrets", "envoy/compose/start.sh reads /secrets");
    // Logins are throttled by the client address Envoy forwards: Envoy's network is trusted.
    let subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"].as_str();
    assert_eq!(env("GATEWAY_TRUSTED_PROXIES").ok().as_deref(), subnet);
    assert_eq!(plugin.state.cluster, "control_plane");
    // Every model the filter routes is served by the mock, at the mock's address.
    let mock_cmd = strings(&mock["command"]);
    let mock_port = port_of(
        &flag_values(&mock_cmd, "--listen").pop().ok_or_else(|| anyhow!("mock has no --listen"))?,
    )?;
    let served: BTreeSet<String> = flag_values(&mock_cmd, "--model").into_iter().collect();
    let routed: BTreeSet<String> = plugin.models.keys().cloned().collect();
    assert_eq!(routed, served);
    assert_eq!(served.len(), 2);
    for route in plugin.models.values() {
        assert_eq!(
            clusters.get(&route.cluster),
            Some(&("mock-vllm".to_owned(), mock_port)),
            "{}",
            route.cluster
        );
    }
    // Envoy waits for what it depends on.
    for dep in ["control-plane", "mock-vllm"] {
        assert_eq!(
            envoy_svc["depends_on"][dep]["condition"].as_str(),
            Some("service_healthy"),
            "{dep}"
        );
    }
    Ok(())
}

/// The start script, run as compose runs it (with Envoy replaced by a command that does
/// nothing), writes the generated token into the config, and the result passes Envoy's
/// validation; a missing or malformed token file stops it.
#[test]
fn compose_start_script_fills_in_the_generated_state_token() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let run = |token: Option<&str>| -> Result<std::process::Output> {
        if let Some(token) = token {
            std::fs::write(dir.path().join("state-token"), token)?;
        }
        Ok(std::process::Command::new("sh")
            .arg(root().join("envoy/compose/start.sh"))
            .arg("--mode")
            .env("SECRETS_DIR", dir.path())
            .env("ENVOY_CONFIG", root().join(COMPOSE_ENVOY))
            .env("RENDERED_CONFIG", dir.path().join("envoy.yaml"))
            .env("ENVOY_BIN", "true")
            .output()?)
    };
    assert!(!run(None)?.status.success(), "ran without a token file");
    assert!(!run(Some("a token; rm -rf /"))?.status.success(), "took a malformed token");
    let token = "0f".repeat(32);
    assert!(run(Some(&token))?.status.success());
    let rendered = std::fs::read_to_string(dir.path().join("envoy.yaml"))?;
    assert!(!rendered.contains(COMPOSE_STATE_TOKEN_PLACEHOLDER));
    assert_eq!(
        rendered.matches(&token).count(),
        2,
        "the plugin's state.token and the access-log stream's authorization"
    );
    envoy_validate(&rendered, "compose-started.yaml")
}

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

/// Every config and manifest shipped, listed in docs/configs.md with the test that checks it.
const SHIPPED: [&str; 10] = [
    "envoy/gateway.yaml.tmpl",
    COMPOSE_ENVOY,
    EXISTING_ENVOY,
    "docker-compose.yml",
    "Dockerfile",
    "deploy/istio/wasmplugin.yaml",
    "deploy/istio/envoyfilter-als.yaml",
    "deploy/istio/envoyfilter-route.yaml",
    "deploy/istio/envoyfilter-wasm.yaml",
    "deploy/istio/envoyfilter-hcm.yaml",
];

#[test]
fn configs_index_lists_every_shipped_config_and_its_test() -> Result<()> {
    let index = read("docs/configs.md")?;
    for file in SHIPPED {
        assert!(root().join(file).is_file(), "{file} is missing");
        let row = index
            .lines()
            .find(|l| l.contains(&format!("`{file}`")))
            .ok_or_else(|| anyhow!("docs/configs.md does not list {file}"))?;
        assert!(row.contains("test"), "docs/configs.md names no test for {file}: {row}");
    }
    // Every `test_file::function` the index names exists.
    let mut named = 0;
    for name in index.split('`').filter(|s| s.contains("::") && !s.contains(' ')) {
        let (file, func) = name.split_once("::").unwrap_or_default();
        let source = read(&format!("tests/tests/{file}.rs"))?;
        assert!(
            source.contains(&format!("fn {func}(")),
            "docs/configs.md names {name}, which does not exist"
        );
        named += 1;
    }
    assert!(named >= 10, "docs/configs.md names only {named} tests");
    Ok(())
}
