//! The running stack's admin API, called through the gateway as an operator would (the admin
//! token): apps and their keys, users and logins, the access log, the control plane's metrics;
//! and waiting until a key reaches the filter.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::stack::Stack;

/// How long [`Stack::wait_for_log`] waits for a row.
const LOG_WAIT: Duration = Duration::from_secs(10);

/// A created app with its key.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApp {
    /// App id.
    pub id: i64,
    /// The plaintext key (shown once).
    pub api_key: String,
}

impl Stack {
    /// Creates an app through the gateway's `/api/apps` (admin token) and returns its key.
    pub async fn create_app(&self, org_name: &str) -> Result<CreatedApp> {
        let resp = self
            .http
            .post(format!("{}/api/apps", self.gateway_url))
            .bearer_auth(&self.admin_token)
            .json(&serde_json::json!({"orgName": org_name, "remark": "created by the stack"}))
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        if status.as_u16() != 201 {
            bail!("creating an app answered {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// An admin API call through the gateway: `method` on `path` with an optional JSON body;
    /// returns the status and the JSON reply.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.gateway_url))
            .bearer_auth(&self.admin_token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    /// Creates a user through the admin API; returns its id.
    pub async fn create_user(&self, email: &str, password: &str) -> Result<i64> {
        let body = serde_json::json!({"email": email, "password": password});
        let (status, user) = self.admin(reqwest::Method::POST, "/api/users", Some(body)).await?;
        if status != 201 {
            bail!("creating a user answered {status}: {user}");
        }
        user["id"].as_i64().ok_or_else(|| anyhow!("no id in {user}"))
    }

    /// Logs in through the gateway's `/user/user_login`; returns the reply's `data`.
    pub async fn login(&self, email: &str, password: &str) -> Result<Value> {
        let resp = self
            .http
            .post(format!("{}/user/user_login", self.gateway_url))
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await?;
        let status = resp.status();
        let reply: Value = resp.json().await?;
        if !status.is_success() || reply["success"] != true {
            bail!("login answered {status}: {reply}");
        }
        Ok(reply["data"].clone())
    }

    /// A `POST` to the gateway at `path` (`/v1/…`) with `token` as the bearer credential.
    pub fn gateway_post(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.gateway_url)).bearer_auth(token)
    }

    /// Waits until the gateway answers `GET /v1/models` with `token` by `status` (10 s at most);
    /// returns that answer's body.
    pub async fn wait_for_status(&self, token: &str, status: u16) -> Result<Value> {
        let url = format!("{}/v1/models", self.gateway_url);
        let what = format!("the gateway answering {status}");
        crate::eventually(&what, Duration::from_secs(10), || async {
            let resp = self.http.get(&url).bearer_auth(token).send().await?;
            let got = resp.status().as_u16();
            let body = resp.json().await.unwrap_or(Value::Null);
            anyhow::ensure!(got == status, "last reply: {got} {body}");
            Ok(Some(body))
        })
        .await
    }

    /// Waits until the filter of the stack's Envoy accepts `api_key` (an API key or a JWT) on
    /// `GET /v1/models` (see [`crate::Envoy::wait_for_key`]).
    pub async fn wait_for_key(&self, api_key: &str) -> Result<()> {
        self.envoy.wait_for_key(api_key).await
    }

    /// `GET /api/logs` rows (newest first).
    pub async fn logs(&self) -> Result<Vec<Value>> {
        self.logs_page(format!("{}/api/logs?size=500", self.gateway_url)).await
    }

    /// The rows of one `GET /api/logs` page at `url`.
    async fn logs_page(&self, url: String) -> Result<Vec<Value>> {
        let page: Value = self
            .http
            .get(url)
            .bearer_auth(&self.admin_token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(page["records"].as_array().cloned().unwrap_or_default())
    }

    /// Every access-log row of a request that started before now (all pages, newest first).
    /// Asked of the control plane directly, with the end of the range fixed, so that the
    /// listing's own requests neither add rows nor shift the pages.
    pub async fn all_logs(&self) -> Result<Vec<Value>> {
        let to = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
        let mut rows = Vec::new();
        for page in 1.. {
            let url =
                format!("http://{}/api/logs?size=500&page={page}&to={to}", self.control_plane);
            let records = self.logs_page(url).await?;
            let done = records.len() < 500;
            rows.extend(records);
            if done {
                break;
            }
        }
        Ok(rows)
    }

    /// Waits for a log row matching `pred` (the access log is flushed on a short interval; 10 s
    /// at most).
    pub async fn wait_for_log(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Result<Value> {
        let found =
            crate::eventually(&format!("an access-log row for {what}"), LOG_WAIT, || async {
                Ok(self.logs().await?.into_iter().find(|r| pred(r)))
            })
            .await;
        match found {
            Ok(row) => Ok(row),
            Err(e) => Err(anyhow!("{e:#}; rows: {:#?}", self.logs().await.unwrap_or_default())),
        }
    }

    /// The sum of the samples of metric `name` at the control plane's `/metrics` (every label).
    pub async fn control_plane_metric(&self, name: &str) -> Result<f64> {
        let text = self.control_plane_metrics().await?;
        Ok(text
            .lines()
            .filter(|l| l.split([' ', '{']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// The control plane's `/metrics` text.
    pub async fn control_plane_metrics(&self) -> Result<String> {
        let url = format!("http://{}/metrics", self.control_plane);
        Ok(self.http.get(url).send().await?.error_for_status()?.text().await?)
    }
}
