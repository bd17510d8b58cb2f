//! `/api/apps`: create (with models and limits), list with filters, get, update, status,
//! delete, key rotation, and what each change does to the state feed.

use axum::http::StatusCode;
use control_plane::secrets;
use serde_json::{json, Value};

use super::*;

async fn create(state: &AppState, body: Value) -> Value {
    let reply = admin(state, "POST", "/api/apps", Some(body)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json
}

async fn feed(state: &AppState) -> Vec<Value> {
    let reply = call(state, "GET", "/internal/state", Some(FEED), None).await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.json["keys"].as_array().unwrap().clone()
}

async fn age_updated_at(state: &AppState, id: i64) {
    sqlx::query("UPDATE apps SET updated_at = 0 WHERE id = ?")
        .bind(id)
        .execute(state.db())
        .await
        .unwrap();
}

#[tokio::test]
async fn models_and_limits_are_stored_shown_and_fed() {
    let (state, _dir) = state().await;
    let body = json!({"orgName": "o", "models": ["m-a", "m-b"], "limits": {"requestsPerMinute": 60, "tokensPerMinute": 1000}});
    let created = create(&state, body).await;
    assert_eq!(created["models"], json!(["m-a", "m-b"]));
    assert_eq!(created["limits"], json!({"requestsPerMinute": 60, "tokensPerMinute": 1000}));
    let plain = create(&state, json!({"orgName": "p", "models": [], "limits": {}})).await;
    assert_eq!((plain["models"].clone(), plain["limits"].clone()), (json!([]), Value::Null));

    let got = admin(&state, "GET", &format!("/api/apps/{}", created["id"]), None).await;
    assert_eq!(got.json["models"], created["models"]);
    assert_eq!(got.json["limits"], created["limits"]);

    let keys = feed(&state).await;
    let key = |app: &Value| keys.iter().find(|k| k["appId"] == app["id"]).unwrap().clone();
    let hash = secrets::hash(created["apiKey"].as_str().unwrap());
    assert_eq!(key(&created)["hash"], hash);
    assert_eq!(key(&created)["models"], json!(["m-a", "m-b"]));
    assert_eq!(key(&created)["limits"], json!({"requestsPerMinute": 60, "tokensPerMinute": 1000}));
    assert_eq!(key(&plain)["models"], json!([]));
    assert_eq!(key(&plain)["limits"], Value::Null);
}

#[tokio::test]
async fn creation_rejects_bad_models_and_limits_naming_the_field() {
    let (state, _dir) = state().await;
    for (body, field) in [
        (json!({"orgName": "o", "models": "m"}), "models"),
        (json!({"orgName": "o", "models": ["m", " m "]}), "models"),
        (json!({"orgName": "o", "models": [""]}), "models"),
        (json!({"orgName": "o", "limits": {"requestsPerMinute": 0}}), "limits.requestsPerMinute"),
        (json!({"orgName": "o", "limits": {"tokensPerMinute": -1}}), "limits.tokensPerMinute"),
        (json!({"orgName": "o", "limits": {"tokensPerMinute": 1.5}}), "limits.tokensPerMinute"),
        (json!({"orgName": "o", "limits": 5}), "limits"),
        (json!({"orgName": "o", "remark": "r".repeat(2001)}), "remark"),
        (json!({"orgName": "o".repeat(201)}), "orgName"),
    ] {
        let reply = admin(&state, "POST", "/api/apps", Some(body.clone())).await;
        assert_invalid(&reply, field);
    }
    let none: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM apps").fetch_one(state.db()).await.unwrap();
    assert_eq!(none, 0);
}

#[tokio::test]
async fn the_list_filters_by_org_name_and_status_and_pages() {
    let (state, _dir) = state().await;
    for org in ["Alpha Labs", "beta", "alphabet", "100%_sure"] {
        create(&state, json!({"orgName": org})).await;
    }
    let beta = create(&state, json!({"orgName": "beta-2"})).await;
    admin(
        &state,
        "PATCH",
        &format!("/api/apps/{}/status", beta["id"]),
        Some(json!({"status": "disabled"})),
    )
    .await;

    let orgs = |v: &Value| -> Vec<String> {
        v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["orgName"].as_str().unwrap().to_owned())
            .collect()
    };
    let reply = admin(&state, "GET", "/api/apps?orgName=alpha", None).await;
    assert_eq!(
        orgs(&reply.json),
        ["alphabet", "Alpha Labs"],
        "substring, case-insensitive, newest first"
    );
    assert_eq!(reply.json["total"], 2);
    let reply = admin(&state, "GET", "/api/apps?orgName=0%25_", None).await;
    assert_eq!(orgs(&reply.json), ["100%_sure"], "% and _ are matched literally");
    let reply = admin(&state, "GET", "/api/apps?status=disabled", None).await;
    assert_eq!(orgs(&reply.json), ["beta-2"]);
    let reply = admin(&state, "GET", "/api/apps?status=enabled&orgName=beta", None).await;
    assert_eq!(orgs(&reply.json), ["beta"]);

    let reply = admin(&state, "GET", "/api/apps?page=2&size=2", None).await;
    assert_eq!(reply.json["total"], 5);
    assert_eq!((reply.json["page"].clone(), reply.json["size"].clone()), (json!(2), json!(2)));
    assert_eq!(orgs(&reply.json), ["alphabet", "beta"]);

    assert_invalid(&admin(&state, "GET", "/api/apps?status=gone", None).await, "status");
    assert_invalid(&admin(&state, "GET", "/api/apps?page=0", None).await, "page");
    assert_invalid(&admin(&state, "GET", "/api/apps?size=501", None).await, "size");
    assert_invalid(&admin(&state, "GET", "/api/apps?page=x", None).await, "page");
}

