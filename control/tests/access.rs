#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! Who may do what: each kind of caller against each kind of endpoint, refused writes on the
//! audit record under the verified caller's name, and operators rotated without a restart.

mod common;

use axum::http::StatusCode;
use axum::Router;
use common::*;
use fusebox_control::access::nodes::NodeTokens;
use fusebox_control::access::operators::Source;
use fusebox_control::Config;
use fusebox_engine::identity::{hex, sha256};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const NODE: &str = "node-token-gateway-a";

/// Alice, olivia and victor as operators, the filter token, and gateway-a's own node token.
fn service() -> Router {
    let nodes = NodeTokens::parse(&format!("gateway-a {}\n", hex(&sha256(NODE.as_bytes())))).unwrap();
    serve(new_db(), Config { node_tokens: nodes, ..config() })
}

/// What a caller may do: read, run the breaker, change the policy, post an Envoy's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Breaker,
    Policy,
    Events,
}

const ENDPOINTS: &[(Kind, &str, &str, &str)] = &[
    (Kind::Read, "GET", "/v1/policy", ""),
    (Kind::Read, "GET", "/v1/tenants", ""),
    (Kind::Read, "GET", "/v1/tenants/acme", ""),
    (Kind::Read, "GET", "/v1/usage", ""),
    (Kind::Read, "GET", "/v1/audit", ""),
    (Kind::Read, "GET", "/v1/audit/verify", ""),
    (Kind::Read, "GET", "/v1/dashboard", ""),
    (Kind::Read, "GET", "/v1/whoami", ""),
    (Kind::Breaker, "POST", "/v1/tenants/acme/breaker", r#"{"action": "open", "reason": "matrix"}"#),
    (Kind::Breaker, "POST", "/v1/tenants/acme/breaker", r#"{"action": "reset"}"#),
    (Kind::Policy, "PUT", "/v1/tiers/gold", r#"{"tokens_60s": 5000}"#),
    (Kind::Policy, "DELETE", "/v1/tiers/gold", ""),
    (Kind::Policy, "PUT", "/v1/tenants/acme", r#"{"tokens_60s": 300}"#),
    (Kind::Policy, "DELETE", "/v1/tenants/acme", ""),
    (Kind::Events, "POST", "/v1/events", ""),
];

fn events(n: usize) -> String {
    json!({"batch_id": format!("gateway-a-{n}"), "source": "gateway-a", "events": [
        {"kind": "usage", "tenant": "acme", "model": "m", "route": "/v1/", "status": 200,
         "minute": 1_795_428_000u64, "requests": 1, "input_tokens": 3, "output_tokens": 4}]})
    .to_string()
}

async fn audit_refusals(app: &Router) -> Vec<(String, String)> {
    let audit = call(app, "GET", "/v1/audit?limit=1000", Some(ALICE), &[], "").await.json();
    audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "refused")
        .map(|e| (e["actor_id"].as_str().unwrap().to_string(), e["action"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn each_caller_can_do_exactly_what_its_role_allows() {
    // The caller, what it may do, and the name refusals are audited under (None: not verified).
    let callers: &[(Option<&str>, &[Kind], Option<&str>)] = &[
        (None, &[], None),
        (Some("not-a-token"), &[], None),
        (Some(VICTOR), &[Kind::Read], Some("victor")),
        (Some(OLIVIA), &[Kind::Read, Kind::Breaker], Some("olivia")),
        (Some(ALICE), &[Kind::Read, Kind::Breaker, Kind::Policy], Some("alice")),
        (Some(ADMIN), &[Kind::Read, Kind::Breaker, Kind::Policy], Some("admin")),
        (Some(FILTER), &[Kind::Read], Some("filter")),
        (Some(NODE), &[Kind::Read, Kind::Events], Some("node:gateway-a")),
    ];
    for (token, may, actor) in callers {
        let app = service();
        let mut refused_writes = Vec::new();
        for (n, (kind, method, path, body)) in ENDPOINTS.iter().enumerate() {
            let body = if *kind == Kind::Events { events(n) } else { body.to_string() };
            let r = call(&app, method, path, *token, &[], &body).await;
            let expected = match (token, may.contains(kind)) {
                (_, true) => StatusCode::OK,
                (_, false) if actor.is_none() => StatusCode::UNAUTHORIZED,
                (_, false) => StatusCode::FORBIDDEN,
            };
            assert_eq!(r.status, expected, "{actor:?} {method} {path}: {}", r.text());
            assert!(r.json()["error"]["code"].is_string() || r.status == StatusCode::OK, "{}", r.text());
            if !may.contains(kind) && matches!(kind, Kind::Breaker | Kind::Policy) {
                refused_writes.push(path);
            }
        }
        // Every write refused to a verified caller is on the record under its verified name;
        // callers nobody verified leave no entries (anyone could fill the log with those).
        let refusals = audit_refusals(&app).await;
        match actor {
            Some(name) => {
                assert_eq!(refusals.len(), refused_writes.len(), "{name}: {refusals:?}");
                assert!(refusals.iter().all(|(a, _)| a == name), "{refusals:?}");
            }
            None => assert!(refusals.is_empty(), "{refusals:?}"),
        }
        let verify = call(&app, "GET", "/v1/audit/verify", Some(ALICE), &[], "").await.json();
        assert_eq!(verify["ok"], true, "{verify}");
    }
}

#[tokio::test]
async fn a_refusal_names_the_role_needed_and_the_audit_records_what_was_tried() {
    let app = service();
    let r = call(&app, "PUT", "/v1/tiers/gold", Some(OLIVIA), &[], r#"{"tokens_60s": 5}"#).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("olivia") && message.contains("operator") && message.contains("admin"), "{message}");
    let audit = call(&app, "GET", "/v1/audit", Some(VICTOR), &[], "").await.json();
    let entry = audit["entries"].as_array().unwrap().iter().find(|e| e["outcome"] == "refused").unwrap().clone();
    assert_eq!(entry["actor_id"], "olivia");
    assert_eq!(entry["action"], "tier.put");
    assert_eq!(entry["reason_code"], "insufficient_role");
    assert_eq!(
        entry["details"],
        json!({"method": "PUT", "path": "/v1/tiers/gold", "role": "operator", "needs": "admin"})
    );
    assert_eq!(call(&app, "GET", "/v1/policy", Some(VICTOR), &[], "").await.json()["version"], 1);
}

#[tokio::test]
async fn the_audit_actor_is_the_verified_operator_never_a_header() {
    let app = service();
    let kill = r#"{"action": "open", "reason": "incident 7"}"#;
    let spoof = [("x-fusebox-actor", "mallory")];
    let r = call(&app, "POST", "/v1/tenants/acme/breaker", Some(OLIVIA), &spoof, kill).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let audit = call(&app, "GET", "/v1/audit?tenant=acme", Some(VICTOR), &[], "").await.json();
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.last().unwrap()["actor_id"], "olivia", "{audit}");
    assert!(!audit.to_string().contains("mallory"));
    let policy = call(&app, "GET", "/v1/policy", Some(VICTOR), &[], "").await.json();
    assert_eq!(policy["tenants"]["acme"]["forced"]["actor"], "olivia");
    let who = call(&app, "GET", "/v1/whoami", Some(OLIVIA), &[], "").await.json();
    assert_eq!(who, json!({"kind": "operator", "name": "olivia", "role": "operator"}));
}

/// Waits until `check` holds, rereading for at most 10 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn operators_are_added_rotated_and_removed_by_editing_their_file_without_a_restart() {
    let dir = std::env::temp_dir().join(format!("fusebox-access-{}-{:?}", std::process::id(), Instant::now()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("operators");
    std::fs::write(&file, operator_line("dana", "operator", "dana-old")).unwrap();
    let source = Source::file(file.clone()).unwrap();
    tokio::spawn(source.clone().watch(Duration::from_millis(20)));
    let app = serve(new_db(), Config { filter_token: Some(FILTER.into()), operators: source, ..Config::default() });
    let whoami = |token: &'static str| {
        let app = app.clone();
        async move { call(&app, "GET", "/v1/whoami", Some(token), &[], "").await }
    };
    assert_eq!(whoami("dana-old").await.json()["name"], "dana");
    // Rotation: both tokens while the file lists both, then only the new one.
    let both = [operator_line("dana", "operator", "dana-old"), operator_line("dana", "operator", "dana-new")].concat();
    std::fs::write(&file, both).unwrap();
    eventually("the new token accepted", async || whoami("dana-new").await.status == StatusCode::OK).await;
    assert_eq!(whoami("dana-old").await.status, StatusCode::OK, "the old one still works meanwhile");
    std::fs::write(&file, operator_line("dana", "admin", "dana-new")).unwrap();
    eventually("the old token refused", async || whoami("dana-old").await.status == StatusCode::UNAUTHORIZED).await;
    // A role change applies too (and the old token went with the new file, not an empty read).
    assert_eq!(whoami("dana-new").await.json()["role"], "admin");
    // A file that goes bad changes nothing: the operators in force stay.
    std::fs::write(&file, "dana admin not-a-digest\n").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(whoami("dana-new").await.json()["role"], "admin");
    // Removing an operator takes their access away.
    std::fs::write(&file, "# nobody\n").unwrap();
    eventually("dana removed", async || whoami("dana-new").await.status == StatusCode::UNAUTHORIZED).await;
    let r = call(&app, "PUT", "/v1/tiers/gold", Some("dana-new"), &[], r#"{"tokens_60s": 5}"#).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_stored_policy_documents_are_anchored_in_the_audit_chain() {
    let app = service();
    let r = call(&app, "PUT", "/v1/tiers/gold", Some(ALICE), &[], r#"{"tokens_60s": 5000}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    let audit = call(&app, "GET", "/v1/audit", Some(ALICE), &[], "").await.json();
    let digests: Vec<&Value> =
        audit["entries"].as_array().unwrap().iter().map(|e| &e["details"]["doc_sha256"]).collect();
    assert_eq!(digests.len(), 2, "seed and change: {audit}");
    assert!(digests.iter().all(|d| d.as_str().map(str::len) == Some(64)), "{digests:?}");
    let v = call(&app, "GET", "/v1/audit/verify", Some(ALICE), &[], "").await.json();
    assert_eq!((v["ok"].clone(), v["policies"].clone()), (json!(true), json!(2)), "{v}");
}
