#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! Client compatibility: the official OpenAI Python SDK (installed from PyPI by `make test`)
//! against the proxy. A fusebox denial surfaces as the SDK's `RateLimitError` carrying the
//! fusebox fields; the SDK waits `retry-after` before retrying a tripped breaker, and does not
//! retry at all when fusebox says `x-should-retry: false` (the kill switch).

use fusebox_integration::{demo_policy, generous, token, workspace_root, Stack, DEMO_ADMIN_TOKEN};
use serde_json::{json, Value};
use std::process::Command;

/// Runs one SDK call (`integration/sdk/openai_call.py`) and returns what it printed.
fn sdk_call(stack: &Stack, token: &str, max_retries: u32) -> Value {
    let python = workspace_root().join(".venv/bin/python");
    assert!(python.is_file(), "{} missing: run `make test` (it installs the OpenAI SDK)", python.display());
    let out = Command::new(python)
        .arg(workspace_root().join("integration/sdk/openai_call.py"))
        .arg(stack.url("/v1"))
        .arg(token)
        .arg(max_retries.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the SDK script failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// 429s Envoy answered on the proxy listener so far: every attempt the SDK made that fusebox refused.
fn refusals(stack: &Stack) -> u64 {
    // Exactly this name: the listener keeps a copy under `listener.<address>.http.llm...`.
    stack.envoy_stat("http.llm.downstream_rq_4xx").unwrap_or(0)
}

#[test]
fn the_openai_sdk_gets_a_rate_limit_error_with_the_fusebox_fields_and_honours_the_retry_headers() {
    let mut bursty = generous();
    bursty["requests_10s"] = json!(1);
    bursty["breaker"] = json!({"cooldown_s": 1, "max_cooldown_s": 4, "half_open_probes": 1});
    let tiers = json!({"free": generous(), "bursty": bursty});
    let stack = Stack::start(&demo_policy(tiers, json!({"spiky": {"tier": "bursty"}})));
    stack.wait_policy_version(1);

    // A tenant within its limits: the SDK gets its completion and usage as usual.
    let fine = sdk_call(&stack, &token("calm", None), 0);
    assert_eq!(fine["ok"], true, "{fine}");
    assert!(fine["usage"]["total_tokens"].as_u64().unwrap() > 0);

    // A tripped breaker: RateLimitError with fusebox's fields and a retry-after, no x-should-retry.
    let spiky = token("spiky", None);
    while stack.chat(Some(&spiky), &[]).status != 429 {}
    let before = refusals(&stack);
    let told = std::time::Instant::now();
    let tripped = sdk_call(&stack, &spiky, 0);
    assert_eq!(tripped["error_class"], "RateLimitError", "{tripped}");
    assert_eq!(tripped["status"], 429);
    assert_eq!(tripped["body"]["type"], "tenant_circuit_open", "{tripped}");
    assert_eq!(tripped["body"]["fusebox"]["tenant"], "spiky");
    assert!(tripped["body"]["fusebox"]["reason"].is_string());
    assert_eq!(tripped["should_retry"], Value::Null);
    assert_eq!(refusals(&stack) - before, 1);
    let retry_after: f64 = tripped["retry_after"].as_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1.0);
    // With retries, the SDK waits as told and then gets its completion.
    let before = refusals(&stack);
    let patient = sdk_call(&stack, &spiky, 2);
    assert_eq!(patient["ok"], true, "{patient}");
    let refused = refusals(&stack) - before;
    assert!((1..=2).contains(&refused), "refused, then admitted after waiting: {refused}");
    // The retry-after the patient call was told is what is left of the first one when it asked,
    // which depends on how fast Python starts; so: the tenant was admitted no sooner than told.
    assert!(told.elapsed().as_secs_f64() >= retry_after - 1.0, "admitted before retry-after: {patient}");
    assert!(patient["elapsed_s"].as_f64().unwrap() >= 0.5, "the SDK waited before retrying: {patient}");

    // The kill switch says x-should-retry: false: the SDK gives up after one attempt.
    let r = stack.control(
        "POST",
        "/v1/tenants/frozen/breaker",
        &json!({"action": "open", "reason": "sdk test", "create": true}).to_string(),
    );
    assert_eq!(r.status, 200, "{} (admin token {DEMO_ADMIN_TOKEN})", r.body);
    let frozen = token("frozen", None);
    while stack.chat(Some(&frozen), &[]).status != 429 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let before = refusals(&stack);
    let killed = sdk_call(&stack, &frozen, 5);
    assert_eq!(killed["error_class"], "RateLimitError", "{killed}");
    assert_eq!(killed["body"]["type"], "tenant_kill_switch", "{killed}");
    assert_eq!(killed["body"]["fusebox"]["reason"], "kill_switch");
    assert_eq!(killed["should_retry"], "false");
    assert_eq!(refusals(&stack) - before, 1, "no retry after x-should-retry: false");
}

/// Runs `integration/sdk/anthropic_errors.py` and returns what it printed.
fn anthropic_call(stack: &Stack, token: &str) -> Value {
    let python = workspace_root().join(".venv/bin/python");
    let out = Command::new(python)
        .arg(workspace_root().join("integration/sdk/anthropic_errors.py"))
        .arg(stack.url(""))
        .arg(token)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the SDK script failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn the_anthropic_sdk_raises_its_own_error_types_with_the_fusebox_fields() {
    let mut bursty = generous();
    bursty["requests_10s"] = json!(1);
    let stack = Stack::start(&demo_policy(json!({"free": bursty}), json!({})));
    stack.wait_policy_version(1);
    let t = token("claude-user", None);
    while stack.post("/v1/messages", Some(&t), &[], r#"{"model":"claude","max_tokens":64}"#).status != 429 {}
    let tripped = anthropic_call(&stack, &t);
    assert_eq!(tripped["raised"], "RateLimitError", "{tripped}");
    assert_eq!(tripped["error_type"], "rate_limit_error");
    assert_eq!(tripped["fusebox"]["type"], "tenant_circuit_open");
    assert_eq!(tripped["fusebox"]["tenant"], "claude-user");
    assert!(tripped["retry_after"].as_str().is_some_and(|s| s.parse::<u64>().unwrap() >= 1));
    let unknown = anthropic_call(&stack, "not-a-token");
    assert_eq!(unknown["raised"], "AuthenticationError", "{unknown}");
    assert_eq!(unknown["error_type"], "authentication_error");
    assert_eq!(unknown["fusebox"]["type"], "invalid_identity");
}
