#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! Budget top-ups: an operator raises a tenant's budget for the current period; top-ups add
//! up within a period, are audited, survive a policy replaced from a file, and are refused
//! where there is no budget to raise or the caller may not write.

mod common;

use axum::http::StatusCode;
use common::*;
use fusebox_engine::budget::Budget;
use fusebox_engine::policy::period_label;
use serde_json::{json, Value};

fn today() -> String {
    period_label(Budget::TokensDay, fusebox_control::db::now_ms() / 1000)
}

fn this_month() -> String {
    period_label(Budget::CostMonth, fusebox_control::db::now_ms() / 1000)
}

async fn with_budgets() -> axum::Router {
    let app = serve(new_db(), config());
    let r = call(
        &app,
        "PATCH",
        "/v1/tiers/free",
        Some(ADMIN),
        &[],
        r#"{"budget_tokens_day": 1000, "budget_cost_month": 10}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    app
}

async fn topup(app: &axum::Router, token: &str, tenant: &str, body: Value) -> common::Resp {
    call(app, "POST", &format!("/v1/tenants/{tenant}/topup"), Some(token), &[], &body.to_string()).await
}

#[tokio::test]
async fn top_ups_add_up_within_the_period_and_are_audited() {
    let app = with_budgets().await;
    let r =
        topup(&app, OLIVIA, "acme", json!({"budget": "budget_tokens_day", "amount": 500, "reason": "launch"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = topup(&app, OLIVIA, "acme", json!({"budget": "budget_tokens_day", "amount": 250})).await;
    assert_eq!(r.json()["after"]["topup"]["budget_tokens_day"], json!({"period": today(), "amount": 750.0}));
    let r = topup(&app, OLIVIA, "acme", json!({"budget": "budget_cost_month", "amount": 2.5})).await;
    assert_eq!(r.json()["after"]["topup"]["budget_cost_month"], json!({"period": this_month(), "amount": 2.5}));
    // acme's other overrides are untouched.
    assert_eq!(r.json()["after"]["tokens_60s"], 100);
    let s = call(&app, "GET", "/v1/tenants/acme/series?minutes=1", Some(VICTOR), &[], "").await.json();
    assert_eq!(s["budgets"]["budget_tokens_day"]["limit"], 1750);
    assert_eq!(s["budgets"]["budget_cost_month"]["limit"], 12.5);
    let audit = read(&app, "/v1/audit?tenant=acme").await.json();
    let topups: Vec<&Value> =
        audit["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "budget.topup").collect();
    assert_eq!(topups.len(), 3, "{audit}");
    let first = topups.iter().find(|e| e["details"]["reason"] == "launch").unwrap();
    assert_eq!((first["actor_id"].as_str(), first["reason_code"].as_str()), (Some("olivia"), Some("budget_topup")));
    assert_eq!(first["details"]["amount"], 500.0);
}

#[tokio::test]
async fn a_top_up_outlives_a_policy_replaced_from_a_file_while_its_budget_does() {
    let app = with_budgets().await;
    topup(&app, OLIVIA, "acme", json!({"budget": "budget_tokens_day", "amount": 500})).await;
    let mut doc: Value = serde_json::from_str(POLICY).unwrap();
    doc["tiers"] = json!({"free": {"budget_tokens_day": 2000}});
    let r = call(&app, "PUT", "/v1/policy", Some(ADMIN), &[], &doc.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let p = call(&app, "GET", "/v1/policy", Some(ADMIN), &[], "").await.json();
    assert_eq!(p["tenants"]["acme"]["topup"]["budget_tokens_day"]["amount"], 500.0);
    // A policy without the budget drops the top-up with it, rather than being refused.
    doc["tiers"] = json!({"free": {"tokens_60s": 5000}});
    let r = call(&app, "PUT", "/v1/policy", Some(ADMIN), &[], &doc.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let p = call(&app, "GET", "/v1/policy", Some(ADMIN), &[], "").await.json();
    assert!(p["tenants"]["acme"].get("topup").is_none(), "{}", p["tenants"]["acme"]);
}

#[tokio::test]
async fn a_top_up_is_refused_without_a_budget_a_role_or_a_known_tenant() {
    let app = serve(new_db(), config());
    let r = topup(&app, OLIVIA, "acme", json!({"budget": "budget_cost_month", "amount": 5})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.json()["error"]["field"], "tenants.acme.topup.budget_cost_month");
    let app = with_budgets().await;
    let r = topup(&app, VICTOR, "acme", json!({"budget": "budget_cost_month", "amount": 5})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    for (body, field) in [
        (json!({"budget": "budget_cost_month", "amount": -5}), "amount"),
        (json!({"budget": "budget_cost_month", "amount": 0}), "amount"),
        (json!({"budget": "tokens_60s", "amount": 5}), ""),
    ] {
        let r = topup(&app, OLIVIA, "acme", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.json()["error"]["field"], field, "{body}");
    }
    let r = topup(&app, OLIVIA, "acme", json!({"budget": "budget_tokens_day", "amount": 0.5})).await;
    assert_eq!(r.json()["error"]["field"], "tenants.acme.topup.budget_tokens_day.amount", "whole tokens only");
    let r = topup(&app, OLIVIA, "initech", json!({"budget": "budget_tokens_day", "amount": 5})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "a typo is not a tenant");
    let r = topup(&app, OLIVIA, "initech", json!({"budget": "budget_tokens_day", "amount": 5, "create": true})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn a_scope_values_budget_is_topped_up_audited_and_kept_across_a_policy_replace() {
    let app = serve(new_db(), config());
    let mut doc: Value = serde_json::from_str(POLICY).unwrap();
    doc["scopes"] = json!({"org": {"limits": {"budget_cost_month": 100}}});
    let r = call(&app, "PUT", "/v1/policy", Some(ADMIN), &[], &doc.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let body = r#"{"budget": "budget_cost_month", "amount": 25, "reason": "q4"}"#;
    let r = call(&app, "POST", "/v1/scopes/org/initech/topup", Some(OLIVIA), &[], body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["after"]["topup"]["budget_cost_month"], json!({"period": this_month(), "amount": 25.0}));
    let r = call(&app, "POST", "/v1/scopes/division/initech/topup", Some(OLIVIA), &[], body).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "no such scope");
    let r = call(&app, "POST", "/v1/scopes/org/two%20words/topup", Some(OLIVIA), &[], body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let audit = read(&app, "/v1/audit").await.json();
    let applied = |e: &&Value| e["action"] == "budget.topup" && e["outcome"] == "applied";
    let entry = audit["entries"].as_array().unwrap().iter().find(applied).unwrap();
    assert_eq!(entry["details"]["scope"], "org:initech");
    // A policy replaced from a file keeps the top-up while the scope has the budget.
    let r = call(&app, "PUT", "/v1/policy", Some(ADMIN), &[], &doc.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let p = call(&app, "GET", "/v1/policy", Some(ADMIN), &[], "").await.json();
    assert_eq!(p["scopes"]["org"]["values"]["initech"]["topup"]["budget_cost_month"]["amount"], 25.0);
}
