//! `--admin-addr`: with an admin listener, `/api/*` is served there only and is a 404 in the
//! API's error shape on the main listener, while login, the state feed and the operations
//! endpoints stay on the main one. Two real listeners on ephemeral loopback ports.

use std::net::SocketAddr;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::TcpListener;

const ADMIN: &str = "split-admin-token-0001";
const STATE: &str = "split-state-token-0001";

/// A control plane with its admin API on its own listener: (main, admin) addresses.
async fn start(
    dir: &tempfile::TempDir,
) -> (SocketAddr, SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let db =
        control_plane::db::open(&dir.path().join("split.db").display().to_string()).await.unwrap();
    let bind = || TcpListener::bind("127.0.0.1:0");
    let (http, als, admin) = (bind().await.unwrap(), bind().await.unwrap(), bind().await.unwrap());
    let addrs = (http.local_addr().unwrap(), admin.local_addr().unwrap());
    let state =
        control_plane::api::AppState::new(db, STATE.into(), control_plane::secrets::hash(ADMIN));
    let listeners = control_plane::Listeners::new(http, als).with_admin(Some(admin));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(control_plane::serve(
        state,
        control_plane::Retention::default(),
        listeners,
        async {
            let _ = stopped.await;
        },
    ));
    (addrs.0, addrs.1, stop)
}

async fn get(addr: SocketAddr, path: &str, token: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_admin_api_is_served_on_its_own_listener_only() {
    let dir = tempfile::tempdir().unwrap();
    let (main, admin, _stop) = start(&dir).await;
    let client = reqwest::Client::new();

    let created = client
        .post(format!("http://{admin}/api/apps"))
        .bearer_auth(ADMIN)
        .json(&json!({"orgName": "o"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let (status, apps) = get(admin, "/api/apps", ADMIN).await;
    assert_eq!((status, apps["total"].as_i64()), (StatusCode::OK, Some(1)));

    for path in ["/api/apps", "/api/openapi.json", "/api/users"] {
        let (status, body) = get(main, path, ADMIN).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path} on the main listener");
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
    let created = client
        .post(format!("http://{main}/api/apps"))
        .bearer_auth(ADMIN)
        .json(&json!({"orgName": "o"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::NOT_FOUND);

    // The rest stays on the main listener, and only there.
    assert_eq!(get(main, "/internal/state", STATE).await.0, StatusCode::OK);
    assert_eq!(get(main, "/healthz", "").await.0, StatusCode::OK);
    assert_eq!(get(main, "/metrics", "").await.0, StatusCode::OK);
    let login = client
        .post(format!("http://{main}/user/user_login"))
        .json(&json!({"email": "a@b.c", "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::UNAUTHORIZED);
    for path in ["/internal/state", "/user/user_login", "/metrics"] {
        assert_eq!(
            get(admin, path, STATE).await.0,
            StatusCode::NOT_FOUND,
            "{path} on the admin listener"
        );
    }
}
