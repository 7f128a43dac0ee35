#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! In-process API tests (tower `oneshot`) over an in-memory database. One file, since every
//! test builds on the same fixture and the same router.

mod common;

use axum::http::StatusCode;
use axum::Router;
use common::*;
use fusebox_control::access::nodes::NodeTokens;
use fusebox_control::db::Db;
use fusebox_control::ingest::Escalation;
use fusebox_control::{app, AppState, Config};
use fusebox_engine::policy::Policy;
use serde_json::{json, Value};

fn service_on(db: Db, escalation: Escalation) -> Router {
    serve(db, Config { escalation, ..config() })
}

fn service() -> Router {
    service_on(new_db(), Escalation::default())
}

/// A write by alice, an operator with the admin role.
async fn admin(app: &Router, method: &str, uri: &str, body: &str) -> Resp {
    call(app, method, uri, Some(ALICE), &[], body).await
}

#[tokio::test]
async fn policy_is_served_with_version_and_etag_and_honours_if_none_match() {
    let app = service();
    let r = read(&app, "/v1/policy").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["version"], 1);
    assert_eq!(r.json()["tenants"]["acme"]["tokens_60s"], 100);
    let etag = r.headers["etag"].to_str().unwrap().to_string();
    let r = call(&app, "GET", "/v1/policy", Some(FILTER), &[("if-none-match", &etag)], "").await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn reads_need_a_token_and_writes_need_an_operator_with_the_role() {
    let app = service();
    assert_eq!(call(&app, "GET", "/v1/policy", None, &[], "").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&app, "GET", "/v1/policy", Some("wrong"), &[], "").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&app, "GET", "/v1/policy", Some(ADMIN), &[], "").await.status, StatusCode::OK);
    let body = r#"{"tokens_60s": 5}"#;
    let r = call(&app, "PUT", "/v1/tenants/acme", Some(FILTER), &[], body).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "the filter token cannot write");
    assert_eq!(r.json()["error"]["code"], "forbidden");
    assert_eq!(call(&app, "PUT", "/v1/tenants/acme", None, &[], body).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&app, "GET", "/healthz", None, &[], "").await.status, StatusCode::OK);
    assert_eq!(read(&app, "/v1/policy").await.json()["version"], 1, "refused writes change nothing");
}

#[tokio::test]
async fn writes_are_disabled_without_an_admin_token() {
    let seed = Policy::from_json(POLICY.as_bytes()).unwrap();
    let app = app(AppState::new(new_db(), Some((seed, "t".into())), Config::default()).unwrap());
    let r = call(&app, "PUT", "/v1/tenants/acme", Some("anything"), &[], "{}").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("--admin-token"));
}

