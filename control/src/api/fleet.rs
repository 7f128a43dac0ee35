//! `POST /v1/fleet/sync`: an Envoy's usage of its recent keys in, the rest of the fleet's out.

use super::auth::{require_node, require_reader};
use super::state::AppState;
use crate::db::now_ms;
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use fusebox_engine::fleet::wire::SyncRequest;

pub(super) async fn post_fleet_sync(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_reader(&state.0.config, &headers)?;
    let req: SyncRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("", format!("expected a fleet sync {{node, instance, keys}}: {e}")))?;
    require_node(&state.0.config, &headers, &req.node)?;
    let now = now_ms();
    req.validate(now / 1000).map_err(|e| ApiError::bad_request("", e))?;
    match state.0.fleet.sync(&req, now).await {
        Ok(reply) => Ok(Json(reply).into_response()),
        Err(e) => {
            state.fleet_failed(&e.0);
            Err(ApiError::unavailable(format!("fleet counters unavailable: {}", e.0)))
        }
    }
}
