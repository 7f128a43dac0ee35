//! `POST /v1/events`: the filters' batches of usage, denials, transitions and warnings.

use super::auth::{require_node, require_reader};
use super::state::AppState;
use crate::error::ApiError;
use crate::ingest::{self, RawBatch};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;

pub(super) async fn post_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    // Who may post at all first, so a stranger learns nothing from the body's parsing.
    require_reader(&state.0.config, &headers)?;
    let batch: RawBatch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("", format!("expected an event batch {{batch_id, source, events}}: {e}")))?;
    require_node(&state.0.config, &headers, &batch.source)?;
    let policy = state.served().policy;
    let out = state.blocking(move |inner| ingest::ingest(&inner.db, &policy, batch, inner.config.escalation)).await?;
    Ok(Json(out).into_response())
}