#[tokio::test]
async fn get_answers_404_and_400_for_unknown_and_malformed_ids() {
    let (state, _dir) = state().await;
    assert_not_found(&admin(&state, "GET", "/api/apps/42", None).await);
    assert_invalid(&admin(&state, "GET", "/api/apps/forty-two", None).await, "id");
}

#[tokio::test]
async fn update_changes_only_the_fields_given_and_bumps_updated_at() {
    let (state, _dir) = state().await;
    let created = create(
        &state,
        json!({"orgName": "o", "remark": "r", "expireTime": "2099-01-01T00:00:00+08:00"}),
    )
    .await;
    let id = created["id"].as_i64().unwrap();
    age_updated_at(&state, id).await;
    let body = json!({"orgName": "o2", "models": ["m"], "limits": {"requestsPerMinute": 5}});
    let reply = admin(&state, "PUT", &format!("/api/apps/{id}"), Some(body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let app = reply.json;
    assert_eq!(app["orgName"], "o2");
    assert_eq!(app["remark"], "r", "absent fields stay");
    assert_eq!(app["expireTime"], "2099-01-01T00:00:00+08:00");
    assert_eq!(app["models"], json!(["m"]));
    assert_eq!(app["limits"], json!({"requestsPerMinute": 5}));
    assert!(app["updatedAt"].as_i64().unwrap() > 0);
    assert_eq!(app["keyPrefix"], created["keyPrefix"], "the key is unchanged");
    let key = &feed(&state).await[0];
    assert_eq!(
        (key["models"].clone(), key["limits"].clone()),
        (json!(["m"]), json!({"requestsPerMinute": 5}))
    );
    assert_eq!(key["expiresAt"], 4_070_880_000i64);

    let body = json!({"expireTime": null, "models": null, "limits": null, "remark": ""});
    let app = admin(&state, "PUT", &format!("/api/apps/{id}"), Some(body)).await.json;
    assert_eq!((app["expireTime"].clone(), app["remark"].clone()), (Value::Null, json!("")));
    assert_eq!((app["models"].clone(), app["limits"].clone()), (json!([]), Value::Null));
    assert_eq!(feed(&state).await[0]["expiresAt"], Value::Null);
}

#[tokio::test]
async fn update_rejects_bad_fields_and_unknown_apps() {
    let (state, _dir) = state().await;
    let id = create(&state, json!({"orgName": "o"})).await["id"].as_i64().unwrap();
    let uri = format!("/api/apps/{id}");
    for (body, field) in [
        (json!({"orgName": " "}), "orgName"),
        (json!({"expireTime": "soon"}), "expireTime"),
        (json!({"models": ["a", "a"]}), "models"),
        (json!({"limits": {"requestsPerMinute": 0}}), "limits.requestsPerMinute"),
        (json!({"status": "disabled"}), "body"),
    ] {
        assert_invalid(&admin(&state, "PUT", &uri, Some(body)).await, field);
    }
    assert_eq!(admin(&state, "GET", &uri, None).await.json["orgName"], "o", "nothing changed");
    assert_not_found(&admin(&state, "PUT", "/api/apps/999", Some(json!({"orgName": "x"}))).await);
}

#[tokio::test]
async fn status_changes_reach_the_feed() {
    let (state, _dir) = state().await;
    let id = create(&state, json!({"orgName": "o"})).await["id"].as_i64().unwrap();
    age_updated_at(&state, id).await;
    let uri = format!("/api/apps/{id}/status");
    let reply = admin(&state, "PATCH", &uri, Some(json!({"status": "disabled"}))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json["status"], "disabled");
    assert!(reply.json["updatedAt"].as_i64().unwrap() > 0);
    assert_eq!(feed(&state).await[0]["status"], "disabled");
    admin(&state, "PATCH", &uri, Some(json!({"status": "enabled"}))).await;
    assert_eq!(feed(&state).await[0]["status"], "enabled");

    assert_invalid(
        &admin(&state, "PATCH", &uri, Some(json!({"status": "paused"}))).await,
        "status",
    );
    assert_invalid(&admin(&state, "PATCH", &uri, Some(json!({}))).await, "body");
    assert_not_found(
        &admin(&state, "PATCH", "/api/apps/999/status", Some(json!({"status": "enabled"}))).await,
    );
}

#[tokio::test]
async fn deleting_an_app_takes_its_key_out_of_the_feed() {
    let (state, _dir) = state().await;
    let gone = create(&state, json!({"orgName": "gone"})).await;
    let kept = create(&state, json!({"orgName": "kept"})).await;
    let reply = admin(&state, "DELETE", &format!("/api/apps/{}", gone["id"]), None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_not_found(&admin(&state, "GET", &format!("/api/apps/{}", gone["id"]), None).await);
    let keys = feed(&state).await;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["appId"], kept["id"]);
    assert_not_found(&admin(&state, "DELETE", &format!("/api/apps/{}", gone["id"]), None).await);
}

#[tokio::test]
async fn rotating_issues_a_new_key_once_and_retires_the_old() {
    let (state, _dir) = state().await;
    let created = create(&state, json!({"orgName": "o", "models": ["m"]})).await;
    let id = created["id"].as_i64().unwrap();
    age_updated_at(&state, id).await;
    let old = created["apiKey"].as_str().unwrap().to_owned();
    let reply = admin(&state, "POST", &format!("/api/apps/{id}/key"), None).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let new = reply.json["apiKey"].as_str().unwrap().to_owned();
    assert!(new.starts_with("sk-live-") && new != old);
    assert_eq!(reply.json["keyPrefix"], new[..12]);
    assert_eq!(reply.json["models"], json!(["m"]), "the app is unchanged");
    assert!(reply.json["updatedAt"].as_i64().unwrap() > 0);

    let keys = feed(&state).await;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["hash"], secrets::hash(&new));
    assert_ne!(keys[0]["keyId"], Value::Null);
    let shown = admin(&state, "GET", &format!("/api/apps/{id}"), None).await;
    assert!(!shown.text.contains(&new) && !shown.text.contains(&old));
    assert_eq!(shown.json["keyPrefix"], new[..12]);

    assert_not_found(&admin(&state, "POST", "/api/apps/999/key", None).await);
}

#[tokio::test]
async fn every_app_route_needs_the_admin_token() {
    let (state, _dir) = state().await;
    for (method, uri) in [
        ("GET", "/api/apps"),
        ("POST", "/api/apps"),
        ("GET", "/api/apps/1"),
        ("PUT", "/api/apps/1"),
        ("DELETE", "/api/apps/1"),
        ("PATCH", "/api/apps/1/status"),
        ("POST", "/api/apps/1/key"),
        ("GET", "/api/logs"),
        ("GET", "/api/usage"),
        ("GET", "/api/openapi.json"),
    ] {
        for token in [None, Some("wrong"), Some(FEED)] {
            let reply = call(&state, method, uri, token, Some(json!({}))).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {uri} with {token:?}");
        }
    }
}