#[tokio::test]
async fn tier_and_tenant_changes_bump_the_version_and_are_served() {
    let app = service();
    let r = admin(&app, "PUT", "/v1/tiers/gold", r#"{"tokens_60s": 5000, "requests_10s": 50}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["version"], 2);
    let r = admin(&app, "PUT", "/v1/tenants/globex", r#"{"tier": "gold", "tokens_10s": 900}"#).await;
    assert_eq!(r.json()["version"], 3);
    assert_eq!(r.json()["before"], Value::Null);
    assert_eq!(r.json()["after"]["tier"], "gold");
    let p = read(&app, "/v1/policy").await.json();
    assert_eq!(p["version"], 3);
    assert_eq!(p["tiers"]["gold"]["tokens_60s"], 5000);
    assert_eq!(p["tenants"]["globex"]["tokens_10s"], 900);
    let t = read(&app, "/v1/tenants/globex").await.json();
    assert_eq!(t["tier"], "gold");
    assert_eq!(t["limits"]["tokens_60s"], 5000);
    assert_eq!(t["limits"]["tokens_10s"], 900);
    let r = admin(&app, "DELETE", "/v1/tenants/globex", "").await;
    assert_eq!(r.json()["version"], 4);
    assert_eq!(read(&app, "/v1/policy").await.json()["tenants"].get("globex"), None);
    assert_eq!(admin(&app, "DELETE", "/v1/tenants/globex", "").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_invalid_tier_or_override_is_refused_naming_the_field_and_never_served() {
    let app = service();
    let r = admin(&app, "PUT", "/v1/tiers/free", r#"{"tokens_60s": 0}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["field"], "tiers.free.tokens_60s");
    let r = admin(&app, "PUT", "/v1/tenants/acme", r#"{"tokens_6s": 10}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["field"], "tenants.acme.tokens_6s");
    let r = admin(&app, "PUT", "/v1/tenants/acme", r#"{"tier": "platinum"}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["field"], "tenants.acme.tier");
    let r = admin(&app, "PUT", "/v1/tiers/free", r#"{"breaker": {"cooldown_s": 60, "max_cooldown_s": 10}}"#).await;
    assert_eq!(r.json()["error"]["field"], "tiers.free.breaker.max_cooldown_s");
    let r = admin(&app, "PUT", "/v1/tenants/acme", "not json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(read(&app, "/v1/policy").await.json()["version"], 1);
    // The refusals that reached validation are on the record.
    let audit = read(&app, "/v1/audit").await.json();
    let rejected = audit["entries"].as_array().unwrap().iter().filter(|e| e["outcome"] == "rejected").count();
    assert!(rejected >= 1, "{audit}");
}

#[tokio::test]
async fn idempotency_key_replays_the_first_reply_and_refuses_a_different_request() {
    let app = service();
    let key = [("idempotency-key", "k-1")];
    let body = r#"{"tokens_60s": 222}"#;
    let first = call(&app, "PUT", "/v1/tenants/acme", Some(ADMIN), &key, body).await;
    assert_eq!(first.json()["version"], 2);
    let again = call(&app, "PUT", "/v1/tenants/acme", Some(ADMIN), &key, body).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json(), first.json());
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(read(&app, "/v1/policy").await.json()["version"], 2, "applied once");
    let other = call(&app, "PUT", "/v1/tenants/acme", Some(ADMIN), &key, r#"{"tokens_60s": 1}"#).await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.json()["error"]["code"], "idempotency_key_reused");
}

#[tokio::test]
async fn breaker_commands_set_and_release_the_operator_hold() {
    let app = service();
    let r = admin(&app, "POST", "/v1/tenants/acme/breaker", r#"{"action": "open", "reason": "runaway loop"}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let p = read(&app, "/v1/policy").await.json();
    assert_eq!(p["tenants"]["acme"]["forced"]["state"], "open");
    assert_eq!(p["tenants"]["acme"]["forced"]["actor"], "alice");
    assert_eq!(p["tenants"]["acme"]["tokens_60s"], 100, "overrides untouched");
    // Editing the overrides keeps the hold; only the breaker endpoint releases it.
    admin(&app, "PUT", "/v1/tenants/acme", r#"{"tokens_60s": 300}"#).await;
    let p = read(&app, "/v1/policy").await.json();
    assert_eq!(p["tenants"]["acme"]["forced"]["state"], "open");
    let r = admin(&app, "PUT", "/v1/tenants/acme", r#"{"forced": {"state": "closed"}}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    admin(&app, "POST", "/v1/tenants/acme/breaker", r#"{"action": "reset", "reason": "fixed"}"#).await;
    let p = read(&app, "/v1/policy").await.json();
    assert_eq!(p["tenants"]["acme"].get("forced"), None);
    assert_eq!(p["tenants"]["acme"]["breaker_epoch"], 1);
    let r = admin(&app, "POST", "/v1/tenants/acme/breaker", r#"{"action": "explode"}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // A tenant control has never heard of is refused (a typo must not create one), unless asked.
    let r = admin(&app, "POST", "/v1/tenants/initech/breaker", r#"{"action": "open", "reason": "abuse"}"#).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    assert!(read(&app, "/v1/policy").await.json()["tenants"].get("initech").is_none());
    admin(&app, "POST", "/v1/tenants/initech/breaker", r#"{"action": "open", "reason": "abuse", "create": true}"#)
        .await;
    assert_eq!(read(&app, "/v1/tenants/initech").await.json()["forced"]["state"], "open");
    // Deleting the entry keeps an operator's hold, unless its release is asked for too.
    assert_eq!(admin(&app, "DELETE", "/v1/tenants/initech", "").await.status, StatusCode::OK);
    assert_eq!(read(&app, "/v1/tenants/initech").await.json()["forced"]["state"], "open");
    let bad = admin(&app, "DELETE", "/v1/tenants/initech?release_hold=maybe", "").await;
    assert_eq!((bad.status, bad.json()["error"]["field"].clone()), (StatusCode::BAD_REQUEST, json!("release_hold")));
    assert_eq!(admin(&app, "DELETE", "/v1/tenants/initech?release_hold=true", "").await.status, StatusCode::OK);
    assert!(read(&app, "/v1/policy").await.json()["tenants"].get("initech").is_none(), "gone, hold and all");
    let audit = read(&app, "/v1/audit?tenant=acme").await.json();
    let actions: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["breaker.open", "tenant.put", "tenant.put", "breaker.reset"]);
    let first = &audit["entries"][0];
    assert_eq!(first["reason_code"], "kill_switch");
    assert_eq!(first["details"]["reason"], "runaway loop");
    assert_eq!(first["actor_id"], "alice");
}

fn usage_event(tenant: &str, model: &str, input: u64, output: u64) -> Value {
    json!({"kind": "usage", "tenant": tenant, "model": model, "route": "/v1/", "status": 200,
           "minute": 1_795_428_000u64, "requests": 2, "input_tokens": input, "output_tokens": output})
}

#[tokio::test]
async fn event_batches_are_counted_once_and_usage_is_priced() {
    let app = service();
    let batch = json!({"batch_id": "envoy-1-1", "source": "envoy-1", "events": [
        usage_event("acme", "gpt-4o-mini", 1000, 500),
        usage_event("acme", "claude-3", 10, 20),
        {"kind": "denial", "tenant": "acme", "reason": "tokens_60s", "minute": 1_795_428_000u64, "count": 3},
        {"kind": "future_kind", "tenant": "acme"},
    ]})
    .to_string();
    let r = call(&app, "POST", "/v1/events", Some(FILTER), &[], &batch).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["accepted"], 3);
    assert_eq!(r.json()["ignored"], 1);
    let r = call(&app, "POST", "/v1/events", Some(FILTER), &[], &batch).await;
    assert_eq!(r.json()["duplicate"], true);
    let u = read(&app, "/v1/usage?tenant=acme&from=2026-11-23&to=2026-11-24").await.json();
    let t = &u["tenants"][0];
    assert_eq!(t["tenant"], "acme");
    assert_eq!(t["usage"]["requests"], 4);
    assert_eq!(t["usage"]["input_tokens"], 1010);
    assert_eq!(t["usage"]["output_tokens"], 520);
    assert_eq!(t["usage"]["total_tokens"], 1530);
    // gpt-4o prices match gpt-4o-mini by prefix: 1000 * 2.5/M + 500 * 10/M; claude has no price.
    assert_eq!(t["usage"]["cost"], 0.0075);
    assert_eq!(t["models"].as_array().unwrap().len(), 2);
    let empty = read(&app, "/v1/usage?tenant=acme&from=2026-11-24&to=2026-11-25").await.json();
    assert_eq!(empty["tenants"], json!([]));
    let bad = read(&app, "/v1/usage?from=yesterday").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["error"]["field"], "from");
    let totals = read(&app, "/v1/tenants/acme").await.json()["totals"].clone();
    assert_eq!((totals["requests"].as_u64(), totals["denials"].as_u64()), (Some(4), Some(3)));
    let garbage = call(&app, "POST", "/v1/events", Some(FILTER), &[], "{\"events\": 5}").await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    assert_eq!(call(&app, "POST", "/v1/events", None, &[], &batch).await.status, StatusCode::UNAUTHORIZED);
}

fn trip(at_ms: u64) -> Value {
    json!({"kind": "transition", "tenant": "acme", "from": "closed", "to": "open", "at_ms": at_ms,
           "metric": "tokens_60s", "threshold": 100, "observed": 150, "open_until_ms": at_ms + 30_000})
}

#[tokio::test]
async fn transitions_are_audited_and_repeated_trips_escalate() {
    let app = service_on(new_db(), Escalation { trips: 2, window_s: 3600 });
    let now = fusebox_control::db::now_ms();
    let batch = json!({"batch_id": "b1", "source": "envoy-1", "events": [trip(now - 5000)]}).to_string();
    call(&app, "POST", "/v1/events", Some(FILTER), &[], &batch).await;
    let t = read(&app, "/v1/tenants/acme").await.json();
    assert_eq!(t["breaker"]["state"], "open");
    assert_eq!(t["breaker"]["metric"], "tokens_60s");
    assert_eq!(t["breaker"]["observed"], 150);
    assert_eq!(t["escalated"], false);
    let batch = json!({"batch_id": "b2", "source": "envoy-1", "events": [
        {"kind": "transition", "tenant": "acme", "from": "open", "to": "half_open", "at_ms": now - 2000},
        trip(now - 1000),
        {"kind": "warning", "tenant": "acme", "metric": "tokens_60s", "percent": 80, "minute": now / 60_000 * 60},
    ]})
    .to_string();
    call(&app, "POST", "/v1/events", Some(FILTER), &[], &batch).await;
    let t = read(&app, "/v1/tenants/acme").await.json();
    assert_eq!(t["escalated"], true);
    assert_eq!(t["totals"]["trips"], 2);
    let kinds: Vec<&str> = t["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"escalation") && kinds.contains(&"warning"), "{kinds:?}");
    let audit = read(&app, "/v1/audit?tenant=acme").await.json();
    let entries = audit["entries"].as_array().unwrap();
    let trip_entry = entries.iter().find(|e| e["action"] == "breaker.transition").unwrap();
    assert_eq!(trip_entry["reason_code"], "tokens_60s");
    assert_eq!(trip_entry["outcome"], "open");
    assert_eq!(trip_entry["actor_id"], "envoy:envoy-1");
    assert_eq!(trip_entry["details"]["threshold"], 100);
    assert!(entries.iter().any(|e| e["action"] == "tenant.escalated"));
    let m = call(&app, "GET", "/metrics", None, &[], "").await.text();
    assert!(m.contains("fusebox_tenant_breaker_state{tenant=\"acme\",state=\"open\"} 1"), "{m}");
    assert!(m.contains("fusebox_tenant_trips_total{tenant=\"acme\"} 2"), "{m}");
    assert!(m.contains("fusebox_tenant_escalated{tenant=\"acme\"} 1"), "{m}");
    let v = read(&app, "/v1/audit/verify").await.json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["entries"].as_u64(), Some(entries.len() as u64 + 1), "the seed entry is not acme's");
}

#[tokio::test]
async fn metrics_keep_cardinality_bounded() {
    let seed = Policy::from_json(POLICY.as_bytes()).unwrap();
    let config = Config { filter_token: Some(FILTER.into()), metrics_max_tenants: 3, ..Config::default() };
    let app = app(AppState::new(new_db(), Some((seed, "t".into())), config).unwrap());
    let events: Vec<Value> = (0..10).map(|i| usage_event(&format!("t{i}"), "m", 100 * (i + 1), 0)).collect();
    let batch = json!({"batch_id": "b", "source": "s", "events": events}).to_string();
    assert_eq!(call(&app, "POST", "/v1/events", Some(FILTER), &[], &batch).await.status, StatusCode::OK);
    let m = call(&app, "GET", "/metrics", None, &[], "").await.text();
    let series = m.lines().filter(|l| l.starts_with("fusebox_tenant_requests_total")).count();
    assert_eq!(series, 4, "3 tenants + _other:\n{m}");
    assert!(m.contains("fusebox_tenant_tokens_total{tenant=\"t9\",direction=\"input\"} 1000"), "{m}");
    // 7 tenants of 100..700 input tokens are summed: 2800.
    assert!(m.contains("fusebox_tenant_tokens_total{tenant=\"_other\",direction=\"input\"} 2800"), "{m}");
    assert!(m.contains("fusebox_control_tenants_not_shown 7"));
}

#[tokio::test]
async fn a_database_keeps_its_policy_and_versions_across_restarts() {
    let dir = std::env::temp_dir().join(format!("fusebox-control-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("control.db");
    let _ = std::fs::remove_file(&path);
    let app = service_on(Db::open(&path).unwrap(), Escalation::default());
    admin(&app, "PUT", "/v1/tenants/acme", r#"{"tokens_60s": 777}"#).await;
    drop(app);
    // Restarted with a different seed file: the database wins.
    let app = service_on(Db::open(&path).unwrap(), Escalation::default());
    let p = read(&app, "/v1/policy").await.json();
    assert_eq!((p["version"].as_u64(), p["tenants"]["acme"]["tokens_60s"].as_u64()), (Some(2), Some(777)));
    assert_eq!(read(&app, "/v1/audit/verify").await.json()["entries"], 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn hostile_requests_get_clear_errors_and_change_nothing() {
    let app = service();
    // Tenant ids that are not ids.
    for bad in ["a%20b", "..%2F..%2Fetc", "x%00y", &"a".repeat(200)] {
        let r = admin(&app, "PUT", &format!("/v1/tenants/{bad}"), "{}").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text());
        assert_eq!(r.json()["error"]["field"], "tenant");
    }
    // A body over the limit is refused before it is parsed.
    let huge =
        format!("{{\"batch_id\": \"b\", \"source\": \"s\", \"events\": [], \"pad\": \"{}\"}}", "x".repeat(9 << 20));
    let r = call(&app, "POST", "/v1/events", Some(FILTER), &[], &huge).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Too many events in one batch, and events naming invalid tenants.
    let many: Vec<Value> = (0..10_001).map(|_| usage_event("acme", "m", 1, 1)).collect();
    let r = call(
        &app,
        "POST",
        "/v1/events",
        Some(FILTER),
        &[],
        &json!({"batch_id": "m", "source": "s", "events": many}).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let sneaky = json!({"batch_id": "n", "source": "s", "events": [usage_event("../../etc", "m", 5, 5), usage_event("acme", "m", 1, 1)]});
    let r = call(&app, "POST", "/v1/events", Some(FILTER), &[], &sneaky.to_string()).await;
    assert_eq!((r.json()["accepted"].as_u64(), r.json()["ignored"].as_u64()), (Some(1), Some(1)));
    // Writes with a bearer that is a prefix of the admin token, or the filter token, are refused.
    for (token, status) in [
        (&ADMIN[..ADMIN.len() - 1], StatusCode::UNAUTHORIZED),
        (FILTER, StatusCode::FORBIDDEN),
        ("", StatusCode::UNAUTHORIZED),
    ] {
        let r = call(&app, "POST", "/v1/tenants/acme/breaker", Some(token), &[], r#"{"action": "open"}"#).await;
        assert_eq!(r.status, status, "{token:?}");
    }
    let r = admin(
        &app,
        "POST",
        "/v1/tenants/acme/breaker",
        &format!(r#"{{"action": "open", "reason": "{}"}}"#, "r".repeat(2000)),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(read(&app, "/v1/policy").await.json()["version"], 1, "nothing changed");
    assert_eq!(read(&app, "/v1/audit/verify").await.json()["ok"], true);
}

#[tokio::test]
async fn the_dashboard_puts_tenants_that_need_attention_first_with_usage_against_limits() {
    let app = service();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let minute = now_ms / 1000 / 60 * 60;
    let usage = |tenant: &str, input: u64| {
        json!({"kind": "usage", "tenant": tenant, "model": "gpt-4o", "route": "/v1/", "status": 200,
               "minute": minute, "requests": 1, "input_tokens": input, "output_tokens": 0})
    };
    let batch = json!({"batch_id": "envoy-1-9", "source": "envoy-1", "events": [
        usage("quiet", 10), usage("busy", 500), usage("acme", 40),
        {"kind": "transition", "tenant": "acme", "from": "closed", "to": "open", "at_ms": now_ms,
         "metric": "tokens_60s", "threshold": 100, "observed": 150, "open_until_ms": now_ms + 30_000},
    ]});
    assert_eq!(call(&app, "POST", "/v1/events", Some(FILTER), &[], &batch.to_string()).await.status, StatusCode::OK);
    let held = admin(&app, "POST", "/v1/tenants/quiet/breaker", r#"{"action":"open","reason":"<b>runaway</b>"}"#).await;
    assert_eq!(held.status, StatusCode::OK, "{}", held.text());

    assert_eq!(call(&app, "GET", "/v1/dashboard", None, &[], "").await.status, StatusCode::UNAUTHORIZED);
    let d = read(&app, "/v1/dashboard").await.json();
    let order: Vec<&str> = d["tenants"].as_array().unwrap().iter().map(|t| t["tenant"].as_str().unwrap()).collect();
    assert_eq!(order, ["acme", "quiet", "busy"], "open and held first, then by tokens today");
    let acme = &d["tenants"][0];
    assert_eq!(acme["state"], "open");
    assert_eq!(acme["breaker"]["metric"], "tokens_60s");
    assert_eq!(
        acme["usage"][0],
        json!({"name": "tokens_60s", "used": 40, "limit": 100,
        "note": "tokens in this minute and the last (control sees usage by the minute)"})
    );
    assert_eq!(d["tenants"][1]["state"], "kill_switch");
    assert_eq!(d["tenants"][1]["forced"]["reason"], "<b>runaway</b>");
    assert_eq!(d["tenants"][2]["usage"][2]["used"], 500, "tokens today");
    assert_eq!(d["recent_trips"][0]["tenant"], "acme");
    let actions: Vec<&str> =
        d["recent_audit"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"breaker.transition") && actions.contains(&"breaker.open"), "{actions:?}");

    // The page itself needs no token (it asks for one) and writes what it shows as text.
    let page = call(&app, "GET", "/dashboard", None, &[], "").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(page.text().contains("/v1/dashboard") && !page.text().contains("innerHTML"));
}

#[tokio::test]
async fn forged_extreme_values_are_ignored_and_no_batch_can_break_the_reads() {
    let app = service();
    let usage = |requests: u64, input: u64| {
        json!({"kind": "usage", "tenant": "acme", "model": "m", "route": "/v1/", "status": 200,
               "minute": 1_795_428_000u64, "requests": requests, "input_tokens": input, "output_tokens": 1})
    };
    // Impossible figures are ignored: near i64::MAX, more tokens than requests can carry, no requests.
    let forged = json!({"batch_id": "f1", "source": "envoy-1", "events": [
        usage(1, 9_223_372_036_854_775_000), usage(1, u64::MAX), usage(0, 5), usage(2, 300_000_000),
        {"kind": "denial", "tenant": "acme", "reason": "tokens_60s", "minute": 1_795_428_000u64, "count": u64::MAX},
        {"kind": "transition", "tenant": "acme", "from": "closed", "to": "open", "at_ms": 1u64,
         "metric": "tokens_60s", "threshold": 1u64, "observed": u64::MAX},
        // Dated a year ahead, it would outrank every honest report of acme's breaker.
        {"kind": "transition", "tenant": "acme", "from": "closed", "to": "open",
         "at_ms": fusebox_control::db::now_ms() + 365 * 86_400_000, "metric": "tokens_60s"},
        {"kind": "usage", "tenant": "acme", "model": "m", "route": "/v1/", "status": 200,
         "minute": u64::MAX / 1000, "requests": 1, "input_tokens": 1, "output_tokens": 1},
    ]});
    let r = call(&app, "POST", "/v1/events", Some(FILTER), &[], &forged.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!((r.json()["accepted"].as_u64(), r.json()["ignored"].as_u64()), (Some(0), Some(8)), "{}", r.text());
    // The largest valid figures, many times over: the sums saturate instead of failing.
    let big = usage(10_000_000, 10_000_000 * 100_000_000);
    let batch = json!({"batch_id": "b", "source": "envoy-1", "events": vec![big; 9_500]});
    let r = call(&app, "POST", "/v1/events", Some(FILTER), &[], &batch.to_string()).await;
    assert_eq!(r.json()["accepted"], 9_500, "{}", r.text());
    for uri in ["/v1/usage", "/v1/tenants", "/v1/tenants/acme", "/v1/dashboard", "/metrics"] {
        let r = read(&app, uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text());
    }
    let usage = read(&app, "/v1/usage").await.json();
    let input = usage.pointer("/tenants/0/usage/input_tokens").and_then(Value::as_u64);
    assert!(input.is_some_and(|n| n >= 9_000_000_000_000_000_000), "saturated, not wrapped or failed: {usage}");
    let tenant = read(&app, "/v1/tenants/acme").await.json();
    assert_eq!(tenant["totals"]["input_tokens"], i64::MAX, "the running total saturates: {tenant}");
}

#[tokio::test]
async fn a_long_poll_answers_as_soon_as_the_policy_changes() {
    let app = service();
    let etag = read(&app, "/v1/policy").await.headers["etag"].to_str().unwrap().to_string();
    let current = [("if-none-match", etag.as_str())];
    // Nothing changes: after the wait, 304.
    let idle = call(&app, "GET", "/v1/policy?wait=1", Some(FILTER), &current, "").await;
    assert_eq!(idle.status, StatusCode::NOT_MODIFIED);
    // A change while the poll waits: the poll answers with the new policy, long before its wait ends.
    let waiting = {
        let (app, etag) = (app.clone(), etag.clone());
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r =
                call(&app, "GET", "/v1/policy?wait=30", Some(FILTER), &[("if-none-match", etag.as_str())], "").await;
            (r, started.elapsed())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "the poll waits while nothing changes");
    let r = admin(&app, "POST", "/v1/tenants/acme/breaker", r#"{"action": "open", "reason": "long poll"}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let (answer, waited) = waiting.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["version"], 2);
    assert_eq!(answer.json()["tenants"]["acme"]["forced"]["state"], "open");
    assert!(waited < std::time::Duration::from_secs(30), "answered on the change, not at the end of the wait");
    // A stale ETag is answered at once; a bad wait is a clear 400.
    assert_eq!(call(&app, "GET", "/v1/policy?wait=30", Some(FILTER), &current, "").await.status, StatusCode::OK);
    let bad = call(&app, "GET", "/v1/policy?wait=soon", Some(FILTER), &[], "").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn with_node_tokens_each_envoy_speaks_only_for_itself() {
    let nodes = format!(
        "gateway-a {}\ngateway-b {}\n",
        fusebox_engine::identity::hex(&fusebox_engine::identity::sha256(b"token-a")),
        fusebox_engine::identity::hex(&fusebox_engine::identity::sha256(b"token-b"))
    );
    let app = serve(new_db(), Config { node_tokens: NodeTokens::parse(&nodes).unwrap(), ..config() });
    let batch = |id: &str, source: &str| {
        json!({"batch_id": id, "source": source, "events": [usage_event("acme", "m", 5, 5)]}).to_string()
    };
    // A node posts its own events.
    let r = call(&app, "POST", "/v1/events", Some("token-a"), &[], &batch("a-1", "gateway-a")).await;
    assert_eq!((r.status, r.json()["accepted"].as_u64()), (StatusCode::OK, Some(1)), "{}", r.text());
    // It cannot speak for another node.
    let r = call(&app, "POST", "/v1/events", Some("token-a"), &[], &batch("a-2", "gateway-b")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(r.text().contains("gateway-a"), "{}", r.text());
    // The shared filter token and the admin token read, but post no events.
    for token in [FILTER, ADMIN] {
        let r = call(&app, "POST", "/v1/events", Some(token), &[], &batch("f-1", "gateway-a")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
        assert_eq!(call(&app, "GET", "/v1/policy", Some(token), &[], "").await.status, StatusCode::OK);
    }
    // A node token reads the policy; an unknown token does nothing.
    assert_eq!(call(&app, "GET", "/v1/policy", Some("token-b"), &[], "").await.status, StatusCode::OK);
    let r = call(&app, "POST", "/v1/events", Some("stranger"), &[], &batch("s-1", "gateway-a")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Only the node's own batch was counted.
    let usage = read(&app, "/v1/usage").await.json();
    assert_eq!(usage.pointer("/tenants/0/usage/requests"), Some(&json!(2)), "{usage}");
}

#[tokio::test]
async fn the_breaker_state_shown_is_the_real_one_after_a_cooldown_or_an_operator_reset() {
    let app = service();
    let now = fusebox_control::db::now_ms();
    let state = |app: Router| async move { read(&app, "/v1/tenants/acme").await.json()["breaker"]["state"].clone() };
    // Tripped 10 s ago with a 30 s cooldown: open.
    let batch = json!({"batch_id": "t1", "source": "envoy-1", "events": [trip(now - 10_000)]});
    assert_eq!(call(&app, "POST", "/v1/events", Some(FILTER), &[], &batch.to_string()).await.status, StatusCode::OK);
    assert_eq!(state(app.clone()).await, "open");
    // Its cooldown over and no request since: half-open (the next request is a probe), not open.
    let old = json!({"batch_id": "t3", "source": "envoy-2", "events": [{
        "kind": "transition", "tenant": "globex", "from": "closed", "to": "open", "at_ms": now - 60_000,
        "metric": "tokens_60s", "threshold": 100, "observed": 150, "open_until_ms": now - 30_000}]});
    assert_eq!(call(&app, "POST", "/v1/events", Some(FILTER), &[], &old.to_string()).await.status, StatusCode::OK);
    assert_eq!(read(&app, "/v1/tenants/globex").await.json()["breaker"]["state"], "half_open");
    assert!(read(&app, "/metrics")
        .await
        .text()
        .contains(r#"fusebox_tenant_breaker_state{tenant="globex",state="half_open"} 1"#));
    // An operator reset: closed at once, before the tenant's next request reports it.
    let r = admin(&app, "POST", "/v1/tenants/acme/breaker", r#"{"action": "reset", "reason": "fixed"}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let tenant = read(&app, "/v1/tenants/acme").await.json();
    assert_eq!(tenant["breaker"]["state"], "closed", "{tenant}");
    assert_eq!(tenant["breaker"]["source"], "operator:alice");
    // A report from before the reset arriving late does not bring `open` back.
    let late = json!({"batch_id": "t4", "source": "envoy-1", "events": [trip(now - 5_000)]});
    assert_eq!(call(&app, "POST", "/v1/events", Some(FILTER), &[], &late.to_string()).await.status, StatusCode::OK);
    assert_eq!(state(app.clone()).await, "closed");
}

#[tokio::test]
async fn a_merge_patch_changes_the_fields_it_names_and_keeps_the_rest() {
    let app = service();
    let whole = r#"{"tokens_60s": 5000, "requests_10s": 50, "breaker": {"cooldown_s": 60}}"#;
    let change = r#"{"tokens_60s": 9000, "requests_10s": null, "breaker": {"half_open_probes": 4}}"#;
    for (method, body) in [("PUT", whole), ("PATCH", change)] {
        let r = admin(&app, method, "/v1/tiers/gold", body).await;
        assert_eq!(r.status, StatusCode::OK, "{method}: {}", r.text());
    }
    let gold = read(&app, "/v1/policy").await.json()["tiers"]["gold"].clone();
    assert_eq!(gold["tokens_60s"], 9000);
    assert!(gold.get("requests_10s").is_none(), "null removes: {gold}");
    assert_eq!(
        (gold["breaker"]["cooldown_s"].as_u64(), gold["breaker"]["half_open_probes"].as_u64()),
        (Some(60), Some(4))
    );
    // Refused naming the field, and never served.
    let bad = admin(&app, "PATCH", "/v1/tiers/gold", r#"{"tokens_60s": 0}"#).await;
    assert_eq!(
        (bad.status, bad.json()["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("tiers.gold.tokens_60s"))
    );
    let unknown = admin(&app, "PATCH", "/v1/tiers/gold", r#"{"tokens_6s": 1}"#).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.text());
    assert_eq!(admin(&app, "PATCH", "/v1/tiers/gold", "[1]").await.status, StatusCode::BAD_REQUEST);
    // A tenant's entry: its hold stays, and a patch cannot set one.
    admin(&app, "POST", "/v1/tenants/acme/breaker", r#"{"action": "open", "reason": "hold"}"#).await;
    let r = admin(&app, "PATCH", "/v1/tenants/acme", r#"{"tier": "gold", "requests_10s": 7}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let acme = read(&app, "/v1/policy").await.json()["tenants"]["acme"].clone();
    assert_eq!(
        (acme["tier"].clone(), acme["tokens_60s"].clone(), acme["requests_10s"].clone()),
        (json!("gold"), json!(100), json!(7))
    );
    assert_eq!(acme["forced"]["state"], "open", "the hold is kept");
    let sneaky = admin(&app, "PATCH", "/v1/tenants/acme", r#"{"forced": null}"#).await;
    assert_eq!(sneaky.status, StatusCode::BAD_REQUEST);
    // Viewers and operators cannot patch; the audit names what was patched.
    assert_eq!(call(&app, "PATCH", "/v1/tiers/gold", Some(OLIVIA), &[], "{}").await.status, StatusCode::FORBIDDEN);
    let audit = read(&app, "/v1/audit").await.json();
    let actions: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"tier.patch") && actions.contains(&"tenant.patch"), "{actions:?}");
    let acme_audit = read(&app, "/v1/audit?tenant=acme").await.json();
    assert!(
        acme_audit["entries"].as_array().unwrap().iter().any(|e| e["action"] == "tenant.patch"),
        "filed under acme"
    );
}
