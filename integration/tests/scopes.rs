#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! End-to-end: scopes beside the tenant. Tenants of one org share the org's limits; the
//! strictest of tenant and scopes refuses and the refusal names its scope; another org is
//! untouched; a refusal gives back what the tenant and the other scopes had taken.

use fusebox_integration::{demo_policy, generous, observed, token_with, wait_until, Stack};
use serde_json::{json, Value};

fn member(tenant: &str, org: &str, team: &str) -> String {
    token_with(tenant, json!({"org": org, "team": team}).as_object().unwrap().clone())
}

fn scoped_policy(scopes: Value) -> String {
    let mut p: Value = serde_json::from_str(&demo_policy(json!({"free": generous()}), json!({}))).unwrap();
    p["scopes"] = scopes;
    p.to_string()
}

#[test]
fn tenants_of_one_org_share_its_limit_the_refusal_names_the_org_and_another_org_is_untouched() {
    let stack = Stack::start(&scoped_policy(json!({
        "org": {"limits": {"tokens_60s": 1000}, "values": {"globex": {"tokens_60s": 100_000}}},
        "team": {}
    })));
    stack.wait_policy_version(1);
    let (a1, a2, b1) = (member("a1", "initech", "ml"), member("a2", "initech", "web"), member("b1", "globex", "ml"));
    // 400 tokens a response: the org is at 1200 of 1000 after three, from two tenants.
    for t in [&a1, &a1, &a2] {
        assert_eq!(stack.chat(Some(t), &[]).status, 200);
    }
    for t in [&a1, &a2] {
        let r = stack.chat(Some(t), &[]);
        assert_eq!(r.status, 429, "{}", r.body);
        assert_eq!(r.header("x-fusebox-reason"), Some("tokens_60s"));
        assert_eq!(r.header("x-fusebox-scope"), Some("org:initech"));
        let f = &r.json()["error"]["fusebox"];
        assert_eq!((f["scope"].as_str(), f["threshold"].as_u64()), (Some("org:initech"), Some(1000)), "{f}");
        assert!(r.json()["error"]["message"].as_str().unwrap().starts_with("scope org:initech of tenant"));
    }
    // Each tenant's own limits are far away: only the org refuses them.
    assert_eq!(observed(&stack.status(&a1), "tokens_60s"), 800);
    assert_eq!(stack.status(&a1)["breaker"]["state"], "closed");
    for _ in 0..3 {
        assert_eq!(stack.chat(Some(&b1), &[]).status, 200, "globex is another org");
    }
    assert_eq!(stack.mock_stats()["tenants"]["a2"]["requests"], 1);
    // Control meters by scope what was served: 3 requests of initech, 3 of globex; by team, ml
    // has a1's two and b1's three, web a2's one (team has no limits: metered only).
    let requests = |scope: &str| {
        let u = stack.control_get(&format!("/v1/usage?scope={scope}"));
        let values = u["values"].as_array().cloned().unwrap_or_default();
        values
            .iter()
            .map(|v| (v["value"].as_str().unwrap_or("").to_string(), v["usage"]["requests"].as_u64().unwrap_or(0)))
            .collect::<Vec<_>>()
    };
    let by_org = vec![("globex".to_string(), 3), ("initech".to_string(), 3)];
    wait_until("usage by org in control", 10, || requests("org") == by_org);
    // The org's trip is audited with its scope, and counted against neither tenant.
    let audit = stack.control_get("/v1/audit");
    let trip = audit["entries"].as_array().unwrap().iter().find(|e| e["action"] == "breaker.transition");
    assert_eq!(trip.map(|e| e["details"]["scope"].clone()), Some(json!("org:initech")), "{audit}");
    for t in ["a1", "a2"] {
        assert_eq!(stack.control_get(&format!("/v1/tenants/{t}"))["totals"]["trips"], 0, "{t}");
    }
    assert_eq!(requests("team"), [("ml".to_string(), 5), ("web".to_string(), 1)]);
    let out = std::process::Command::new(fusebox_integration::sibling_binary("fusebox-control").unwrap())
        .args(["usage", "--scope", "org"])
        .env("FUSEBOX_CONTROL_URL", stack.control_url(""))
        .env("FUSEBOX_ADMIN_TOKEN", fusebox_integration::DEMO_ADMIN_TOKEN)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && table.contains("ORG") && table.contains("initech"), "{table}");
}

