//! The OpenAPI document lists exactly the routes the router serves, each with its methods.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use control_plane::api::app;
use serde_json::json;

use super::*;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The router's route templates, read from its `Debug` form (axum keeps no public list).
fn router_paths(state: &AppState) -> BTreeSet<String> {
    let debug = format!("{:?}", app(state.clone()));
    // The fallback router that follows has its own catch-all paths.
    let (routes, _fallback) =
        debug.split_once("fallback_router").expect("axum's Router debug form changed");
    let paths: BTreeSet<String> = routes
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with('/'))
        .map(str::to_owned)
        .collect();
    assert!(
        paths.contains("/api/apps/{id}") && paths.len() >= 8,
        "cannot read the routes from {debug}"
    );
    paths
}

/// Whether the router has a handler for `method` on `path` (neither 405 nor the fallback 404).
async fn serves(state: &AppState, method: &str, path: &str) -> bool {
    let uri = path.replace("{id}", "1");
    let reply = call(state, method, &uri, Some(ADMIN), None).await;
    let fallback = reply.status == StatusCode::NOT_FOUND
        && reply.json["error"]["message"] == "no such endpoint";
    reply.status != StatusCode::METHOD_NOT_ALLOWED && !fallback
}

#[tokio::test]
async fn every_route_and_method_of_the_router_is_documented_and_nothing_else() {
    let (state, _dir) = state().await;
    let doc = admin(&state, "GET", "/api/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.json["openapi"].as_str().unwrap().starts_with("3."));
    let documented = doc.json["paths"].as_object().unwrap();
    let routes = router_paths(&state);
    let doc_paths: BTreeSet<String> = documented.keys().cloned().collect();
    assert_eq!(routes, doc_paths, "router paths (left) vs documented paths (right)");
    for path in &routes {
        for method in METHODS {
            let in_doc = documented[path].get(method.to_ascii_lowercase()).is_some();
            assert_eq!(
                serves(&state, method, path).await,
                in_doc,
                "{method} {path}: served vs documented"
            );
        }
    }
}

#[tokio::test]
async fn the_document_describes_the_shapes() {
    let (state, _dir) = state().await;
    let doc = admin(&state, "GET", "/api/openapi.json", None).await.json;
    let schemas = &doc["components"]["schemas"];
    for field in ["orgName", "expireTime", "remark", "models", "limits"] {
        assert!(schemas["CreateApp"]["properties"].get(field).is_some(), "CreateApp.{field}");
    }
    assert!(schemas["App"]["properties"].get("keyPrefix").is_some());
    assert!(doc["components"]["securitySchemes"].get("admin_token").is_some());
    let logs = &doc["paths"]["/api/logs"]["get"]["parameters"];
    let names: BTreeSet<&str> =
        logs.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    let expected: BTreeSet<&str> = [
        "page",
        "size",
        "appId",
        "userId",
        "model",
        "status",
        "stream",
        "clientRequestId",
        "limited",
        "from",
        "to",
    ]
    .into();
    assert_eq!(names, expected);
    let from = logs.as_array().unwrap().iter().find(|p| p["name"] == "from").unwrap();
    assert!(from["description"].as_str().unwrap().contains("Unix milliseconds"));
    assert_eq!(
        doc["paths"]["/healthz"]["get"]["security"],
        json!([{}]),
        "operations endpoints need no token"
    );
    assert_eq!(doc["security"], json!([{"admin_token": []}]));
    for field in ["clientRequestId", "limited", "cutOff"] {
        assert!(schemas["AccessLog"]["properties"].get(field).is_some(), "AccessLog.{field}");
    }
    let limits = &schemas["Limits"]["properties"];
    for field in [
        "requestsPerMinute",
        "tokensPerMinute",
        "concurrentRequests",
        "tokensPerDay",
        "tokensPerMonth",
        "timeZone",
        "models",
    ] {
        assert!(limits.get(field).is_some(), "Limits.{field}");
    }
    assert_eq!(
        schemas["Limits"]["additionalProperties"],
        json!(false),
        "unknown fields are refused"
    );
    for schema in ["App", "User"] {
        assert!(schemas[schema]["properties"].get("limitUsage").is_some(), "{schema}.limitUsage");
    }
    for schema in ["CreateUser", "UpdateUser"] {
        assert!(schemas[schema]["properties"].get("limits").is_some(), "{schema}.limits");
    }
    assert_eq!(schemas["Status"]["enum"], json!(["enabled", "disabled"]));
    for schema in ["App", "User", "StatusChange"] {
        let status = &schemas[schema]["properties"]["status"]["$ref"];
        assert_eq!(status, "#/components/schemas/Status", "{schema}.status");
    }
    assert!(schemas["LimitUsage"]["properties"].get("remaining").is_some());
    let record = &schemas["ReconcileRecord"]["properties"];
    for field in
        ["model", "upstream", "gateway", "vllm", "difference", "lastScrape", "likelyCauses"]
    {
        assert!(record.get(field).is_some(), "ReconcileRecord.{field}");
    }
    assert!(
        schemas["ModelTotals"]["properties"].get("model").is_none(),
        "the model is the record's"
    );
}

#[tokio::test]
async fn the_state_feed_documents_its_deltas() {
    let (state, _dir) = state().await;
    let doc = admin(&state, "GET", "/api/openapi.json", None).await.json;
    let get = &doc["paths"]["/internal/state"]["get"];
    let names: BTreeSet<&str> =
        get["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    let expected: BTreeSet<&str> = ["If-None-Match", "wait_ms", "since", "epoch"].into();
    assert_eq!(names, expected);
    let ok = &get["responses"]["200"];
    assert!(ok["headers"].get(vllm_gateway_filter::feed::DELTA_HEADER).is_some(), "{ok}");
    assert!(ok["description"].as_str().unwrap().contains("removedKeys"));
}
