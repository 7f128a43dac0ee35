#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! Control with ten thousand tenants: the dashboard answers a page at a time, searched and
//! sorted, and the tenant list is whole (each read is a few set queries, not one per tenant).

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

const TENANTS: u64 = 10_000;

fn name(i: u64) -> String {
    format!("t{i:05}")
}

fn names(page: &Value) -> Vec<String> {
    page["tenants"].as_array().unwrap().iter().map(|t| t["tenant"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn the_dashboard_pages_searches_and_sorts_ten_thousand_tenants() {
    let app = serve(new_db(), config());
    let minute = fusebox_control::db::now_ms() / 60_000 * 60;
    // Tenant i used i tokens today: the busiest is t09999.
    let events: Vec<Value> = (0..TENANTS)
        .map(|i| {
            json!({"kind": "usage", "tenant": name(i), "model": "m", "route": "/v1/", "status": 200,
                   "minute": minute, "requests": 1, "input_tokens": i, "output_tokens": 0})
        })
        .collect();
    let batch = json!({"batch_id": "many", "source": "envoy-1", "events": events}).to_string();
    let r = call(&app, "POST", "/v1/events", Some(FILTER), &[], &batch).await;
    assert_eq!(r.json()["accepted"], TENANTS, "{}", r.text());
    let kill = r#"{"action": "open", "reason": "abuse"}"#;
    assert_eq!(call(&app, "POST", "/v1/tenants/t00042/breaker", Some(OLIVIA), &[], kill).await.status, StatusCode::OK);
    let page = |query: &'static str| {
        let app = app.clone();
        async move { call(&app, "GET", &format!("/v1/dashboard{query}"), Some(VICTOR), &[], "").await }
    };

    // Attention first (the kill switch), then the busiest; 10 000 tenants plus acme's entry.
    let first = page("?limit=50").await.json();
    assert_eq!((first["total"].as_u64(), first["matched"].as_u64()), (Some(TENANTS + 1), Some(TENANTS + 1)));
    let shown = names(&first);
    assert_eq!(shown.len(), 50);
    assert_eq!(shown[..3], ["t00042", "t09999", "t09998"]);
    assert_eq!(first["tenants"][0]["state"], "kill_switch");
    assert_eq!(first["tenants"][1]["usage"][2]["used"], 9_999, "tokens today");
    assert_eq!(first["states"], json!({"closed": TENANTS, "kill_switch": 1}));
    assert_eq!(first["tenants_not_shown"], TENANTS + 1 - 50);
    // The next page goes on where the first stopped.
    let second = names(&page("?limit=50&offset=50").await.json());
    assert_eq!(second[0], "t09950", "{second:?}");
    assert!(second.iter().all(|t| !shown.contains(t)), "pages do not overlap");
    // Search and the other orders.
    let found = page("?q=T0999").await.json();
    assert_eq!(found["matched"], 10, "case-insensitive: t09990..t09999");
    assert_eq!(names(&found)[0], "t09999");
    let by_name = names(&page("?sort=tenant&limit=3").await.json());
    assert_eq!(by_name, ["acme", "t00000", "t00001"]);
    let by_tokens = names(&page("?sort=tokens&limit=2").await.json());
    assert_eq!(by_tokens, ["t09999", "t09998"], "the kill switch is not ranked first by tokens");
    let past_the_end = page("?offset=20000").await.json();
    assert_eq!((names(&past_the_end).len(), past_the_end["matched"].as_u64()), (0, Some(TENANTS + 1)));
    // Bad pages are a clear 400.
    for bad in ["?sort=loudest", "?limit=501", "?offset=-1", "?limit=ten"] {
        let r = page(bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "invalid_request", "{bad}");
    }
    // The tenant list is whole, each with its totals and state.
    let all = call(&app, "GET", "/v1/tenants", Some(VICTOR), &[], "").await.json();
    let list = all["tenants"].as_array().unwrap();
    assert_eq!(list.len() as u64, TENANTS + 1);
    let t = list.iter().find(|t| t["tenant"] == "t01234").unwrap();
    assert_eq!((t["totals"]["input_tokens"].as_u64(), t["totals"]["requests"].as_u64()), (Some(1234), Some(1)));
    let killed = list.iter().find(|t| t["tenant"] == "t00042").unwrap();
    assert_eq!(killed["forced"], "open");
}
