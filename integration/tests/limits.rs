#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! End-to-end: concurrency cap (released on every end of stream, including client disconnects),
//! tool calls per 60 s, and the upstream error ratio.

use fusebox_integration::{demo_policy, generous, observed, token, wait_until, Stack};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;

fn tier(extra: Value) -> Value {
    let mut t = generous();
    t.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    t["breaker"] = json!({"cooldown_s": 30});
    t
}

#[test]
fn concurrency_cap_refuses_the_extra_request_without_tripping_the_breaker() {
    let stack = Stack::start(&demo_policy(json!({"free": tier(json!({"concurrency": 2}))}), json!({})));
    stack.wait_policy_version(1);
    let t = token("busy", None);
    let slow = [("x-mock-latency-ms", "5000")];
    std::thread::scope(|scope| {
        let a = scope.spawn(|| stack.post_with(&Stack::start_client(), "/v1/chat/completions", Some(&t), &slow, "{}"));
        let b = scope.spawn(|| stack.post_with(&Stack::start_client(), "/v1/chat/completions", Some(&t), &slow, "{}"));
        wait_until("two requests in flight", 10, || observed(&stack.status(&t), "concurrency") == 2);
        let third = stack.chat(Some(&t), &[]);
        assert_eq!(third.status, 429, "{}", third.body);
        assert_eq!(third.header("x-fusebox-reason"), Some("concurrency"));
        assert_eq!(third.header("retry-after"), Some("1"));
        assert_eq!(third.json()["error"]["fusebox"]["state"], "closed");
        assert_eq!(a.join().unwrap().status, 200);
        assert_eq!(b.join().unwrap().status, 200);
    });
    assert_eq!(observed(&stack.status(&t), "concurrency"), 0);
    assert_eq!(stack.chat(Some(&t), &[]).status, 200);
    assert_eq!(stack.status(&t)["breaker"]["state"], "closed");
}

