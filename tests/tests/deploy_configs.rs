//! The docker-compose deployment, checked without Docker: `docker-compose.yml` against the Envoy
//! config it mounts (files, hostnames, ports, tokens), that Envoy config with `envoy --mode
//! validate` (real binary, real filter); and the index of every shipped config and its test
//! (`docs/configs.md`). The guides and the Istio manifests: `deploy_guides.rs`.

mod deploy_support;

use std::collections::BTreeSet;

use anyhow::{anyhow, Result};
use deploy_support::*;
use gateway_workspace::paths;
use serde_yaml::Value;
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
