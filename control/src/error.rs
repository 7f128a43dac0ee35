//! API errors: a status and a JSON body `{"error": {"code", "message", "field"?}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use fusebox_engine::policy::PolicyError;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// The offending field, for validation errors.
    pub field: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) if !field.is_empty() => write!(f, "{field}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl ApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), field: None }
    }

    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError { field: Some(field.into()), ..ApiError::new(400, "invalid_request", message) }
    }

    pub fn invalid_policy(e: PolicyError) -> ApiError {
        ApiError { field: Some(e.field), ..ApiError::new(400, "invalid_policy", e.message) }
    }

    /// [`ApiError::invalid_policy`] for a part of the policy at `at` (`tiers.gold`): the field
    /// the engine names is prefixed with it.
    pub fn invalid_policy_at(at: &str, e: PolicyError) -> ApiError {
        let field = match (at.is_empty(), e.field.is_empty()) {
            (true, _) => e.field,
            (false, true) => at.to_string(),
            (false, false) => format!("{at}.{}", e.field),
        };
        ApiError::invalid_policy(PolicyError { field, message: e.message })
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(401, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(409, "conflict", message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(422, code, message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "unavailable", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "internal", message)
    }

    pub fn body(&self) -> serde_json::Value {
        match &self.field {
            Some(field) => json!({"error": {"code": self.code, "message": self.to_string(), "field": field}}),
            None => json!({"error": {"code": self.code, "message": self.to_string()}}),
        }
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> ApiError {
        tracing::error!("database error: {e}");
        ApiError::internal(format!("database error: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body())).into_response()
    }
}