#[test]
fn a_client_disconnecting_mid_stream_releases_its_in_flight_slot() {
    let stack = Stack::start(&demo_policy(json!({"free": tier(json!({"concurrency": 1}))}), json!({})));
    stack.wait_policy_version(1);
    let t = token("quitter", None);
    let body = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
    let mut conn = TcpStream::connect(("127.0.0.1", stack.ports.listen)).unwrap();
    write!(
        conn,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {t}\r\ncontent-type: application/json\r\n\
         x-mock-chunks: 50\r\nx-mock-chunk-delay-ms: 100\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut first = [0u8; 256];
    let n = conn.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    assert_eq!(observed(&stack.status(&t), "concurrency"), 1);
    assert_eq!(stack.chat(Some(&t), &[]).status, 429, "the stream holds the only slot");
    drop(conn);
    wait_until("the slot to be released", 10, || observed(&stack.status(&t), "concurrency") == 0);
    assert_eq!(stack.chat(Some(&t), &[]).status, 200);
}

#[test]
fn tool_calls_over_their_threshold_trip_the_breaker() {
    let stack = Stack::start(&demo_policy(json!({"free": tier(json!({"tool_calls_60s": 3}))}), json!({})));
    stack.wait_policy_version(1);
    let t = token("toolish", None);
    let two = [("x-mock-tool-calls", "2")];
    assert_eq!(stack.chat(Some(&t), &two).status, 200);
    assert_eq!(stack.post("/v1/messages", Some(&t), &two, r#"{"model":"claude"}"#).status, 200);
    let denied = stack.chat(Some(&t), &[]);
    assert_eq!(denied.status, 429);
    assert_eq!(denied.header("x-fusebox-reason"), Some("tool_calls_60s"));
    assert_eq!(denied.json()["error"]["fusebox"]["observed"], 4);
    assert_eq!(denied.header("ratelimit-policy"), Some("\"tool_calls_60s\";q=3;w=60"));
}

#[test]
fn upstream_error_ratio_over_its_threshold_trips_the_breaker() {
    let stack = Stack::start(&demo_policy(
        json!({"free": tier(json!({"error_ratio": 0.5, "error_min_requests": 4}))}),
        json!({}),
    ));
    stack.wait_policy_version(1);
    let t = token("flaky", None);
    assert_eq!(stack.chat(Some(&t), &[]).status, 200);
    for _ in 0..2 {
        assert_eq!(stack.chat(Some(&t), &[("x-mock-status", "503")]).status, 503);
    }
    // 2 of 3: over 50 %, but fewer than 4 responses: not judged yet.
    assert_eq!(stack.chat(Some(&t), &[("x-mock-status", "429")]).status, 429);
    // That made 3 errors of 4: the breaker is open now.
    let denied = stack.chat(Some(&t), &[]);
    assert_eq!(denied.status, 429);
    assert_eq!(denied.header("x-fusebox-reason"), Some("error_ratio"), "{}", denied.body);
    assert_eq!(denied.json()["error"]["fusebox"]["threshold"], 50);
    assert_eq!(denied.json()["error"]["fusebox"]["observed"], 75);
    assert_eq!(stack.mock_stats()["all"]["requests"], 1, "the mock counts only successful answers");
}

#[test]
fn daily_token_budget_refuses_with_budget_exhausted_until_midnight() {
    let stack = Stack::start(&demo_policy(json!({"free": tier(json!({"budget_tokens_day": 1000}))}), json!({})));
    stack.wait_policy_version(1);
    let t = token("thrifty", None);
    let u = [("x-mock-input-tokens", "400"), ("x-mock-output-tokens", "200")];
    assert_eq!(stack.chat(Some(&t), &u).status, 200);
    let second = stack.chat(Some(&t), &u);
    assert_eq!(second.status, 200);
    assert_eq!(second.header("x-fusebox-warning"), Some("budget_tokens_day=60%"));
    let denied = stack.chat(Some(&t), &u);
    assert_eq!(denied.status, 429);
    assert_eq!(denied.header("x-fusebox-reason"), Some("budget_tokens_day"));
    assert_eq!(denied.header("x-should-retry"), Some("false"));
    let body = denied.json();
    assert_eq!(body["error"]["type"], "tenant_budget_exhausted");
    assert_eq!(
        (body["error"]["fusebox"]["threshold"].as_u64(), body["error"]["fusebox"]["observed"].as_u64()),
        (Some(1000), Some(1200))
    );
    let retry: u64 = denied.header("retry-after").unwrap().parse().unwrap();
    let now = fusebox_integration::now_s();
    assert!(retry.abs_diff(86_400 - now % 86_400) <= 2, "retry-after {retry} is not the time to midnight UTC");
    assert_eq!(stack.status(&t)["breaker"]["state"], "closed", "a budget does not trip the breaker");
}

#[test]
fn monthly_cost_budget_uses_the_price_table() {
    let mut policy: Value =
        serde_json::from_str(&demo_policy(json!({"free": tier(json!({"budget_cost_month": 0.05}))}), json!({})))
            .unwrap();
    policy["prices"] = json!({"gpt-4o-mini": {"input_per_mtok": 10.0, "output_per_mtok": 30.0}});
    let stack = Stack::start(&policy.to_string());
    stack.wait_policy_version(1);
    let t = token("spender", None);
    // 1000 * 10 + 1000 * 30 = 40 000 micros = 0.04 per request (the mock answers as the requested model).
    let u = [("x-mock-input-tokens", "1000"), ("x-mock-output-tokens", "1000")];
    assert_eq!(stack.chat(Some(&t), &u).status, 200);
    assert_eq!(stack.chat(Some(&t), &u).status, 200);
    let denied = stack.chat(Some(&t), &u);
    assert_eq!(denied.status, 429);
    assert_eq!(denied.header("x-fusebox-reason"), Some("budget_cost_month"));
    assert_eq!(denied.json()["error"]["fusebox"]["observed"], 0.08);
    assert_eq!(stack.flushed_counter("fusebox.cost.micros"), 80_000);
}

#[test]
fn reservations_of_requests_in_flight_hold_back_a_request_that_would_overshoot() {
    let stack = Stack::start(&demo_policy(json!({"free": tier(json!({"tokens_60s": 1000}))}), json!({})));
    stack.wait_policy_version(1);
    let t = token("eager", None);
    let body = r#"{"model":"gpt-4o-mini","max_tokens":400,"messages":[{"role":"user","content":"hi"}]}"#;
    let reserve_each = (body.len() as u64).div_ceil(4) + 400;
    let slow = [("x-mock-latency-ms", "5000"), ("x-mock-input-tokens", "60"), ("x-mock-output-tokens", "40")];
    let reserved = |stack: &Stack| stack.status(&t)["breaker"]["reserved_tokens"].as_u64().unwrap_or(0);
    std::thread::scope(|scope| {
        let mut in_flight = Vec::new();
        for _ in 0..3 {
            in_flight.push(
                scope.spawn(|| stack.post_with(&Stack::start_client(), "/v1/chat/completions", Some(&t), &slow, body)),
            );
            wait_until("the reservation", 10, || reserved(&stack) >= reserve_each * in_flight.len() as u64);
        }
        // Nothing used yet, but 3 reservations already exceed 1000 tokens: wait, do not trip.
        let held = stack.post("/v1/chat/completions", Some(&t), &[], body);
        assert_eq!(held.status, 429, "{}", held.body);
        // Not a trip: its own reason and type, with the breaker closed.
        assert_eq!(held.header("x-fusebox-reason"), Some("reserved"));
        assert_eq!(held.header("retry-after"), Some("1"));
        assert_eq!(held.json()["error"]["type"], "tenant_capacity_reserved");
        assert_eq!(held.json()["error"]["fusebox"]["state"], "closed");
        assert_eq!(held.json()["error"]["fusebox"]["observed"], reserve_each * 3);
        for r in in_flight {
            assert_eq!(r.join().unwrap().status, 200);
        }
    });
    assert_eq!(reserved(&stack), 0, "every reservation is released");
    assert_eq!(observed(&stack.status(&t), "tokens_60s"), 300);
    assert_eq!(stack.chat(Some(&t), &[]).status, 200);
    assert_eq!(stack.envoy_counter("fusebox.requests.denied.reserved"), 1);
}

#[test]
fn max_tokens_is_clamped_to_what_the_token_window_has_left() {
    let tier = tier(json!({"tokens_60s": 1000, "clamp_max_tokens": true}));
    let stack = Stack::start(&demo_policy(json!({"free": tier}), json!({})));
    stack.wait_policy_version(1);
    let t = token("greedy", None);
    assert_eq!(stack.chat(Some(&t), &[("x-mock-input-tokens", "500"), ("x-mock-output-tokens", "200")]).status, 200);
    let body = r#"{"model":"claude","max_tokens":4096,"messages":[{"role":"user","content":"write a novel"}]}"#;
    let r =
        stack.post("/v1/messages", Some(&t), &[("x-mock-input-tokens", "10"), ("x-mock-output-tokens", "10")], body);
    assert_eq!(r.status, 200, "{}", r.body);
    // 1000 - 700 used - this request's own prompt reservation.
    let expected = 300 - (body.len() as u64).div_ceil(4);
    assert_eq!(stack.mock_stats()["tenants"]["greedy"]["last_max_tokens"], expected);
    assert_eq!(stack.envoy_counter("fusebox.requests.max_tokens_clamped"), 1);
    // The same allowance with its name behind a JSON escape is read (and lowered) all the same.
    let escaped = r#"{"model":"claude","max_\u0074okens":4096,"messages":[{"role":"user","content":"and another"}]}"#;
    let r =
        stack.post("/v1/messages", Some(&t), &[("x-mock-input-tokens", "10"), ("x-mock-output-tokens", "10")], escaped);
    assert_eq!(r.status, 200, "{}", r.body);
    let expected = 1000 - 720 - (escaped.len() as u64).div_ceil(4);
    assert_eq!(stack.mock_stats()["tenants"]["greedy"]["last_max_tokens"], expected);
    assert_eq!(stack.envoy_counter("fusebox.requests.max_tokens_clamped"), 2);
}
