#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code; each test file uses part of it
//! What the in-process API tests share: the seed policy, the tokens and operators, a fresh
//! database (in memory, or on PostgreSQL for the second run of `make test`) and one call.

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use fusebox_control::access::operators::{Operators, Source};
use fusebox_control::db::Db;
use fusebox_control::{app, AppState, Config};
use fusebox_engine::identity::{hex, sha256};
use fusebox_engine::policy::Policy;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// The legacy admin token (the operator `admin`).
pub const ADMIN: &str = "admin-token-0123";
pub const FILTER: &str = "filter-token-0123";
/// Named operators: alice is an admin, olivia an operator, victor a viewer.
pub const ALICE: &str = "alice-token-0123";
pub const OLIVIA: &str = "olivia-token-0123";
pub const VICTOR: &str = "victor-token-0123";

pub const POLICY: &str = r#"{"identity": {"jwt": {"issuer": "i", "audiences": ["a"],
    "keys": [{"alg": "HS256", "secret": "0123456789abcdef"}]}},
    "tenants": {"acme": {"tokens_60s": 100}},
    "prices": {"gpt-4o": {"input_per_mtok": 2.5, "output_per_mtok": 10.0}}}"#;

/// An operators file line.
pub fn operator_line(name: &str, role: &str, token: &str) -> String {
    format!("{name} {role} {}\n", hex(&sha256(token.as_bytes())))
}

pub fn operators() -> Source {
    let text = [("alice", "admin", ALICE), ("olivia", "operator", OLIVIA), ("victor", "viewer", VICTOR)]
        .map(|(n, r, t)| operator_line(n, r, t))
        .concat();
    Source::fixed(Operators::parse(&text).unwrap())
}

/// The admin, filter and operator tokens above.
pub fn config() -> Config {
    Config {
        admin_token: Some(ADMIN.into()),
        filter_token: Some(FILTER.into()),
        operators: operators(),
        ..Config::default()
    }
}

pub fn serve(db: Db, config: Config) -> Router {
    let seed = Policy::from_json(POLICY.as_bytes()).unwrap();
    app(AppState::new(db, Some((seed, "test".into())), config).unwrap())
}

/// A fresh database: in memory, or with `FUSEBOX_TEST_DATABASE=postgres` (the second run of
/// `make test`) a new database on a real PostgreSQL server the test process starts.
pub fn new_db() -> Db {
    match std::env::var("FUSEBOX_TEST_DATABASE").as_deref() {
        Ok("postgres") => {
            static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let url = fusebox_integration::Postgres::shared().create_database(&format!("api_{n}"));
            Db::postgres(&url).unwrap()
        }
        Ok(other) => panic!("FUSEBOX_TEST_DATABASE={other}: expected postgres"),
        Err(_) => Db::in_memory().unwrap(),
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut req = Request::builder().method(method).uri(uri).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = app.clone().oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    Resp { status, headers, body }
}

pub async fn read(app: &Router, uri: &str) -> Resp {
    call(app, "GET", uri, Some(FILTER), &[], "").await
}
