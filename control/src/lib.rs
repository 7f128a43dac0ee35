//! fusebox-control: serves the policy the Envoy filter polls.
//!
//! This first cut serves a policy file: every `GET /v1/policy` re-reads it, and a changed file
//! that validates (with the engine's own schema) becomes the new version. A file that does not
//! validate is logged and ignored; the last good version keeps being served.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use fusebox_engine::policy::Policy;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Mutex;

/// The policy currently served.
#[derive(Debug, Clone)]
struct Served {
    file_digest: [u8; 32],
    version: u64,
    body: Arc<Vec<u8>>,
    etag: String,
}

/// A policy file watched on every read.
#[derive(Debug)]
pub struct PolicyFile {
    path: PathBuf,
    served: Mutex<Option<Served>>,
}

impl PolicyFile {
    /// Loads the file once; fails if it is missing or invalid, so a bad start is loud.
    pub async fn open(path: PathBuf) -> Result<Arc<PolicyFile>, String> {
        let file = Arc::new(PolicyFile { path, served: Mutex::new(None) });
        file.refresh().await?;
        Ok(file)
    }

    /// Re-reads the file; a valid change becomes a new version. Returns the served policy.
    async fn refresh(&self) -> Result<Served, String> {
        let mut served = self.served.lock().await;
        let read = tokio::fs::read(&self.path).await.map_err(|e| format!("{}: {e}", self.path.display()));
        let raw = match (read, served.as_ref()) {
            (Ok(raw), _) => raw,
            (Err(e), Some(current)) => {
                tracing::error!("cannot read policy file, serving version {}: {e}", current.version);
                return Ok(current.clone());
            }
            (Err(e), None) => return Err(e),
        };
        let digest: [u8; 32] = Sha256::digest(&raw).into();
        if let Some(current) = served.as_ref().filter(|s| s.file_digest == digest) {
            return Ok(current.clone());
        }
        match Policy::from_json(&raw) {
            Ok(mut policy) => {
                let version = served.as_ref().map_or(1, |s| s.version + 1);
                policy.version = version;
                let body = serde_json::to_vec(&policy).map_err(|e| e.to_string())?;
                let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
                let next =
                    Served { file_digest: digest, version, body: Arc::new(body), etag: format!("\"{version}-{hex}\"") };
                tracing::info!("policy version {version} loaded from {}", self.path.display());
                *served = Some(next.clone());
                Ok(next)
            }
            Err(e) => match served.as_ref() {
                Some(current) => {
                    tracing::error!("policy file rejected, serving version {}: {e}", current.version);
                    Ok(current.clone())
                }
                None => Err(format!("{}: {e}", self.path.display())),
            },
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub policy: Arc<PolicyFile>,
    /// Bearer token required to read the policy (it holds JWT secrets); `None` = open.
    pub read_token: Option<String>,
}

pub fn app(state: AppState) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/v1/policy", get(get_policy)).with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"ok": true}))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(serde_json::json!({"error": {"code": code, "message": message}}))).into_response()
}

async fn get_policy(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &state.read_token {
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if given != Some(format!("Bearer {expected}").as_str()) {
            return error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required");
        }
    }
    let served = match state.policy.refresh().await {
        Ok(s) => s,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "policy_unavailable", &e),
    };
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == served.etag || t.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, served.etag)]).into_response();
    }
    (
        StatusCode::OK,
        [(header::ETAG, served.etag), (header::CONTENT_TYPE, "application/json".to_string())],
        served.body.as_ref().clone(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    const POLICY: &str = r#"{"identity": {"jwt": {"issuer": "i", "audiences": ["a"],
        "keys": [{"alg": "HS256", "secret": "0123456789abcdef"}]}}, "tenants": {"acme": {"tokens_60s": 100}}}"#;

    fn temp_policy(content: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fusebox-control-test-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("policy.json");
        std::fs::write(&path, content).unwrap();
        path
    }

    fn rand_suffix() -> u128 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    }

    async fn get(app: &Router, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = Request::get(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
        (status, headers, body)
    }

    #[tokio::test]
    async fn policy_is_served_with_version_and_etag_and_honours_if_none_match() {
        let path = temp_policy(POLICY);
        let app = app(AppState { policy: PolicyFile::open(path).await.unwrap(), read_token: None });
        let (status, headers, body) = get(&app, "/v1/policy", &[]).await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["tenants"]["acme"]["tokens_60s"], 100);
        let etag = headers.get("etag").unwrap().to_str().unwrap().to_string();
        let (status, _, body) = get(&app, "/v1/policy", &[("if-none-match", &etag)]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn changed_file_is_a_new_version_and_a_bad_file_keeps_the_last_good_one() {
        let path = temp_policy(POLICY);
        let app = app(AppState { policy: PolicyFile::open(path.clone()).await.unwrap(), read_token: None });
        std::fs::write(&path, POLICY.replace("100", "200")).unwrap();
        let (_, _, body) = get(&app, "/v1/policy", &[]).await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((v["version"].as_u64(), v["tenants"]["acme"]["tokens_60s"].as_u64()), (Some(2), Some(200)));
        std::fs::write(&path, POLICY.replace("100", "0")).unwrap();
        let (status, _, body) = get(&app, "/v1/policy", &[]).await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!((v["version"].as_u64(), v["tenants"]["acme"]["tokens_60s"].as_u64()), (Some(2), Some(200)));
    }

    #[tokio::test]
    async fn invalid_policy_file_refuses_to_start() {
        let err = PolicyFile::open(temp_policy(r#"{"identity": {}}"#)).await.unwrap_err();
        assert!(err.contains("identity: configure at least one of"), "{err}");
    }

    #[tokio::test]
    async fn read_token_is_required_when_configured() {
        let path = temp_policy(POLICY);
        let app = app(AppState { policy: PolicyFile::open(path).await.unwrap(), read_token: Some("sekrit".into()) });
        assert_eq!(get(&app, "/v1/policy", &[]).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(get(&app, "/v1/policy", &[("authorization", "Bearer wrong")]).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(get(&app, "/v1/policy", &[("authorization", "Bearer sekrit")]).await.0, StatusCode::OK);
        assert_eq!(get(&app, "/healthz", &[]).await.0, StatusCode::OK);
    }
}
