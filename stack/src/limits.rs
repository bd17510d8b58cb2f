//! The admin API's limits: apps and users created with limits, and where their limits stand
//! (`limitUsage`). Creating an app with limits waits until the filter has its key, and with it
//! its limits (they reach the filter in the same state).

use anyhow::{anyhow, bail, Result};
use reqwest::Method;
use serde_json::{json, Value};

use crate::admin::CreatedApp;
use crate::stack::Stack;

impl Stack {
    /// Creates an app with `limits` (the admin API's `limits` object) and waits until the
    /// gateway accepts its key: the key and its limits reach the filter in the same state.
    pub async fn create_app_with_limits(
        &self,
        org_name: &str,
        limits: Value,
    ) -> Result<CreatedApp> {
        let body = json!({"orgName": org_name, "remark": "created with limits", "limits": limits});
        let (status, app) = self.admin(Method::POST, "/api/apps", Some(body)).await?;
        if status != 201 {
            bail!("creating an app with limits answered {status}: {app}");
        }
        let app: CreatedApp = serde_json::from_value(app)?;
        self.wait_for_key(&app.api_key).await?;
        Ok(app)
    }

    /// Creates a user with `limits`; returns its id.
    pub async fn create_user_with_limits(
        &self,
        email: &str,
        password: &str,
        limits: Value,
    ) -> Result<i64> {
        let body = json!({"email": email, "password": password, "limits": limits});
        let (status, user) = self.admin(Method::POST, "/api/users", Some(body)).await?;
        if status != 201 {
            bail!("creating a user with limits answered {status}: {user}");
        }
        user["id"].as_i64().ok_or_else(|| anyhow!("no id in {user}"))
    }

    /// `limitUsage` of `GET /api/apps/{id}` (or `/api/users/{id}` when `user`): where each of
    /// the subject's limits stands in its current window.
    pub async fn limit_usage(&self, id: i64, user: bool) -> Result<Vec<Value>> {
        let path = if user { format!("/api/users/{id}") } else { format!("/api/apps/{id}") };
        let (status, subject) = self.admin(Method::GET, &path, None).await?;
        if status != 200 {
            bail!("GET {path} answered {status}: {subject}");
        }
        match subject.get("limitUsage").and_then(Value::as_array) {
            Some(usage) => Ok(usage.clone()),
            None => bail!("GET {path} has no limitUsage: {subject}"),
        }
    }

    /// The `limitUsage` entry of limit `kind` (`tokens_per_day`, …) over every model (`model`
    /// `None`) or one model.
    pub async fn limit_standing(
        &self,
        id: i64,
        user: bool,
        kind: &str,
        model: Option<&str>,
    ) -> Result<Value> {
        let usage = self.limit_usage(id, user).await?;
        let model = model.map_or(Value::Null, |m| Value::String(m.to_owned()));
        usage
            .iter()
            .find(|u| u["kind"] == kind && u["model"] == model)
            .cloned()
            .ok_or_else(|| anyhow!("no {kind} (model {model}) in limitUsage {usage:?}"))
    }
}
