//! What accounting needs from Envoy, the same in every shipped configuration (the reference
//! template, the compose config, the existing-Envoy example, the Istio patches): request ids the
//! gateway owns, normalised paths, upstreams asked for identity, and the durable file log that the
//! control plane ingests beside the gRPC stream.

mod deploy_support;

use anyhow::{anyhow, Result};
use deploy_support::*;
use serde_yaml::Value;

/// The connection-manager settings the gateway relies on.
const HCM_SETTINGS: [&str; 14] = [
    "normalize_path",
    "merge_slashes",
    "path_with_escaped_slashes_action",
    "early_header_mutation_extensions",
    "generate_request_id",
    "always_set_request_id_in_response",
    // The real peer in `x-forwarded-for`, and limits for slow and large clients.
    "use_remote_address",
    "request_headers_timeout",
    "request_timeout",
    "stream_idle_timeout",
    "max_request_headers_kb",
    "common_http_protocol_options",
    "http2_protocol_options",
    // Envoy's own replies in the OpenAI shape.
    "local_reply_config",
];

fn reference() -> Result<Value> {
    Ok(serde_yaml::from_str(&render_compose()?)?)
}

/// The Istio patch that adds the gRPC access logger.
const ISTIO_ALS: &str = "deploy/istio/envoyfilter-als.yaml";

/// The gRPC access logger's `typed_config` in the Istio patch.
fn istio_access_logger(istio: &Value) -> &Value {
    &istio["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["access_log"][0]
        ["typed_config"]
}

fn access_logger<'a>(envoy: &'a Value, name: &str) -> Result<&'a Value> {
    hcm(envoy)["access_log"]
        .as_sequence()
        .and_then(|logs| logs.iter().find(|l| l["name"].as_str() == Some(name)))
        .map(|l| &l["typed_config"])
        .ok_or_else(|| anyhow!("no {name} access logger"))
}

#[test]
fn the_reference_moves_the_client_request_id_aside_and_generates_its_own() -> Result<()> {
    let config = reference()?;
    let hcm = hcm(&config);
    let mutations = &hcm["early_header_mutation_extensions"][0]["typed_config"]["mutations"];
    let mutations = mutations.as_sequence().ok_or_else(|| anyhow!("no early header mutations"))?;
    // Copied aside first, then removed: Envoy then always generates the id.
    let copy = mutations
        .iter()
        .position(|m| m["append"]["header"]["key"].as_str() == Some("x-client-request-id"));
    let remove = mutations.iter().position(|m| m["remove"].as_str() == Some("x-request-id"));
    assert!(matches!((copy, remove), (Some(c), Some(r)) if c < r), "{mutations:?}");
    assert_eq!(hcm["generate_request_id"].as_bool(), Some(true));
    assert_eq!(hcm["normalize_path"].as_bool(), Some(true));
    assert_eq!(hcm["merge_slashes"].as_bool(), Some(true));
    assert_eq!(hcm["path_with_escaped_slashes_action"].as_str(), Some("UNESCAPE_AND_FORWARD"));
    Ok(())
}

#[test]
fn every_shipped_config_has_the_same_connection_manager_settings() -> Result<()> {
    let reference = reference()?;
    let istio = yaml("deploy/istio/envoyfilter-hcm.yaml")?;
    let istio_hcm = &istio["spec"]["configPatches"][0]["patch"]["value"]["typed_config"];
    assert_eq!(istio["spec"]["configPatches"][0]["patch"]["operation"].as_str(), Some("MERGE"));
    for (name, config) in
        [(COMPOSE_ENVOY, yaml(COMPOSE_ENVOY)?), (EXISTING_ENVOY, yaml(EXISTING_ENVOY)?)]
    {
        for key in HCM_SETTINGS {
            assert_eq!(hcm(&config)[key], hcm(&reference)[key], "{name}: {key}");
        }
    }
    for key in HCM_SETTINGS {
        assert_eq!(
            istio_hcm[key],
            hcm(&reference)[key],
            "deploy/istio/envoyfilter-hcm.yaml: {key}"
        );
    }
    Ok(())
}

/// The Istio patch, merged into the reference connection manager in place of its own settings,
/// is accepted by Envoy.
#[test]
fn the_istio_connection_manager_patch_validates() -> Result<()> {
    let mut config = reference()?;
    let istio = yaml("deploy/istio/envoyfilter-hcm.yaml")?;
    let patch = istio["spec"]["configPatches"][0]["patch"]["value"]["typed_config"].clone();
    let hcm = &mut config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    let (Value::Mapping(hcm), Value::Mapping(patch)) = (hcm, patch) else {
        return Err(anyhow!("not a mapping"));
    };
    for key in HCM_SETTINGS {
        hcm.remove(key);
    }
    for (key, value) in patch {
        hcm.insert(key, value);
    }
    let text = serde_yaml::to_string(&config)?.replace(
        "filename: /etc/envoy/vllm_gateway_filter.wasm",
        "filename: \"/etc/envoy/vllm_gateway_filter.wasm\"",
    );
    envoy_validate(&text, "istio-hcm.yaml")
}

