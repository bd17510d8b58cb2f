//! `POST /internal/limits/lease`
//! ([`LEASE_PATH`](vllm_gateway_filter::feed::limits::LEASE_PATH)): an Envoy instance takes shares of its
//! callers' limits from the ledger, gives back what it did not spend and charges what it spent
//! beyond its grants (the contract's [`LeaseRequest`] → [`LeaseResponse`]), behind the state
//! feed's token. The work is [`crate::ledger::lease`]'s; this checks the body and counts.

use std::sync::atomic::Ordering::Relaxed;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use vllm_gateway_filter::feed::limits::{LeaseRequest, LeaseResponse};

use super::auth::require_state_token;
use super::limits_input::MAX_LIMIT;
use super::{ApiError, AppState};
use crate::ledger;

/// Most asks in one call.
pub const MAX_ITEMS: usize = 64;
/// Longest instance name, in bytes.
pub const MAX_INSTANCE_BYTES: usize = 128;
/// Longest model name, in characters (as an app's models).
const MAX_MODEL_CHARS: usize = 200;

/// Answers one lease call.
pub async fn lease(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<LeaseRequest>, JsonRejection>,
) -> Result<Json<LeaseResponse>, ApiError> {
    require_state_token(&state, &headers)?;
    let Json(request) = body.map_err(ApiError::from_json)?;
    check(&request)?;
    let grants = ledger::lease::lease(
        state.db(),
        &request.instance,
        &request.items,
        crate::store::now_secs(),
    )
    .await?;
    let metrics = &state.metrics().limits;
    metrics.leases.fetch_add(1, Relaxed);
    for (ask, grant) in request.items.iter().zip(&grants) {
        metrics.count(ask, grant);
    }
    Ok(Json(LeaseResponse { items: grants }))
}

/// Refuses a body the ledger should not see, naming the field.
fn check(request: &LeaseRequest) -> Result<(), ApiError> {
    if request.instance.is_empty() || request.instance.len() > MAX_INSTANCE_BYTES {
        return Err(ApiError::invalid(
            "instance",
            format!("must be 1 to {MAX_INSTANCE_BYTES} bytes"),
        ));
    }
    if request.items.len() > MAX_ITEMS {
        return Err(ApiError::invalid("items", format!("at most {MAX_ITEMS} asks per call")));
    }
    let most = u64::try_from(MAX_LIMIT).unwrap_or(u64::MAX);
    for (i, ask) in request.items.iter().enumerate() {
        if let Some(model) = &ask.key.model {
            if model.is_empty() || model.chars().count() > MAX_MODEL_CHARS {
                return Err(ApiError::invalid(
                    format!("items[{i}].model"),
                    format!("must be 1 to {MAX_MODEL_CHARS} characters"),
                ));
            }
        }
        let held = ask.held.unwrap_or(0);
        for (name, n) in [
            ("take", ask.take),
            ("charge", ask.charge),
            ("giveBack", ask.give_back),
            ("held", held),
        ] {
            if n > most {
                return Err(ApiError::invalid(
                    format!("items[{i}].{name}"),
                    format!("must be at most {MAX_LIMIT}"),
                ));
            }
        }
    }
    Ok(())
}
