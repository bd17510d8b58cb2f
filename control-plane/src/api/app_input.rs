//! What admins send to `/api/apps`: the bodies of create, update and status change (the last
//! shared with `/api/users`), and their validation into the store's types. Every error names the
//! offending field.

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::ToSchema;
use vllm_gateway_filter::feed::Status;

use super::limits_input::{self, LimitsSchema};
use super::ApiError;
use crate::store::apps::{AppChanges, NewApp};
use crate::store::feed::StatusSchema;

/// Most models an app may list.
const MAX_MODELS: usize = 1000;

/// `POST /api/apps` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateApp {
    /// Organisation the app belongs to (required, at most 200 characters).
    #[schema(example = "my-org")]
    org_name: Option<String>,
    /// ISO-8601 date-time with offset; absent, `null` or empty for never.
    #[schema(example = "2026-12-31T23:59:59.000+08:00")]
    expire_time: Option<String>,
    /// Free text, at most 2000 characters.
    remark: Option<String>,
    /// Models the app may use; absent or empty for every model.
    models: Option<Vec<String>>,
    /// Limits and budgets; absent or `null` for none.
    #[schema(value_type = Option<LimitsSchema>)]
    limits: Option<Value>,
}

impl CreateApp {
    /// The validated new app.
    pub fn validate(self) -> Result<NewApp, ApiError> {
        Ok(NewApp {
            org_name: org_name(self.org_name.unwrap_or_default())?,
            remark: remark(self.remark.unwrap_or_default())?,
            expire: expire(self.expire_time)?,
            models: models(self.models.unwrap_or_default())?,
            limits: limits_input::parse(self.limits)?,
        })
    }
}

/// `PUT /api/apps/{id}` body. An absent field is left as it is; `null` clears `expireTime`,
/// `models` (every model) and `limits` (none).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateApp {
    /// New organisation name (not empty, at most 200 characters).
    org_name: Option<String>,
    /// New expiry: ISO-8601 date-time with offset; `null` or empty for never.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    expire_time: Option<Option<String>>,
    /// New remark.
    remark: Option<String>,
    /// New allowed models; empty or `null` for every model.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    models: Option<Option<Vec<String>>>,
    /// New limits (the whole set, replacing the old one); `null` for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<LimitsSchema>)]
    limits: Option<Option<Value>>,
}

impl UpdateApp {
    /// The validated changes.
    pub fn validate(self) -> Result<AppChanges, ApiError> {
        Ok(AppChanges {
            org_name: self.org_name.map(org_name).transpose()?,
            remark: self.remark.map(remark).transpose()?,
            expire: self.expire_time.map(expire).transpose()?,
            models: self.models.map(|m| models(m.unwrap_or_default())).transpose()?,
            limits: self.limits.map(limits_input::parse).transpose()?,
        })
    }
}

/// `PATCH /api/apps/{id}/status` and `PATCH /api/users/{id}/status` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    /// The new status.
    #[schema(value_type = StatusSchema)]
    pub status: Status,
}

/// A field that is present, even as `null`, becomes `Some(…)`; an absent one stays `None`
/// (through `#[serde(default)]`).
pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn org_name(given: String) -> Result<String, ApiError> {
    let org_name = given.trim().to_owned();
    if org_name.is_empty() {
        return Err(ApiError::invalid("orgName", "is required"));
    }
    if org_name.chars().count() > 200 {
        return Err(ApiError::invalid("orgName", "must be at most 200 characters"));
    }
    Ok(org_name)
}

fn remark(given: String) -> Result<String, ApiError> {
    if given.chars().count() > 2000 {
        return Err(ApiError::invalid("remark", "must be at most 2000 characters"));
    }
    Ok(given)
}

fn expire(given: Option<String>) -> Result<Option<(String, i64)>, ApiError> {
    let Some(text) = given.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let at = OffsetDateTime::parse(&text, &Rfc3339).map_err(|_| {
        ApiError::invalid(
            "expireTime",
            "must be an ISO-8601 date-time with offset, e.g. 2026-12-31T23:59:59.000+08:00",
        )
    })?;
    Ok(Some((text, at.unix_timestamp())))
}

fn models(given: Vec<String>) -> Result<Vec<String>, ApiError> {
    if given.len() > MAX_MODELS {
        return Err(ApiError::invalid("models", format!("must list at most {MAX_MODELS} models")));
    }
    let mut models: Vec<String> = Vec::with_capacity(given.len());
    for name in given {
        let name = name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(ApiError::invalid("models", "model names must be 1 to 200 characters"));
        }
        if models.contains(&name) {
            return Err(ApiError::invalid("models", format!("{name} is listed twice")));
        }
        models.push(name);
    }
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(json: &str) -> UpdateApp {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn absent_null_and_given_fields_differ_in_an_update() {
        let changes = update(r#"{"remark":"r"}"#).validate().unwrap();
        assert_eq!((changes.expire, changes.models, changes.limits), (None, None, None));
        let changes =
            update(r#"{"expireTime":null,"models":null,"limits":null}"#).validate().unwrap();
        assert_eq!(changes.expire, Some(None));
        assert_eq!(changes.models, Some(vec![]));
        assert_eq!(changes.limits, Some(Default::default()));
        let changes =
            update(r#"{"models":[" a ","b"],"limits":{"tokensPerMinute":5}}"#).validate().unwrap();
        assert_eq!(changes.models, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(changes.limits.unwrap().all.tokens_per_minute, Some(5));
    }

    #[test]
    fn names_the_offending_field() {
        for (json, field) in [
            (r#"{"orgName":"  "}"#, "orgName"),
            (r#"{"models":["a","a"]}"#, "models"),
            (r#"{"models":[""]}"#, "models"),
            (r#"{"limits":{"requestsPerMinute":0}}"#, "limits.requestsPerMinute"),
            (r#"{"limits":{"tokensPerMinute":-3}}"#, "limits.tokensPerMinute"),
            (r#"{"expireTime":"2026-12-31"}"#, "expireTime"),
        ] {
            match update(json).validate() {
                Err(ApiError::Invalid { field: f, .. }) => assert_eq!(f, field, "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
    }
}
