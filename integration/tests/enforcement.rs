#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! End-to-end: real Envoy (2 workers) + real fusebox.wasm + fusebox-control + mock LLM.

use fusebox_integration::{demo_policy, generous, observed, token, Stack};
use serde_json::json;
use std::time::{Duration, Instant};

fn usage(input: u64, output: u64) -> [(&'static str, String); 2] {
    [("x-mock-input-tokens", input.to_string()), ("x-mock-output-tokens", output.to_string())]
}

fn headers<'a>(h: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    h.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn tenant_over_tokens_60s_is_denied_while_another_tenant_is_served() {
    let stack = Stack::start(&demo_policy(
        json!({"free": {"tokens_60s": 1000, "breaker": {"cooldown_s": 30}}, "pro": generous()}),
        json!({"acme": {"tier": "free"}, "globex": {"tier": "pro"}}),
    ));
    stack.wait_policy_version(1);
    let (acme, globex) = (token("acme", None), token("globex", None));
    let u = usage(100, 300);
    assert_eq!(stack.chat(Some(&acme), &headers(&u)).status, 200);
    let second = stack.chat(Some(&acme), &headers(&u));
    assert_eq!(second.status, 200);
    // Allowed responses carry the IETF fields: 400 of 1000 used, the window drains within 60 s.
    assert_eq!(second.header("ratelimit-policy"), Some("\"tokens_60s\";q=1000;w=60"));
    let state = second.header("ratelimit").unwrap_or_default();
    let reset: u64 = state.strip_prefix("\"tokens_60s\";r=600;t=").and_then(|t| t.parse().ok()).unwrap_or(0);
    assert!((59..=60).contains(&reset), "{state}");
    assert_eq!(stack.chat(Some(&acme), &headers(&u)).status, 200);
    // 1200 tokens > 1000: the third response tripped acme's breaker.
    let denied = stack.chat(Some(&acme), &headers(&u));
    assert_eq!(denied.status, 429, "{}", denied.body);
    assert_eq!(denied.header("x-fusebox-tenant"), Some("acme"));
    assert_eq!(denied.header("x-fusebox-reason"), Some("tokens_60s"));
    let retry: u64 = denied.header("retry-after").and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!((30..=60).contains(&retry), "retry-after {retry}");
    assert_eq!(denied.header("ratelimit-policy"), Some("\"tokens_60s\";q=1000;w=60"));
    let body = denied.json();
    assert_eq!(body["error"]["type"], "tenant_circuit_open");
    assert_eq!(body["error"]["code"], "tokens_60s");
    assert_eq!(
        body["error"]["fusebox"],
        json!({"tenant": "acme", "state": "open", "reason": "tokens_60s", "threshold": 1000,
               "observed": 1200, "retry_after_s": retry, "run_id": null})
    );
    assert_eq!(body["error"]["message"], format!("tenant 'acme' is over tokens_60s (1200 > 1000); retry in {retry}s"));
    // Meanwhile globex is untouched.
    for _ in 0..5 {
        assert_eq!(stack.chat(Some(&globex), &headers(&u)).status, 200);
        assert_eq!(stack.chat(Some(&acme), &headers(&u)).status, 429);
    }
    let stats = stack.mock_stats();
    assert_eq!(stats["tenants"]["acme"]["requests"], 3, "denied requests never reach the upstream");
    assert_eq!(stats["tenants"]["globex"]["requests"], 5);
    assert_eq!(stack.envoy_counter("fusebox.requests.denied.tokens_60s"), 6);
    assert_eq!(stack.envoy_counter("fusebox.breaker.trips"), 1);
}

