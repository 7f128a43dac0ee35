#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! Two control replicas over one database: a change made on one wakes the Envoys long-polling
//! the other (each replica follows the versions the database holds).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use fusebox_control::db::Db;
use fusebox_control::{app, AppState, Config};
use fusebox_engine::policy::Policy;
use http_body_util::BodyExt;
use serde_json::Value;
use std::time::{Duration, Instant};
use tower::ServiceExt;

const ADMIN: &str = "admin-token-0123";

/// A database the replicas share, opened once per replica: a SQLite file, or with
/// `FUSEBOX_TEST_DATABASE=postgres` a database on a real PostgreSQL server.
struct Shared {
    open: Box<dyn Fn() -> Db>,
    _dir: Option<TempDir>,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn shared(name: &str) -> Shared {
    match std::env::var("FUSEBOX_TEST_DATABASE").as_deref() {
        Ok("postgres") => {
            let url = fusebox_integration::Postgres::shared().create_database(name);
            Shared { open: Box::new(move || Db::postgres(&url).unwrap()), _dir: None }
        }
        _ => {
            let dir = std::env::temp_dir().join(format!("fusebox-replicas-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("control.db");
            Shared { open: Box::new(move || Db::open(&path).unwrap()), _dir: Some(TempDir(dir)) }
        }
    }
}

fn replica(db: &Shared) -> (AppState, Router) {
    let seed =
        Policy::from_json(br#"{"identity": {"jwt_authn": {}}, "tenants": {"acme": {"tokens_60s": 100}}}"#).unwrap();
    let config = Config { admin_token: Some(ADMIN.into()), ..Config::default() };
    let state = AppState::new((db.open)(), Some((seed, "test".into())), config).unwrap();
    (state.clone(), app(state))
}

async fn call(app: &Router, method: &str, uri: &str, extra: &[(&str, &str)], body: &str) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri).header("authorization", format!("Bearer {ADMIN}"));
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = app.clone().oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_change_made_on_one_replica_wakes_the_long_polls_of_the_other() {
    let db = shared("long_poll");
    let (_, one) = replica(&db);
    let (two_state, two) = replica(&db);
    tokio::spawn(two_state.follow_database(Duration::from_millis(50)));
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let r = call(&two, "GET", "/v1/policy?wait=30", &[("if-none-match", "\"v1\"")], "").await;
        (r, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "nothing changed yet");
    let (status, body) =
        call(&one, "POST", "/v1/tenants/acme/breaker", &[], r#"{"action": "open", "reason": "runaway"}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ((status, policy), waited) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(policy["version"], 2, "the other replica serves the new version");
    assert_eq!(policy["tenants"]["acme"]["forced"]["state"], "open");
    assert!(waited < Duration::from_secs(30), "woken by the change, not the end of the wait");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_appending_at_once_still_write_one_valid_audit_chain() {
    let db = shared("audit_chain");
    let replicas = [replica(&db), replica(&db)].map(|(state, app)| {
        tokio::spawn(state.follow_database(Duration::from_millis(50)));
        app
    });
    let mut writers = Vec::new();
    for (r, app) in replicas.iter().enumerate() {
        for w in 0..4 {
            let app = app.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..10 {
                    let tenant = format!("t{r}-{w}-{i}");
                    let body = r#"{"action": "open", "reason": "concurrent", "create": true}"#;
                    let (status, body) = call(&app, "POST", &format!("/v1/tenants/{tenant}/breaker"), &[], body).await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                }
            }));
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    for app in &replicas {
        let (status, v) = call(app, "GET", "/v1/audit/verify", &[], "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["entries"], 1 + 80, "the seed and every change, once each: {v}");
    }
    // Versions are consecutive whichever replica wrote them, and both serve the newest.
    for app in &replicas {
        let deadline = Instant::now() + Duration::from_secs(5);
        while call(app, "GET", "/v1/policy", &[], "").await.1["version"] != 81 {
            assert!(Instant::now() < deadline, "a replica never served version 81");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
