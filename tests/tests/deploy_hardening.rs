//! What every shipped Envoy configuration does against abuse, checked without running it: the
//! access-log stream carries the shared secret the control plane's sink requires, and the
//! overload manager caps Envoy's heap and connections (so many large or slow uploads cannot
//! exhaust memory). The reference template (rendered for compose), the compose config and the
//! existing-Envoy example must all have both; Istio's access-log patch carries the secret too.

mod deploy_support;

use anyhow::{anyhow, Result};
use deploy_support::*;
use serde_yaml::Value;

fn shipped() -> Result<Vec<(&'static str, Value)>> {
    Ok(vec![
        ("the reference template", serde_yaml::from_str(&render_compose()?)?),
        (COMPOSE_ENVOY, yaml(COMPOSE_ENVOY)?),
        (EXISTING_ENVOY, yaml(EXISTING_ENVOY)?),
    ])
}

fn grpc_access_log(envoy: &Value) -> Result<&Value> {
    hcm(envoy)["access_log"]
        .as_sequence()
        .and_then(|logs| {
            logs.iter().find(|l| l["name"].as_str() == Some("envoy.access_loggers.http_grpc"))
        })
        .map(|l| &l["typed_config"]["common_config"]["grpc_service"])
        .ok_or_else(|| anyhow!("no gRPC access logger"))
}

#[test]
fn every_shipped_config_authenticates_its_access_log_stream_with_the_state_token() -> Result<()> {
    for (name, config) in shipped()? {
        let token = plugin_config_of(&config)?.state.token;
        let metadata = grpc_access_log(&config)?["initial_metadata"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        let authorization = metadata.iter().find(|m| m["key"].as_str() == Some("authorization"));
        let value = authorization.and_then(|m| m["value"].as_str());
        assert_eq!(
            value,
            Some(format!("Bearer {token}").as_str()),
            "{name}: the access-log stream's authorization"
        );
    }
    Ok(())
}

#[test]
fn every_shipped_config_caps_envoys_heap_and_connections() -> Result<()> {
    for (name, config) in shipped()? {
        let overload = &config["overload_manager"];
        let monitors: Vec<&str> = overload["resource_monitors"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|m| m["name"].as_str())
            .collect();
        for monitor in [
            "envoy.resource_monitors.fixed_heap",
            "envoy.resource_monitors.global_downstream_max_connections",
        ] {
            assert!(monitors.contains(&monitor), "{name}: no {monitor} in {monitors:?}");
        }
        let actions: Vec<&str> = overload["actions"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|a| a["name"].as_str())
            .collect();
        for action in [
            "envoy.overload_actions.reset_high_memory_stream",
            "envoy.overload_actions.stop_accepting_requests",
        ] {
            assert!(actions.contains(&action), "{name}: no {action} in {actions:?}");
        }
        assert!(
            overload["buffer_factory_config"]["minimum_account_to_track_power_of_two"].is_number(),
            "{name}: streams are not tracked"
        );
        let listener = &config["static_resources"]["listeners"][0];
        assert!(
            listener["per_connection_buffer_limit_bytes"].is_number(),
            "{name}: no per-connection buffer limit"
        );
        assert!(hcm(&config)["request_headers_timeout"].is_string(), "{name}: no header timeout");
    }
    Ok(())
}

#[test]
fn the_istio_access_log_patch_is_the_reference_logger_with_the_plugins_token() -> Result<()> {
    let istio = yaml("deploy/istio/envoyfilter-als.yaml")?;
    let patch = &istio["spec"]["configPatches"][0]["patch"];
    assert_eq!(patch["operation"].as_str(), Some("MERGE"));
    let mut logger = patch["value"]["typed_config"]["access_log"][0].clone();
    let token = plugin_config_of_istio()?;
    let service = &mut logger["typed_config"]["common_config"]["grpc_service"];
    assert_eq!(
        service["initial_metadata"][0]["value"].as_str(),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(
        service["envoy_grpc"]["cluster_name"].as_str(),
        Some("outbound|8082||control-plane.vllm-gateway.svc.cluster.local")
    );
    // With the reference's cluster and token, it is the reference's logger, which Envoy validates.
    let reference: Value = serde_yaml::from_str(&render_compose()?)?;
    service["envoy_grpc"]["cluster_name"] = "gateway_als".into();
    service["initial_metadata"][0]["value"] =
        format!("Bearer {}", plugin_config_of(&reference)?.state.token).into();
    let grpc = hcm(&reference)["access_log"]
        .as_sequence()
        .and_then(|l| l.first())
        .cloned()
        .ok_or_else(|| anyhow!("no access log"))?;
    assert_eq!(logger, grpc);
    Ok(())
}

/// The state token of the Istio install (`envoyfilter-wasm.yaml`'s plugin configuration).
fn plugin_config_of_istio() -> Result<String> {
    let text = read("deploy/istio/envoyfilter-wasm.yaml")?;
    let start =
        text.find("\"token\":\"").ok_or_else(|| anyhow!("no token"))? + "\"token\":\"".len();
    let end = text[start..].find('"').ok_or_else(|| anyhow!("no token end"))?;
    Ok(text[start..start + end].to_owned())
}
