#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! End-to-end bad bodies and upstream faults: never a crash or an error caused by fusebox, never a
//! negative or absurd count, a metric for each anomaly, and in-flight slots always returned.

use fusebox_integration::{demo_policy, generous, observed, token, Stack};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn broken_upstream_bodies_pass_through_and_count_only_what_is_sound() {
    let stack = Stack::start(&demo_policy(json!({"free": generous()}), json!({})));
    stack.wait_policy_version(1);
    let t = token("unlucky", None);
    for name in
        ["truncated-json", "non-utf8", "negative-usage", "absurd-usage", "html", "sse-crlf", "sse-no-blank-lines"]
    {
        let r = stack.chat(Some(&t), &[("x-mock-body", name)]);
        assert_eq!(r.status, 200, "{name}: the client gets what the upstream sent");
        assert!(!r.body.is_empty(), "{name}");
    }
    // Sound: non-utf8 text (7+3), CRLF SSE (7+3); negative and absurd figures count as 0 (+3 each).
    assert_eq!(observed(&stack.status(&t), "tokens_60s"), 26);
    assert_eq!(stack.envoy_counter("fusebox.usage.malformed"), 3, "truncated JSON, HTML, SSE without blank lines");
    assert_eq!(stack.envoy_counter("fusebox.usage.anomalies"), 2, "a negative and an absurd figure");
    assert_eq!(stack.chat(Some(&t), &[]).status, 200, "the tenant is unharmed");
}

#[test]
fn an_upstream_reset_mid_stream_returns_the_in_flight_slot() {
    let tier = {
        let mut t = generous();
        t["concurrency"] = json!(1);
        t
    };
    let stack = Stack::start(&demo_policy(json!({"free": tier}), json!({})));
    stack.wait_policy_version(1);
    let t = token("cut-off", None);
    let body = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
    let h = [("x-mock-abort-after", "3"), ("x-mock-chunk-delay-ms", "50")];
    let r = stack.post("/v1/chat/completions", Some(&t), &h, body);
    assert!(!r.body.contains("[DONE]"), "the stream was cut: {}", r.body);
    let deadline = Instant::now() + Duration::from_secs(10);
    while observed(&stack.status(&t), "concurrency") != 0 {
        assert!(Instant::now() < deadline, "the in-flight slot was never returned");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stack.chat(Some(&t), &[]).status, 200);
    assert_eq!(stack.envoy_counter("fusebox.store.errors"), 0);
}
