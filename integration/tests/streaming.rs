#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! End-to-end streaming: SSE responses of all three APIs are counted exactly, as they pass.

use fusebox_integration::{demo_policy, generous, observed, token, Stack};
use serde_json::{json, Value};

fn policy() -> String {
    demo_policy(json!({"free": generous()}), json!({}))
}

fn tokens_60s(status: &Value) -> u64 {
    observed(status, "tokens_60s")
}

const CHAT_STREAM: &str = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn streamed_usage_of_all_three_apis_is_counted_exactly() {
    let stack = Stack::start(&policy());
    stack.wait_policy_version(1);
    let t = token("streamer", None);
    let h = [
        ("x-mock-input-tokens", "321"),
        ("x-mock-output-tokens", "123"),
        ("x-mock-chunks", "20"),
        ("x-mock-tool-calls", "2"),
    ];
    let gzip = [h[0], h[1], h[2], h[3], ("accept-encoding", "gzip, deflate")];
    let chat = stack.post("/v1/chat/completions", Some(&t), &gzip, CHAT_STREAM);
    assert_eq!(chat.status, 200);
    assert_eq!(chat.header("content-type"), Some("text/event-stream"));
    assert!(chat.body.ends_with("data: [DONE]\n\n"), "the stream reaches the client intact");
    let responses = stack.post("/v1/responses", Some(&t), &h, r#"{"model":"gpt-4.1","stream":true,"input":"hi"}"#);
    assert!(responses.body.contains("response.completed"));
    let messages = stack.post("/v1/messages", Some(&t), &h, r#"{"model":"claude","stream":true,"max_tokens":256}"#);
    assert!(messages.body.contains("message_stop"));

    let mock = stack.mock_stats();
    let expected = mock["tenants"]["streamer"]["input_tokens"].as_u64().unwrap()
        + mock["tenants"]["streamer"]["output_tokens"].as_u64().unwrap();
    assert_eq!(expected, 3 * (321 + 123));
    assert_eq!(mock["all"]["with_accept_encoding"], 0, "the upstream is asked for an uncompressed body");
    assert_eq!(tokens_60s(&stack.status(&t)), expected);
    assert_eq!(stack.flushed_counter("fusebox.usage.tool_calls"), 6);
    assert_eq!(stack.envoy_counter("fusebox.usage.malformed"), 0);
}

#[test]
fn concurrent_slow_streams_are_counted_exactly_across_workers() {
    let stack = Stack::start(&policy());
    stack.wait_policy_version(1);
    let tenants = ["s-a", "s-b", "s-c"];
    let tokens: Vec<String> = tenants.iter().map(|t| token(t, None)).collect();
    std::thread::scope(|scope| {
        for c in 0..6usize {
            let (stack, tokens) = (&stack, &tokens);
            scope.spawn(move || {
                let agent = Stack::start_client();
                for i in 0..6usize {
                    let t = &tokens[(c + i) % tokens.len()];
                    let input = (10 + c * 7 + i).to_string();
                    let output = (5 + c * 3 + i * 11).to_string();
                    let (path, body) = match (c + i) % 3 {
                        0 => ("/v1/chat/completions", CHAT_STREAM),
                        1 => ("/v1/responses", r#"{"model":"gpt-4.1","stream":true,"input":"hi"}"#),
                        _ => ("/v1/messages", r#"{"model":"claude","stream":true,"max_tokens":64}"#),
                    };
                    let h = [
                        ("x-mock-input-tokens", input.as_str()),
                        ("x-mock-output-tokens", output.as_str()),
                        ("x-mock-chunks", "8"),
                        ("x-mock-chunk-delay-ms", "5"),
                    ];
                    let r = stack.post_with(&agent, path, Some(t), &h, body);
                    assert_eq!(r.status, 200, "{}", r.body);
                }
            });
        }
    });
    let mock = stack.mock_stats();
    for (tenant, t) in tenants.iter().zip(&tokens) {
        let m = &mock["tenants"][tenant];
        let expected = m["input_tokens"].as_u64().unwrap() + m["output_tokens"].as_u64().unwrap();
        assert_eq!(tokens_60s(&stack.status(t)), expected, "tenant {tenant}");
    }
    assert_eq!(mock["all"]["streams"], 36);
}

#[test]
fn openai_chat_stream_without_include_usage_gets_it_injected_and_is_counted() {
    let stack = Stack::start(&policy());
    stack.wait_policy_version(1);
    let t = token("forgetful", None);
    let h = [("x-mock-input-tokens", "50"), ("x-mock-output-tokens", "25")];
    let r = stack.post(
        "/v1/chat/completions",
        Some(&t),
        &h,
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(r.status, 200);
    assert!(r.body.contains(r#""usage":{"completion_tokens":25"#), "the upstream was asked for usage: {}", r.body);
    let mock = stack.mock_stats();
    assert_eq!(mock["all"]["streams_with_usage"], 1);
    assert_eq!(tokens_60s(&stack.status(&t)), 75);
    assert_eq!(stack.envoy_counter("fusebox.usage.injected"), 1);
    // A request that already asks for usage is forwarded as it is.
    assert_eq!(stack.post("/v1/chat/completions", Some(&t), &h, CHAT_STREAM).status, 200);
    assert_eq!(stack.envoy_counter("fusebox.usage.injected"), 1);
    assert_eq!(tokens_60s(&stack.status(&t)), 150);
}

#[test]
fn a_stream_in_flight_ends_with_an_error_event_when_its_tenant_trips() {
    // The stream's output allowance is small, so the big request is admitted beside it and trips.
    let tier = json!({"tokens_60s": 1000, "terminate_streams": true, "default_output_tokens": 20, "breaker": {"cooldown_s": 30}});
    let stack = Stack::start(&demo_policy(json!({"free": tier}), json!({})));
    stack.wait_policy_version(1);
    let t = token("runaway", None);
    std::thread::scope(|scope| {
        let stream = scope.spawn(|| {
            let h = [
                ("x-mock-chunks", "40"),
                ("x-mock-chunk-delay-ms", "100"),
                ("x-mock-input-tokens", "10"),
                ("x-mock-output-tokens", "10"),
            ];
            stack.post_with(&Stack::start_client(), "/v1/chat/completions", Some(&t), &h, CHAT_STREAM)
        });
        std::thread::sleep(std::time::Duration::from_millis(800));
        // Another request of the same tenant uses 1500 tokens: the breaker opens.
        let big = [("x-mock-input-tokens", "1000"), ("x-mock-output-tokens", "500")];
        assert_eq!(stack.chat(Some(&t), &big).status, 200);
        assert_eq!(stack.status(&t)["breaker"]["state"], "open");
        let r = stream.join().unwrap();
        assert_eq!(r.status, 200);
        let data: Vec<&str> = r.body.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert!(data.len() >= 3, "{}", r.body);
        // Well-formed to the end: the last two events are the error and [DONE], nothing after.
        assert_eq!(data[data.len() - 1], "data: [DONE]");
        let error: Value = serde_json::from_str(data[data.len() - 2].trim_start_matches("data: ")).unwrap();
        assert_eq!(error["error"]["type"], "tenant_circuit_open");
        assert_eq!(error["error"]["code"], "tokens_60s");
        assert!(!r.body.contains("tok39"), "nothing of the stream after the end reaches the client");
    });
    assert_eq!(stack.envoy_counter("fusebox.streams.terminated"), 1);
    // What the upstream sent after the cut still counts: 1500 + 20.
    assert_eq!(tokens_60s(&stack.status(&t)), 1520);
}

#[test]
fn large_bodies_pass_unbuffered_and_are_counted() {
    // Far beyond Envoy's 1 MiB buffer limit: only works because the filter never holds a response.
    let stack = Stack::start(&policy());
    stack.wait_policy_version(1);
    let t = token("verbose", None);
    let json = stack.chat(
        Some(&t),
        &[("x-mock-chunk-bytes", "8000000"), ("x-mock-input-tokens", "11"), ("x-mock-output-tokens", "22")],
    );
    assert_eq!(json.status, 200);
    assert!(json.body.len() > 8_000_000, "{}", json.body.len());
    let h = [
        ("x-mock-chunks", "100"),
        ("x-mock-chunk-bytes", "100000"),
        ("x-mock-input-tokens", "33"),
        ("x-mock-output-tokens", "44"),
    ];
    let sse = stack.post("/v1/chat/completions", Some(&t), &h, CHAT_STREAM);
    assert_eq!(sse.status, 200);
    assert!(
        sse.body.len() > 10_000_000 && sse.body.ends_with("data: [DONE]\n\n"),
        "{} bytes, ends {:?}",
        sse.body.len(),
        &sse.body[sse.body.len().saturating_sub(80)..]
    );
    assert_eq!(tokens_60s(&stack.status(&t)), 11 + 22 + 33 + 44);
    assert_eq!(stack.envoy_counter("fusebox.usage.malformed"), 0);
}
