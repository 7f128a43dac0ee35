#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! End-to-end: shadow mode. A shadowed limit (or a tier in `shadow` mode) refuses nobody; each
//! would-be refusal is counted in Envoy under its reason, reaches control and is marked on the
//! response, and switching the limit to enforce at run time refuses at once.

use fusebox_integration::{demo_policy, generous, token, wait_until, Stack};
use serde_json::{json, Value};

fn prometheus(stack: &Stack) -> String {
    stack.get(&format!("http://127.0.0.1:{}/stats/prometheus", stack.ports.admin), &[]).body
}

fn shadow_denials(stack: &Stack, tenant: &str) -> Value {
    stack.control_get(&format!("/v1/tenants/{tenant}/series?minutes=5"))["shadow_denials"].clone()
}

#[test]
fn a_shadowed_limit_refuses_nobody_and_enforcing_it_refuses_at_once() {
    let mut tier = generous();
    tier["tokens_60s"] = json!(500);
    tier["shadow"] = json!(["tokens_60s"]);
    let stack = Stack::start(&demo_policy(json!({"free": tier}), json!({})));
    stack.wait_policy_version(1);
    let t = token("rollout", None);
    // 400 tokens a response: from the third request on, tokens_60s is over 500.
    let marks: Vec<Option<String>> = (0..5)
        .map(|i| {
            let r = stack.chat(Some(&t), &[]);
            assert_eq!(r.status, 200, "request {i} passed: {}", r.body);
            r.header("x-fusebox-shadow-denied").map(str::to_string)
        })
        .collect();
    let want: Vec<Option<String>> =
        [None, None, Some("tokens_60s"), Some("tokens_60s"), Some("tokens_60s")].map(|m| m.map(str::to_string)).into();
    assert_eq!(marks, want);
    assert_eq!(stack.envoy_counter("fusebox.requests.shadow_denied.tokens_60s"), 3);
    assert_eq!(stack.envoy_counter("fusebox.requests.denied.tokens_60s"), 0);
    let status = stack.status(&t);
    assert_eq!(status["breaker"]["state"], "closed", "a shadowed limit trips nothing");
    assert_eq!(status["shadowed"], json!(["tokens_60s"]), "the tenant can see what is only shadowed");
    let prom = prometheus(&stack);
    assert!(
        prom.lines().any(|l| l.starts_with("fusebox_requests_shadow_denied{")
            && l.contains(r#"fusebox_reason="tokens_60s""#)
            && l.ends_with(" 3")),
        "the reason is a label: {}",
        prom.lines().filter(|l| l.contains("shadow")).collect::<Vec<_>>().join("\n")
    );
    wait_until("the shadow denials to reach control", 10, || {
        shadow_denials(&stack, "rollout") == json!({"tokens_60s": 3})
    });
    let metrics = stack.control("GET", "/metrics", "").body;
    assert!(
        metrics.contains(r#"fusebox_tenant_shadow_denials_total{tenant="rollout",reason="tokens_60s"} 3"#),
        "{metrics}"
    );

    // The operator enforces it, at run time: the tenant is already over, so the next request is refused.
    let r = stack.control("PATCH", "/v1/tiers/free", r#"{"shadow": null}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    stack.wait_policy_version(2);
    let refused = stack.chat(Some(&t), &[]);
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.header("x-fusebox-reason"), Some("tokens_60s"));
    assert_eq!(refused.header("x-fusebox-shadow-denied"), None);
    assert_eq!(stack.mock_stats()["tenants"]["rollout"]["requests"], 5);
}

#[test]
fn a_tier_in_shadow_mode_passes_requests_its_windows_and_run_limits_would_refuse() {
    let mut tier = generous();
    tier["requests_10s"] = json!(2);
    tier["run_steps"] = json!(1);
    tier["mode"] = json!("shadow");
    let stack = Stack::start(&demo_policy(json!({"free": tier}), json!({})));
    stack.wait_policy_version(1);
    let t = token("trial", None);
    let run = [("x-agent-run-id", "run-1")];
    let marks: Vec<Option<String>> = (0..4)
        .map(|_| {
            let r = stack.chat(Some(&t), &run);
            assert_eq!(r.status, 200, "{}", r.body);
            r.header("x-fusebox-shadow-denied").map(str::to_string)
        })
        .collect();
    // The tenant's own limits are judged first, its run's after.
    let want: Vec<Option<String>> =
        [None, Some("run_steps"), Some("requests_10s"), Some("requests_10s")].map(|m| m.map(str::to_string)).into();
    assert_eq!(marks, want);
    assert_eq!(stack.envoy_counter("fusebox.requests.shadow_denied.requests_10s"), 2);
    assert_eq!(stack.envoy_counter("fusebox.requests.shadow_denied.run_steps"), 1);
    wait_until("the shadow denials to reach control", 10, || {
        shadow_denials(&stack, "trial") == json!({"requests_10s": 2, "run_steps": 1})
    });
    // A tenant entry can enforce what its tier only shadows.
    let r = stack.control("PATCH", "/v1/tenants/trial", r#"{"mode": "enforce"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    stack.wait_policy_version(2);
    let refused = stack.chat(Some(&t), &run);
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.header("x-fusebox-reason"), Some("requests_10s"));
}
