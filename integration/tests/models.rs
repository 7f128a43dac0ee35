#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! End-to-end: per-model limits. The request body's model picks the tenant's limits for the
//! longest matching pattern, in a state of their own; a refusal names the pattern and the
//! body never reaches the upstream; other models of the same tenant are untouched.

use fusebox_integration::{demo_policy, generous, observed, token, Stack};
use serde_json::json;

fn chat_with(model: &str) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string()
}

#[test]
fn a_models_limit_refuses_that_model_alone_and_names_its_pattern() {
    let mut tier = generous();
    tier["models"] = json!({"gpt-4o*": {"tokens_60s": 1000}, "gpt-4o-mini": {"tokens_60s": 100_000}});
    let stack = Stack::start(&demo_policy(json!({"free": tier}), json!({"unbound": {"models": {}}})));
    stack.wait_policy_version(1);
    let t = token("modeler", None);
    // 400 tokens a response: gpt-4o* is at 1200 of 1000 after three.
    for _ in 0..3 {
        let r = stack.post("/v1/chat/completions", Some(&t), &[], &chat_with("gpt-4o-2024-08-06"));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let refused = stack.post("/v1/chat/completions", Some(&t), &[], &chat_with("gpt-4o"));
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.header("x-fusebox-reason"), Some("tokens_60s"));
    assert_eq!(refused.header("x-fusebox-scope"), Some("model:gpt-4o*"));
    assert_eq!(refused.json()["error"]["fusebox"]["threshold"], 1000);
    assert_eq!(stack.mock_stats()["tenants"]["modeler"]["requests"], 3, "the refused body never went upstream");
    // The longest pattern wins: gpt-4o-mini has its own limit; other models have none.
    for model in ["gpt-4o-mini", "claude-sonnet-4"] {
        let r = stack.post("/v1/chat/completions", Some(&t), &[], &chat_with(model));
        assert_eq!(r.status, 200, "{model}: {}", r.body);
    }
    let status = stack.status(&t);
    assert_eq!(status["breaker"]["state"], "closed", "the tenant's own breaker is untouched");
    assert_eq!(observed(&status, "concurrency"), 0, "the refused request gave its slot back");
    // A tenant entry's map replaces its tier's: this one has no model limits.
    let u = token("unbound", None);
    for _ in 0..4 {
        assert_eq!(stack.post("/v1/chat/completions", Some(&u), &[], &chat_with("gpt-4o")).status, 200);
    }
}

#[test]
fn on_an_observe_route_a_models_limit_only_counts_what_it_would_refuse() {
    let mut tier = generous();
    tier["models"] = json!({"gpt-4o*": {"requests_10s": 1}});
    let bootstrap = Stack::demo_bootstrap()
        .replace(r#"{"prefix": "/v1/", "mode": "enforce"}"#, r#"{"prefix": "/v1/", "mode": "observe"}"#);
    assert!(bootstrap.contains(r#""mode": "observe""#), "the demo's /v1/ rule changed");
    let stack =
        Stack::start_custom(&demo_policy(json!({"free": tier}), json!({})), 2, |_| (bootstrap.clone(), Vec::new()));
    stack.wait_policy_version(1);
    let t = token("dry-run", None);
    for _ in 0..3 {
        let r = stack.post("/v1/chat/completions", Some(&t), &[], &chat_with("gpt-4o"));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(stack.envoy_counter("fusebox.requests.would_deny"), 2);
}
