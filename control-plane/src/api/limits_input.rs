//! The `limits` admins set on an app or a user: read from JSON into the contract's
//! [`Limits`] with every error naming its field (`limits.tokensPerDay`,
//! `limits.models.<name>.concurrentRequests`, `limits.timeZone`), and documented in the OpenAPI
//! document by [`LimitsSchema`], whose fields are read from the contract's own serialisation.

use serde_json::{Map, Value};
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use vllm_gateway_filter::feed::limits::{Caps, LimitKind};
use vllm_gateway_filter::feed::Limits;

use super::ApiError;

/// The largest limit accepted (10^15).
pub const MAX_LIMIT: i64 = 1_000_000_000_000_000;
/// Most per-model sets one subject may have.
pub const MAX_MODEL_SETS: usize = 100;
/// The member of a limit set that names its time zone.
const TIME_ZONE: &str = "timeZone";
/// The member holding the per-model sets.
const MODELS: &str = "models";

/// The JSON names of the limits of a set (`requestsPerMinute`, …), with their kinds, as the
/// contract serialises them.
fn limit_fields() -> Vec<(String, LimitKind)> {
    LimitKind::ALL
        .iter()
        .filter_map(|kind| {
            let mut caps = Caps::default();
            match kind {
                LimitKind::RequestsPerMinute => caps.requests_per_minute = Some(1),
                LimitKind::TokensPerMinute => caps.tokens_per_minute = Some(1),
                LimitKind::ConcurrentRequests => caps.concurrent_requests = Some(1),
                LimitKind::TokensPerDay => caps.tokens_per_day = Some(1),
                LimitKind::TokensPerMonth => caps.tokens_per_month = Some(1),
            }
            let json = serde_json::to_value(caps).ok()?;
            let name = json.as_object()?.keys().next()?.clone();
            Some((name, *kind))
        })
        .collect()
}

/// `limits` as given (absent or `null`: nothing limited) as the contract's limits.
pub fn parse(given: Option<Value>) -> Result<Limits, ApiError> {
    let Some(value) = given.filter(|v| !v.is_null()) else { return Ok(Limits::default()) };
    let Value::Object(mut members) = value else {
        return Err(ApiError::invalid("limits", "must be an object (or null for none)"));
    };
    let models = members.remove(MODELS);
    let all = caps("limits", members)?;
    let mut limits = Limits { all, models: Default::default() };
    match models {
        None | Some(Value::Null) => {}
        Some(Value::Object(sets)) => {
            if sets.len() > MAX_MODEL_SETS {
                return Err(ApiError::invalid(
                    "limits.models",
                    format!("at most {MAX_MODEL_SETS} models may have their own limits"),
                ));
            }
            for (model, set) in sets {
                let field = format!("limits.models.{model}");
                if model.trim().is_empty() || model.chars().count() > 200 || model.trim() != model {
                    return Err(ApiError::invalid(
                        field,
                        "model names must be 1 to 200 characters, without surrounding spaces",
                    ));
                }
                let Value::Object(members) = set else {
                    return Err(ApiError::invalid(field, "must be an object"));
                };
                if members.contains_key(MODELS) {
                    return Err(ApiError::invalid(
                        format!("{field}.{MODELS}"),
                        "a model's limits cannot hold per-model limits",
                    ));
                }
                limits.models.insert(model, caps(&field, members)?);
            }
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "limits.models",
                "must be an object: model name → limits",
            ))
        }
    }
    Ok(limits)
}

/// One set of limits (`prefix` names it in errors).
fn caps(prefix: &str, members: Map<String, Value>) -> Result<Caps, ApiError> {
    let fields = limit_fields();
    let mut caps = Caps::default();
    for (name, value) in members {
        let field = format!("{prefix}.{name}");
        if name == TIME_ZONE {
            caps.time_zone = time_zone(&field, value)?;
            continue;
        }
        let Some((_, kind)) = fields.iter().find(|(known, _)| *known == name) else {
            return Err(ApiError::invalid(field, "unknown limit"));
        };
        let n = match value {
            Value::Null => None,
            value => {
                Some(value.as_i64().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                    ApiError::invalid(
                        field.clone(),
                        format!("must be an integer from 1 to {MAX_LIMIT} (or null for none)"),
                    )
                })?)
            }
        };
        match kind {
            LimitKind::RequestsPerMinute => caps.requests_per_minute = n,
            LimitKind::TokensPerMinute => caps.tokens_per_minute = n,
            LimitKind::ConcurrentRequests => caps.concurrent_requests = n,
            LimitKind::TokensPerDay => caps.tokens_per_day = n,
            LimitKind::TokensPerMonth => caps.tokens_per_month = n,
        }
    }
    Ok(caps)
}

fn time_zone(field: &str, value: Value) -> Result<Option<String>, ApiError> {
    match value {
        Value::Null => Ok(None),
        Value::String(name) if crate::ledger::window::zone(Some(&name)).is_some() => Ok(Some(name)),
        _ => Err(ApiError::invalid(
            field.to_owned(),
            "must be an IANA time zone name, such as Asia/Shanghai or UTC",
        )),
    }
}

