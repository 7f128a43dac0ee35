#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! Usage metered by scope: events carry the scopes their requests belonged to, and
//! `/v1/usage?scope=org` groups by the scope's values across tenants.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::json;

#[tokio::test]
async fn usage_groups_by_a_scopes_values_across_tenants() {
    let app = serve(new_db(), config());
    let minute = fusebox_control::db::now_ms() / 60_000 * 60;
    let usage = |tenant: &str, scopes: serde_json::Value, input: u64| {
        json!({"kind": "usage", "tenant": tenant, "model": "gpt-4o", "route": "/v1/", "status": 200,
               "minute": minute, "requests": 1, "input_tokens": input, "output_tokens": 10, "scopes": scopes})
    };
    let events = vec![
        usage("a1", json!({"org": "initech", "team": "ml"}), 100),
        usage("a2", json!({"org": "initech", "team": "web"}), 200),
        usage("b1", json!({"org": "globex", "team": "ml"}), 400),
        usage("solo", json!({}), 800),
        // Not a scope name or value fusebox sends: the event is ignored, not half-stored.
        usage("bad", json!({"Org!": "initech"}), 5),
    ];
    let batch = json!({"batch_id": "s1", "source": "envoy-1", "events": events}).to_string();
    assert_eq!(call(&app, "POST", "/v1/events", Some(FILTER), &[], &batch).await.json()["accepted"], 4);
    let by_org = call(&app, "GET", "/v1/usage?scope=org", Some(VICTOR), &[], "").await.json();
    let values: Vec<(String, u64, u64)> = by_org["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let u = &v["usage"];
            (
                v["value"].as_str().unwrap().to_string(),
                u["requests"].as_u64().unwrap(),
                u["input_tokens"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(values, [("globex".into(), 1, 400), ("initech".into(), 2, 300)]);
    // gpt-4o at 2.5 in, 10 out per million (the test policy's price).
    assert_eq!(by_org["values"][1]["usage"]["cost"], (300.0 * 2.5 + 20.0 * 10.0) / 1e6);
    let by_team = call(&app, "GET", "/v1/usage?scope=team", Some(VICTOR), &[], "").await.json();
    assert_eq!(by_team["values"][0]["value"], "ml");
    assert_eq!(by_team["values"][0]["usage"]["requests"], 2);
    // Tenants are still there, each once.
    let by_tenant = call(&app, "GET", "/v1/usage", Some(VICTOR), &[], "").await.json();
    assert_eq!(by_tenant["tenants"].as_array().unwrap().len(), 4);
    for (q, field) in [("?scope=Org!", "scope"), ("?scope=org&tenant=a1", "tenant")] {
        let r = call(&app, "GET", &format!("/v1/usage{q}"), Some(VICTOR), &[], "").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(r.json()["error"]["field"], field, "{q}");
    }
}