#[test]
fn a_scope_refusal_gives_back_the_tenants_slot_and_a_finished_request_frees_the_scopes() {
    let stack = Stack::start(&scoped_policy(json!({"team": {"limits": {"concurrency": 1}}})));
    stack.wait_policy_version(1);
    let (x, y) = (member("x", "initech", "ml"), member("y", "initech", "ml"));
    let slow = [("x-mock-latency-ms", "2000")];
    std::thread::scope(|scope| {
        let first =
            scope.spawn(|| stack.post_with(&Stack::start_client(), "/v1/chat/completions", Some(&x), &slow, "{}"));
        wait_until("x's request in flight", 10, || observed(&stack.status(&x), "concurrency") == 1);
        let second = stack.chat(Some(&y), &[]);
        assert_eq!(second.status, 429, "{}", second.body);
        assert_eq!(second.header("x-fusebox-reason"), Some("concurrency"));
        assert_eq!(second.header("x-fusebox-scope"), Some("team:ml"));
        assert_eq!(observed(&stack.status(&y), "concurrency"), 0, "y's own slot was given back");
        assert_eq!(first.join().unwrap().status, 200);
    });
    // x's request ended: the team's slot is free again.
    assert_eq!(stack.chat(Some(&y), &[]).status, 200);
    assert_eq!(stack.chat(Some(&x), &[]).status, 200);
}

#[test]
fn an_api_keys_entry_places_it_in_its_scopes() {
    let key = "sk-live-initech-ml";
    let digest = fusebox_engine::identity::hex(&fusebox_engine::identity::sha256(key.as_bytes()));
    let mut p: Value = serde_json::from_str(&scoped_policy(json!({"org": {"limits": {"requests_10s": 2}}}))).unwrap();
    p["identity"]["api_keys"] = json!([{"sha256": digest, "tenant": "keyed", "scopes": {"org": "initech"}}]);
    let stack = Stack::start(&p.to_string());
    stack.wait_policy_version(1);
    let jwt_member = member("jwt-user", "initech", "ml");
    assert_eq!(stack.chat(Some(&jwt_member), &[]).status, 200);
    assert_eq!(stack.chat(None, &[("x-api-key", key)]).status, 200);
    let third = stack.chat(None, &[("x-api-key", key)]);
    assert_eq!(third.status, 429, "the key and the JWT share the org's 2 requests: {}", third.body);
    assert_eq!(third.header("x-fusebox-scope"), Some("org:initech"));
    let bad = token_with("t", json!({"org": "two words"}).as_object().unwrap().clone());
    let r = stack.chat(Some(&bad), &[]);
    assert_eq!((r.status, r.header("x-fusebox-reason")), (401, Some("invalid_scope_claim")), "{}", r.body);
}

#[test]
fn an_orgs_exhausted_budget_is_topped_up_from_the_cli_and_its_tenants_are_back() {
    let stack = Stack::start(&scoped_policy(json!({"org": {"limits": {"budget_tokens_day": 1000}}})));
    stack.wait_policy_version(1);
    let (a1, a2) = (member("a1", "initech", "ml"), member("a2", "initech", "ml"));
    // 400 tokens a response: the org's day is at 1200 of 1000 after three.
    for t in [&a1, &a2, &a1] {
        assert_eq!(stack.chat(Some(t), &[]).status, 200);
    }
    let r = stack.chat(Some(&a2), &[]);
    assert_eq!((r.status, r.header("x-fusebox-reason")), (429, Some("budget_tokens_day")), "{}", r.body);
    assert_eq!(r.header("x-fusebox-scope"), Some("org:initech"));
    let out = std::process::Command::new(fusebox_integration::sibling_binary("fusebox-control").unwrap())
        .args(["topup", "initech", "--scope", "org", "--tokens", "1000", "--reason", "quarter end"])
        .env("FUSEBOX_CONTROL_URL", stack.control_url(""))
        .env("FUSEBOX_ADMIN_TOKEN", fusebox_integration::DEMO_ADMIN_TOKEN)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("scope org:initech budget_tokens_day raised by 1000"), "{said}");
    stack.wait_policy_version(2);
    // 1200 of 2000: both tenants are back, and the org has not forgotten what it spent.
    assert_eq!(stack.chat(Some(&a2), &[]).status, 200);
    assert_eq!(stack.chat(Some(&a1), &[]).status, 200);
    let r = stack.chat(Some(&a1), &[]);
    assert_eq!((r.status, r.header("x-fusebox-scope")), (429, Some("org:initech")), "2000 of 2000: {}", r.body);
}