/// The OpenAPI schema of `limits` (the contract's `Limits`).
pub struct LimitsSchema;

impl utoipa::PartialSchema for LimitsSchema {
    fn schema() -> RefOr<Schema> {
        let per_model = caps_schema(ObjectBuilder::new()).description(Some(
            "A model's own limits, beside the subject-wide ones; without `timeZone`, the subject-wide zone",
        ));
        caps_schema(ObjectBuilder::new())
            .description(Some(format!(
                "Limits; an absent (or null) limit is unlimited. Integers from 1 to {MAX_LIMIT}. Per-minute limits \
                 count in calendar minutes (UTC); daily and monthly budgets in calendar days and months of \
                 `timeZone`. `models` holds per-model sets (at most {MAX_MODEL_SETS}). Unknown fields are refused."
            )))
            .property(
                MODELS,
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .additional_properties(Some(AdditionalProperties::RefOr(per_model.into())))
                    .max_properties(Some(MAX_MODEL_SETS))
                    .description(Some("Model name → that model's limits")),
            )
            .examples([serde_json::json!({"requestsPerMinute": 60, "tokensPerDay": 1_000_000, "timeZone": "Asia/Shanghai",
                "models": {"Qwen3-235B": {"concurrentRequests": 4}}})])
            .into()
    }
}

impl utoipa::ToSchema for LimitsSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "Limits".into()
    }
}

/// A set's members: the five limits and the time zone.
fn caps_schema(object: ObjectBuilder) -> ObjectBuilder {
    let mut object = object
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)));
    for (name, kind) in limit_fields() {
        let what = match kind {
            LimitKind::RequestsPerMinute => "Requests per calendar minute (UTC)",
            LimitKind::TokensPerMinute => {
                "Tokens (prompt and completion) per calendar minute (UTC)"
            }
            LimitKind::ConcurrentRequests => "Requests in flight at once",
            LimitKind::TokensPerDay => "Tokens per calendar day of `timeZone`",
            LimitKind::TokensPerMonth => "Tokens per calendar month of `timeZone`",
        };
        let schema = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(MAX_LIMIT))
            .description(Some(what));
        object = object.property(name, schema);
    }
    let zone = ObjectBuilder::new().schema_type(Type::String).description(Some(
        "IANA time zone of the daily and monthly budgets (`Asia/Shanghai`); UTC when absent",
    ));
    object.property(TIME_ZONE, zone)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field_of(value: Value) -> String {
        match parse(Some(value.clone())) {
            Err(ApiError::Invalid { field, .. }) => field.into_owned(),
            other => panic!("{value}: {other:?}"),
        }
    }

    #[test]
    fn every_limit_reads_and_null_is_none() {
        let given = json!({"requestsPerMinute": 1, "tokensPerMinute": 2, "concurrentRequests": 3, "tokensPerDay": 4,
            "tokensPerMonth": MAX_LIMIT, "timeZone": "America/New_York", "models": {"m": {"tokensPerDay": 9}}});
        let limits = parse(Some(given.clone())).unwrap();
        assert_eq!(
            serde_json::to_value(&limits).unwrap(),
            given,
            "what is stored is what was given"
        );
        assert_eq!(parse(None).unwrap(), Limits::default());
        assert_eq!(parse(Some(Value::Null)).unwrap(), Limits::default());
        assert_eq!(parse(Some(json!({"tokensPerDay": null}))).unwrap(), Limits::default());
        assert_eq!(limit_fields().len(), 5);
    }

    #[test]
    fn every_error_names_its_field() {
        for (value, field) in [
            (json!(5), "limits"),
            (json!({"tokensPerDay": 0}), "limits.tokensPerDay"),
            (json!({"tokensPerDay": -1}), "limits.tokensPerDay"),
            (json!({"tokensPerDay": 1.5}), "limits.tokensPerDay"),
            (json!({"tokensPerDay": "5"}), "limits.tokensPerDay"),
            (json!({"tokensPerMonth": MAX_LIMIT + 1}), "limits.tokensPerMonth"),
            (json!({"timeZone": "Mars/Olympus"}), "limits.timeZone"),
            (json!({"timeZone": 8}), "limits.timeZone"),
            (json!({"tokensPerHour": 5}), "limits.tokensPerHour"),
            (json!({"models": []}), "limits.models"),
            (
                json!({"models": {"m": {"concurrentRequests": 0}}}),
                "limits.models.m.concurrentRequests",
            ),
            (json!({"models": {"m": {"models": {}}}}), "limits.models.m.models"),
            (json!({"models": {"m": 3}}), "limits.models.m"),
            (json!({"models": {"": {}}}), "limits.models."),
            (json!({"models": {"m": {"timeZone": "nowhere"}}}), "limits.models.m.timeZone"),
        ] {
            assert_eq!(field_of(value.clone()), field, "{value}");
        }
        let many: Map<String, Value> =
            (0..=MAX_MODEL_SETS).map(|i| (format!("m{i}"), json!({"tokensPerDay": 1}))).collect();
        assert_eq!(field_of(json!({"models": many})), "limits.models");
    }
}