#[test]
fn half_open_probe_after_cooldown_is_admitted_and_a_clean_probe_closes_the_breaker() {
    let stack = Stack::start(&demo_policy(
        json!({"free": {"tokens_10s": 1000, "breaker": {"cooldown_s": 1, "half_open_probes": 1}}}),
        json!({}),
    ));
    stack.wait_policy_version(1);
    let acme = token("acme", None);
    let u = usage(300, 300);
    assert_eq!(stack.chat(Some(&acme), &headers(&u)).status, 200);
    assert_eq!(stack.chat(Some(&acme), &headers(&u)).status, 200);
    let denied = stack.chat(Some(&acme), &headers(&u));
    assert_eq!(denied.status, 429);
    assert_eq!(denied.header("x-fusebox-reason"), Some("tokens_10s"));
    assert_eq!(stack.status(&acme)["breaker"]["state"], "open");
    // Open until the 10 s window has drained to the warning level.
    let retry: u64 = denied.header("retry-after").and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!((1..=10).contains(&retry), "retry-after {retry}");
    std::thread::sleep(Duration::from_millis(retry * 1000 + 200));

    // One probe is admitted (slow, so a second request arrives while it is in flight).
    let probe_stack = &stack;
    let slow = [
        ("x-mock-latency-ms", "4000".to_string()),
        ("x-mock-input-tokens", "10".to_string()),
        ("x-mock-output-tokens", "10".to_string()),
    ];
    std::thread::scope(|scope| {
        let probe = scope.spawn(|| probe_stack.chat(Some(&acme), &headers(&slow)));
        let deadline = Instant::now() + Duration::from_secs(3);
        while observed(&stack.status(&acme), "concurrency") != 1 {
            assert!(Instant::now() < deadline, "the probe never got in flight");
            std::thread::sleep(Duration::from_millis(20));
        }
        let second = stack.chat(Some(&acme), &headers(&u));
        assert_eq!(second.status, 429, "only one probe at a time: {}", second.body);
        assert_eq!(second.header("x-fusebox-reason"), Some("breaker_open"));
        assert_eq!(second.json()["error"]["fusebox"]["state"], "half_open");
        let probe = probe.join().unwrap();
        assert_eq!(probe.status, 200, "{}", probe.body);
    });
    // The clean probe closed the breaker.
    assert_eq!(stack.status(&acme)["breaker"]["state"], "closed");
    assert_eq!(stack.chat(Some(&acme), &headers(&usage(10, 10))).status, 200);
}

#[test]
fn policy_change_in_control_takes_effect_without_restarting_envoy() {
    let stack = Stack::start(&demo_policy(json!({"free": generous()}), json!({"acme": {"tokens_60s": 100_000}})));
    stack.wait_policy_version(1);
    let acme = token("acme", None);
    let u = usage(200, 200);
    for _ in 0..2 {
        assert_eq!(stack.chat(Some(&acme), &headers(&u)).status, 200);
    }
    stack.set_policy(&demo_policy(json!({"free": generous()}), json!({"acme": {"tokens_60s": 500}})));
    stack.wait_policy_version(2);
    // 800 tokens already in the window are over the new 500 limit.
    let denied = stack.chat(Some(&acme), &headers(&u));
    assert_eq!(denied.status, 429, "{}", denied.body);
    assert_eq!(denied.json()["error"]["fusebox"]["threshold"], 500);
    assert_eq!(stack.mock_stats()["tenants"]["acme"]["requests"], 2);
}

#[test]
fn client_sent_tenant_header_is_replaced_by_the_verified_tenant() {
    let stack = Stack::start(&demo_policy(json!({"free": generous()}), json!({})));
    let acme = token("acme", None);
    let r = stack.chat(Some(&acme), &[("x-fusebox-tenant", "globex")]);
    assert_eq!(r.status, 200);
    // Even on a pass-through route the asserted header is stripped.
    let r = stack.get(&stack.url("/healthz"), &[("x-fusebox-tenant", "globex")]);
    assert_eq!(r.status, 200, "{}", r.body);
    // And a path no rule names is enforced: no credentials, no upstream.
    let r = stack.post("/other", None, &[("x-fusebox-tenant", "globex")], "{}");
    assert_eq!(r.status, 401, "{}", r.body);
    let stats = stack.mock_stats();
    assert_eq!(stats["tenants"]["acme"]["requests"], 1);
    assert!(stats["tenants"].get("globex").is_none(), "{stats}");
    assert_eq!(stats["healthz_with_tenant_header"], 0, "the pass-through route lost the asserted header");
}

