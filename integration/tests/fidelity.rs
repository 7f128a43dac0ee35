#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! What real providers and real networks send: the recorded provider transcripts of
//! `tests/responses/`, served by the mock as recorded and written in pieces cut at random points,
//! are counted exactly; and the official SDKs' stream helpers (OpenAI Python and Node, Anthropic
//! Python), which rebuild the final response from the events and so check their shape, get the
//! same usage through fusebox that fusebox counted.

use fusebox_integration::{demo_policy, generous, observed, token, workspace_root, Stack};
use serde_json::{json, Value};
use std::process::Command;

/// `(file, input, output, tool calls)` from the table in `tests/responses/README.md`.
fn recorded() -> Vec<(String, u64, u64, u64)> {
    let readme = std::fs::read_to_string(workspace_root().join("tests/responses/README.md")).unwrap();
    readme
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let file = cells.get(1)?.trim_matches('`');
            let (input, output) = cells.get(3)?.split_once('/')?;
            Some((
                file.to_string(),
                input.trim().parse().ok()?,
                output.trim().parse().ok()?,
                cells.get(4)?.parse().ok()?,
            ))
        })
        .filter(|(f, ..)| f.ends_with(".sse") || f.ends_with(".json"))
        .collect()
}

fn path_for(file: &str) -> &'static str {
    if file.starts_with("anthropic") {
        "/v1/messages"
    } else if file.contains("responses") {
        "/v1/responses"
    } else {
        "/v1/chat/completions"
    }
}

#[test]
fn recorded_provider_transcripts_split_at_random_points_are_counted_exactly() {
    let stack = Stack::start(&demo_policy(json!({"free": generous()}), json!({})));
    stack.wait_policy_version(1);
    let transcripts = recorded();
    assert!(transcripts.len() >= 7, "the README lists the transcripts: {transcripts:?}");
    let mut tool_calls = 0;
    for (round, (file, input, output, tools)) in transcripts.iter().enumerate() {
        let t = token(&format!("recorded-{round}"), None);
        // Three times each, each time cut differently.
        for _ in 0..3 {
            let h = [("x-mock-transcript", file.as_str()), ("x-mock-split-writes", "13")];
            let body = if file.ends_with(".sse") { r#"{"stream": true}"# } else { "{}" };
            let r = stack.post(path_for(file), Some(&t), &h, body);
            assert_eq!(r.status, 200, "{file}: {}", r.body);
        }
        assert_eq!(observed(&stack.status(&t), "tokens_60s"), 3 * (input + output), "{file}");
        tool_calls += 3 * tools;
    }
    assert_eq!(stack.flushed_counter("fusebox.usage.tool_calls"), tool_calls);
    assert_eq!(stack.envoy_counter("fusebox.usage.malformed"), 0);
    assert_eq!(stack.envoy_counter("fusebox.usage.missing"), 0);
}

/// Runs an SDK script with (envoy base url, token) and returns the JSON line it printed.
fn run(program: &str, script: &str, stack: &Stack, t: &str) -> Value {
    let out = Command::new(program).arg(workspace_root().join(script)).arg(stack.url("")).arg(t).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{script}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{script}: {e}: {stdout}"))
}

#[test]
fn the_sdks_stream_helpers_rebuild_the_mocks_streams_and_see_the_usage_fusebox_counted() {
    let python = workspace_root().join(".venv/bin/python");
    assert!(python.is_file(), "{} missing: run `make test` (it installs the SDKs)", python.display());
    let node_sdk = workspace_root().join("integration/node/node_modules/openai");
    assert!(node_sdk.is_dir(), "{} missing: run `make test` (it installs the Node SDK)", node_sdk.display());
    let stack = Stack::start(&demo_policy(json!({"free": generous()}), json!({})));
    stack.wait_policy_version(1);
    for (program, script, apis) in [
        (python.to_str().unwrap(), "integration/sdk/stream_helpers.py", &["responses", "chat", "messages"][..]),
        ("node", "integration/node/streams.mjs", &["responses", "chat"][..]),
    ] {
        let t = token(&format!("helpers-{}", apis.len()), None);
        let report = run(program, script, &stack, &t);
        for api in apis {
            assert_eq!(report[api]["ok"], true, "{script} {api}: {report}");
            assert_eq!(
                (report[api]["input"].as_u64(), report[api]["output"].as_u64()),
                (Some(31), Some(47)),
                "{report}"
            );
        }
        assert_eq!(observed(&stack.status(&t), "tokens_60s"), apis.len() as u64 * (31 + 47), "{script}");
    }
}
