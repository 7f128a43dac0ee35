#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! Streams fusebox ends mid-way (`terminate_streams`) end on an event boundary, whatever sizes
//! the upstream wrote: the client gets every whole event it was due, then the error event in
//! its API's own shape, and the official SDKs raise their API error (not a decode error).

use fusebox_integration::{demo_policy, observed, token, workspace_root, Stack};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

/// A tier where one big request trips the breaker, and a slow stream beside it is admitted.
fn policy() -> String {
    let tier = json!({"tokens_60s": 1000, "terminate_streams": true, "default_output_tokens": 20,
                      "breaker": {"cooldown_s": 30}});
    demo_policy(json!({"free": tier}), json!({}))
}

/// Waits until `t`'s stream is in flight and under way, then trips `t`'s breaker with a
/// request that uses 1500 tokens.
fn trip_mid_stream(stack: &Stack, t: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while observed(&stack.status(t), "concurrency") == 0 {
        assert!(std::time::Instant::now() < deadline, "the stream never got in flight");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Under way: a few events out (the streams here last seconds), far from their end.
    std::thread::sleep(Duration::from_millis(500));
    let big = [("x-mock-input-tokens", "1000"), ("x-mock-output-tokens", "500")];
    assert_eq!(stack.chat(Some(t), &big).status, 200);
    assert_eq!(stack.status(t)["breaker"]["state"], "open");
}

/// The events of an SSE body: each one's `event:` lines and its joined `data:`.
fn events(body: &str) -> Vec<(Vec<String>, String)> {
    body.replace("\r\n", "\n")
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let names = e.lines().filter_map(|l| l.strip_prefix("event:")).map(|n| n.trim().to_string()).collect();
            let data: Vec<&str> = e.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
            (names, data.join("\n"))
        })
        .collect()
}

const APIS: [(&str, &str); 3] = [
    (
        "/v1/chat/completions",
        r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#,
    ),
    ("/v1/responses", r#"{"model":"gpt-4.1","input":"hi","stream":true}"#),
    (
        "/v1/messages",
        r#"{"model":"claude","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    ),
];

#[test]
fn a_stream_written_in_random_pieces_ends_with_whole_events_then_the_error_in_its_apis_shape() {
    let stack = Stack::start(&policy());
    stack.wait_policy_version(1);
    for (round, (path, body)) in APIS.iter().enumerate() {
        let t = token(&format!("cut-{round}"), None);
        let received = std::thread::scope(|scope| {
            let stream = scope.spawn(|| {
                let h = [
                    ("x-mock-chunks", "40"),
                    ("x-mock-chunk-delay-ms", "2"),
                    ("x-mock-split-writes", "9"),
                    ("x-mock-input-tokens", "10"),
                    ("x-mock-output-tokens", "10"),
                ];
                stack.post_with(&Stack::start_client(), path, Some(&t), &h, body)
            });
            trip_mid_stream(&stack, &t);
            stream.join().unwrap()
        });
        assert_eq!(received.status, 200);
        let body = &received.body;
        assert!(body.ends_with("\n\n"), "{path}: the last event is whole: {body:?}");
        assert!(!body.contains("tok39"), "{path}: the stream was ended before its end");
        let events = events(body);
        // At least one event the upstream sent, then the error (and `[DONE]` on chat).
        assert!(events.len() >= 2, "{path}: {body}");
        let (last_names, last) = if *path == "/v1/chat/completions" {
            assert_eq!(events.last().unwrap().1, "[DONE]", "{body}");
            events[events.len() - 2].clone()
        } else {
            events.last().unwrap().clone()
        };
        let error: Value = serde_json::from_str(&last).unwrap_or_else(|e| panic!("{path}: {e}: {last:?}"));
        match *path {
            "/v1/chat/completions" => assert_eq!(error["error"]["type"], "tenant_circuit_open"),
            "/v1/responses" => {
                assert_eq!(last_names, ["error"]);
                assert_eq!((error["type"].as_str(), error["code"].as_str()), (Some("error"), Some("tokens_60s")));
            }
            _ => {
                assert_eq!(last_names, ["error"]);
                assert_eq!(error["type"], "error");
                assert_eq!(error["error"]["type"], "tenant_circuit_open");
            }
        }
        // Every event before it is one the upstream sent whole: one name at most, JSON data.
        let before = &events[..events.iter().position(|(_, d)| d == &last).unwrap()];
        assert!(!before.is_empty(), "{path}: the client got the events it was due before the end");
        for (names, data) in before {
            assert!(names.len() <= 1, "{path}: an event spliced into another: {names:?} in {body}");
            assert!(
                serde_json::from_str::<Value>(data).is_ok(),
                "{path}: a partial event reached the client: {data:?}"
            );
        }
    }
    assert_eq!(stack.envoy_counter("fusebox.streams.terminated"), 3);
}

#[test]
fn each_official_sdk_raises_its_api_error_when_fusebox_ends_its_stream() {
    let python = workspace_root().join(".venv/bin/python");
    assert!(python.is_file(), "{} missing: run `make test` (it installs the SDKs)", python.display());
    let stack = Stack::start(&policy());
    stack.wait_policy_version(1);
    let mut seen = Vec::new();
    for (round, (api, expected)) in
        [("chat", "openai.APIError"), ("responses", "openai.APIError"), ("messages", "anthropic.APIStatusError")]
            .into_iter()
            .enumerate()
    {
        let t = token(&format!("sdk-{round}"), None);
        let out = std::thread::scope(|scope| {
            let run = scope.spawn(|| {
                Command::new(&python)
                    .arg(workspace_root().join("integration/sdk/stream_ending.py"))
                    .arg(stack.url(""))
                    .arg(&t)
                    .arg(api)
                    .output()
                    .unwrap()
            });
            trip_mid_stream(&stack, &t);
            run.join().unwrap()
        });
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{api}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        assert_eq!(report["raised"], expected, "{api}: {report}");
        let mro: Vec<&str> = report["mro"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(mro.contains(&"APIError"), "{api}: the SDK's API error family: {report}");
        assert!(report["events"].as_u64().unwrap() > 0, "{api}: events came before the end: {report}");
        assert_eq!(report["fusebox"]["reason"], "tokens_60s", "{api}: the fusebox fields reach the caller: {report}");
        seen.push(format!("{api}: {}", report["raised"]));
    }
    println!("SDK errors on an ended stream: {}", seen.join(", "));
}