#[test]
fn pass_through_routes_are_not_enforced() {
    let stack = Stack::start(&demo_policy(json!({"free": generous()}), json!({})));
    let r = stack.get(&stack.url("/healthz"), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(stack.flushed_counter("fusebox.requests.passed"), 1);
}

#[test]
fn anthropic_messages_and_openai_responses_usage_is_counted() {
    let stack = Stack::start(&demo_policy(json!({"free": generous()}), json!({})));
    stack.wait_policy_version(1);
    let t = token("initech", None);
    let u = usage(70, 30);
    assert_eq!(stack.post("/v1/messages", Some(&t), &headers(&u), r#"{"model":"claude"}"#).status, 200);
    assert_eq!(stack.post("/v1/responses", Some(&t), &headers(&u), r#"{"model":"gpt"}"#).status, 200);
    assert_eq!(stack.chat(Some(&t), &headers(&u)).status, 200);
    let status = stack.status(&t);
    assert_eq!(observed(&status, "tokens_60s"), 300, "{status}");
    assert_eq!(observed(&status, "requests_10s"), 3, "{status}");
}

#[test]
fn counts_are_exact_across_two_workers_under_concurrent_load() {
    let stack = Stack::start(&demo_policy(json!({"free": generous()}), json!({})));
    stack.wait_policy_version(1);
    let tenants = ["load-a", "load-b", "load-c", "load-d"];
    let tokens: Vec<String> = tenants.iter().map(|t| token(t, None)).collect();
    let clients = 8;
    let per_client = 40;
    let start = Instant::now();
    std::thread::scope(|scope| {
        for c in 0..clients {
            let (stack, tokens) = (&stack, &tokens);
            scope.spawn(move || {
                // Each client has its own connection pool, so requests spread over both workers,
                // and all clients create the same fresh tenant keys at the same moment.
                let agent = Stack::start_client();
                for i in 0..per_client {
                    let t = &tokens[(c + i) % tokens.len()];
                    let input = 1 + (c * 31 + i * 7) % 97;
                    let output = 1 + (c * 17 + i * 13) % 89;
                    let u = usage(input as u64, output as u64);
                    let r = stack.chat_with(&agent, Some(t), &headers(&u));
                    assert_eq!(r.status, 200, "{}", r.body);
                }
            });
        }
    });
    assert!(start.elapsed() < Duration::from_secs(55), "load must stay within one 60 s window");
    let stats = stack.mock_stats();
    let mut total_input = 0;
    for (tenant, t) in tenants.iter().zip(&tokens) {
        let m = &stats["tenants"][tenant];
        let expected = m["input_tokens"].as_u64().unwrap() + m["output_tokens"].as_u64().unwrap();
        total_input += m["input_tokens"].as_u64().unwrap();
        let status = stack.status(t);
        assert_eq!(observed(&status, "tokens_60s"), expected, "tenant {tenant}: {status}");
    }
    assert_eq!(stats["all"]["requests"], (clients * per_client) as u64);
    assert_eq!(stack.flushed_counter("fusebox.tokens.input"), total_input);
    assert_eq!(stack.envoy_counter("fusebox.store.errors"), 0);
}

#[test]
fn envoy_keeps_the_last_good_policy_when_control_goes_down() {
    let mut stack = Stack::start(&demo_policy(json!({"free": generous()}), json!({"acme": {"tokens_60s": 500}})));
    stack.wait_policy_version(1);
    stack.kill("fusebox-control");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(stack.envoy_counter("fusebox.policy.poll_failures") >= 1);
    let acme = token("acme", None);
    let u = usage(200, 200);
    assert_eq!(stack.chat(Some(&acme), &headers(&u)).status, 200);
    assert_eq!(stack.chat(Some(&acme), &headers(&u)).status, 200);
    // 800 > 500 from control's policy, not the 60 000 of the plugin's fallback tier.
    let denied = stack.chat(Some(&acme), &headers(&u));
    assert_eq!(denied.status, 429, "{}", denied.body);
    assert_eq!(stack.status(&acme)["policy_version"], 1);
}

#[test]
fn garbage_from_control_is_refused_and_the_fallback_policy_stays() {
    let stack = Stack::start_with_garbage_control();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stack.envoy_counter("fusebox.policy.rejected") == 0 {
        assert!(Instant::now() < deadline, "garbage policy was never refused");
        std::thread::sleep(Duration::from_millis(200));
    }
    let t = token("acme", None);
    assert_eq!(stack.status(&t)["policy_version"], 0, "still the plugin's fallback policy");
    assert_eq!(stack.chat(Some(&t), &[]).status, 200);
}
