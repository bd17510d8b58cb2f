//! `GET /v1/models`: the served models, as vLLM lists them (`vllm-models.json`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::generate::Null;
use crate::state::MockState;

#[derive(Serialize)]
struct ModelList {
    object: &'static str,
    data: Vec<Model>,
}

#[derive(Serialize)]
struct Model {
    id: String,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
    root: String,
    parent: Null,
    max_model_len: u32,
    permission: [Permission; 1],
}

#[derive(Serialize)]
struct Permission {
    id: String,
    object: &'static str,
    created: u64,
    allow_create_engine: bool,
    allow_sampling: bool,
    allow_logprobs: bool,
    allow_search_indices: bool,
    allow_view: bool,
    allow_fine_tuning: bool,
    organization: &'static str,
    group: Null,
    is_blocking: bool,
}

/// The handler.
pub(crate) async fn handle(State(state): State<MockState>) -> Response {
    let created = state.started();
    let config = state.config();
    let data =
        config.models.iter().map(|name| model(name, created, config.max_model_len)).collect();
    Json(ModelList { object: "list", data }).into_response()
}

fn model(name: &str, created: u64, max_model_len: u32) -> Model {
    let permission = Permission {
        id: format!("modelperm-{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>()),
        object: "model_permission",
        created,
        allow_create_engine: false,
        allow_sampling: true,
        allow_logprobs: true,
        allow_search_indices: false,
        allow_view: true,
        allow_fine_tuning: false,
        organization: "*",
        group: Null,
        is_blocking: false,
    };
    Model {
        id: name.to_owned(),
        object: "model",
        created,
        owned_by: "vllm",
        root: name.to_owned(),
        parent: Null,
        max_model_len,
        permission: [permission],
    }
}