#[test]
fn every_shipped_config_writes_the_durable_log_and_logs_the_client_id() -> Result<()> {
    let reference = reference()?;
    let file_log = access_logger(&reference, "envoy.access_loggers.file")?;
    for key in ["request_id", "client_request_id", "start_ms", "path", "status", "usage"] {
        assert!(!file_log["log_format"]["json_format"][key].is_null(), "the file log has no {key}");
    }
    for (name, config) in
        [(COMPOSE_ENVOY, yaml(COMPOSE_ENVOY)?), (EXISTING_ENVOY, yaml(EXISTING_ENVOY)?)]
    {
        let file = access_logger(&config, "envoy.access_loggers.file")?;
        assert_eq!(file["log_format"], file_log["log_format"], "{name}: the file log's format");
        let grpc = access_logger(&config, "envoy.access_loggers.http_grpc")?;
        assert_eq!(
            strings(&grpc["additional_request_headers_to_log"]),
            ["x-client-request-id"],
            "{name}"
        );
    }
    let istio = yaml(ISTIO_ALS)?;
    let als = istio_access_logger(&istio);
    assert_eq!(strings(&als["additional_request_headers_to_log"]), ["x-client-request-id"]);
    // No access log prints a query string (`?token=` is a credential).
    for (name, text) in
        [(COMPOSE_ENVOY, read(COMPOSE_ENVOY)?), (EXISTING_ENVOY, read(EXISTING_ENVOY)?)]
    {
        assert!(!text.contains("%REQ(:PATH)%"), "{name} logs paths with their query");
    }
    Ok(())
}

#[test]
fn compose_shares_the_durable_log_with_the_control_plane() -> Result<()> {
    let compose = yaml("docker-compose.yml")?;
    let config = yaml(COMPOSE_ENVOY)?;
    let path =
        str_of(&access_logger(&config, "envoy.access_loggers.file")?["path"], "file log path")?
            .to_owned();
    assert_eq!(path, COMPOSE_ACCESS_LOG);
    let cp = &compose["services"]["control-plane"];
    assert_eq!(cp["environment"]["GATEWAY_ACCESS_LOG_FILE"].as_str(), Some(path.as_str()));
    let dir = path.rsplit_once('/').map(|(d, _)| d.to_owned()).unwrap_or_default();
    let volume_at = |service: &Value| {
        mounts(service)
            .into_iter()
            .find(|(s, t, ro)| *t == dir && !s.starts_with('.') && !ro)
            .map(|m| m.0)
    };
    let envoy_volume = volume_at(&compose["services"]["envoy"]);
    assert!(envoy_volume.is_some(), "Envoy does not write {dir} on a volume");
    assert_eq!(envoy_volume, volume_at(cp), "Envoy and the control plane do not share {dir}");
    Ok(())
}

/// Upstreams are asked for identity (the compressor drops `accept-encoding` before the filter
/// and the upstream; the filter removes it too), and Envoy compresses towards the client after
/// the filter has read the response: the compressor comes before the filter.
#[test]
fn every_shipped_config_compresses_after_the_filter_has_counted() -> Result<()> {
    for (name, config) in [("the template", reference()?), (EXISTING_ENVOY, yaml(EXISTING_ENVOY)?)]
    {
        let filters = listener_filters(&config)?;
        let position = |n: &str| filters.iter().position(|f| f["name"].as_str() == Some(n));
        let (compressor, wasm) =
            (position("envoy.filters.http.compressor"), position("envoy.filters.http.wasm"));
        assert!(
            matches!((compressor, wasm), (Some(c), Some(w)) if c < w),
            "{name}: compressor {compressor:?}, wasm {wasm:?}"
        );
        let settings =
            &filters[compressor.unwrap_or_default()]["typed_config"]["response_direction_config"];
        assert_eq!(settings["remove_accept_encoding_header"].as_bool(), Some(true), "{name}");
        assert!(
            !strings(&settings["common_config"]["content_type"])
                .iter()
                .any(|t| t.contains("event-stream")),
            "{name}: streams are compressed"
        );
    }
    Ok(())
}

/// Every shipped gRPC access logger sends its entries in messages of the agreed size (Envoy's
/// default, 16 KiB, costs Envoy and the sink several µs per request under load), which the
/// sink's message limit is checked against (`control_plane::als::grpc::MAX_MESSAGE_BYTES`).
#[test]
fn every_shipped_config_sends_access_logs_in_large_messages() -> Result<()> {
    let istio = yaml(ISTIO_ALS)?;
    let mut loggers = vec![("the Istio patch", istio_access_logger(&istio).clone())];
    for (name, config) in [
        ("the template", reference()?),
        (COMPOSE_ENVOY, yaml(COMPOSE_ENVOY)?),
        (EXISTING_ENVOY, yaml(EXISTING_ENVOY)?),
    ] {
        loggers.push((name, access_logger(&config, "envoy.access_loggers.http_grpc")?.clone()));
    }
    for (name, logger) in loggers {
        assert_eq!(
            logger["common_config"]["buffer_size_bytes"].as_u64(),
            Some(vllm_gateway_filter::record::ACCESS_LOG_BATCH_BYTES),
            "{name}"
        );
    }
    Ok(())
}
