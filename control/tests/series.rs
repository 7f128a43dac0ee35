#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! A tenant's usage minute by minute, for the dashboard's chart.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn a_tenants_series_has_every_minute_of_the_last_hour_its_limit_and_its_denials_real_and_shadowed() {
    let app = serve(new_db(), config());
    let now_minute = fusebox_control::db::now_ms() / 60_000 * 60;
    let usage = |minutes_ago: u64, tokens: u64| {
        json!({"kind": "usage", "tenant": "acme", "model": "m", "route": "/v1/", "status": 200,
               "minute": now_minute - minutes_ago * 60, "requests": 2, "input_tokens": tokens, "output_tokens": 1})
    };
    let events = vec![
        usage(0, 10),
        usage(5, 20),
        usage(5, 30),
        usage(61, 999),
        json!({"kind": "denial", "tenant": "acme", "reason": "tokens_60s", "minute": now_minute, "count": 3}),
        json!({"kind": "denial", "tenant": "acme", "reason": "kill_switch", "minute": now_minute, "count": 1}),
        json!({"kind": "shadow_denial", "tenant": "acme", "reason": "tokens_60s", "minute": now_minute, "count": 2}),
    ];
    let batch = json!({"batch_id": "s1", "source": "envoy-1", "events": events}).to_string();
    assert_eq!(call(&app, "POST", "/v1/events", Some(FILTER), &[], &batch).await.json()["accepted"], 7);
    let s = call(&app, "GET", "/v1/tenants/acme/series", Some(VICTOR), &[], "").await.json();
    let minutes = s["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 60, "an hour of minutes, empty ones included");
    let tokens: Vec<u64> = minutes.iter().map(|m| m["tokens"].as_u64().unwrap()).collect();
    assert_eq!(tokens[59], 11, "this minute");
    assert_eq!(tokens[54], 52, "five minutes ago, both events summed");
    assert_eq!(tokens.iter().sum::<u64>(), 63, "nothing from before the hour");
    assert_eq!(minutes[59]["minute"], now_minute);
    assert_eq!(minutes[54]["requests"], 4);
    assert_eq!(s["tokens_60s_limit"], 100, "acme's own override");
    assert_eq!(s["denials"], json!({"kill_switch": 1, "tokens_60s": 3}), "shadowed refusals are not refusals");
    assert_eq!(s["shadow_denials"], json!({"tokens_60s": 2}));
    let two = call(&app, "GET", "/v1/tenants/acme/series?minutes=120", Some(VICTOR), &[], "").await.json();
    let all: u64 = two["minutes"].as_array().unwrap().iter().map(|m| m["tokens"].as_u64().unwrap()).sum();
    assert_eq!(all, 63 + 1000);
    for bad in ["?minutes=0", "?minutes=1441", "?minutes=many"] {
        let r = call(&app, "GET", &format!("/v1/tenants/acme/series{bad}"), Some(VICTOR), &[], "").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let none = call(&app, "GET", "/v1/tenants/nobody/series", Some(VICTOR), &[], "").await.json();
    assert!(none["minutes"].as_array().unwrap().iter().all(|m: &Value| m["tokens"] == 0));
    assert_eq!(none["tokens_60s_limit"], 60_000, "the default tier's limit");
}
