#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! Tenant states live in a fixed table of buckets and are removed once they no longer matter, so
//! Envoy's memory does not grow with every tenant it has ever seen (an attacker with many valid
//! credentials, or a month of users each their own tenant), while a budget still running is kept.

use fusebox_integration::{demo_bootstrap_with, demo_policy, generous, token, wait_until, Resp, Stack};
use serde_json::json;

const TENANTS: u64 = 300;
const RUNS: u64 = 50;
const HELD: &str = "wasmcustom.fusebox.state.held";

fn chat(stack: &Stack, tenant: &str, input: u64, output: u64) -> Resp {
    let (i, o) = (input.to_string(), output.to_string());
    stack.chat(Some(&token(tenant, None)), &[("x-mock-input-tokens", &i), ("x-mock-output-tokens", &o)])
}

#[test]
fn states_of_tenants_gone_idle_are_freed_and_a_budget_still_running_keeps_its_state() {
    let policy = demo_policy(
        json!({"free": generous()}),
        json!({"saver": {"budget_tokens_day": 150}, "runner": {"run_ttl_s": 2}}),
    );
    // The table swept in about a second (polling every 100 ms gives the singleton its ticks).
    let stack = Stack::start_custom(&policy, 2, |_| {
        let b = demo_bootstrap_with("", r#", "sweep_pass_ms": 1000"#)
            .replace(r#""poll_interval_ms": 1000"#, r#""poll_interval_ms": 100"#);
        (b, vec![])
    });
    stack.wait_policy_version(1);
    for i in 0..TENANTS {
        assert_eq!(chat(&stack, &format!("churn-{i}"), 5, 5).status, 200);
    }
    // Runs under invented ids (each its own record in the run table), idle past their 2 s ttl.
    let runner = token("runner", None);
    for i in 0..RUNS {
        let run = format!("run-{i}");
        assert_eq!(stack.chat(Some(&runner), &[("x-agent-run-id", run.as_str())]).status, 200);
    }
    // The saver spends past its day budget: 200 of 150.
    assert_eq!(chat(&stack, "saver", 100, 100).status, 200);
    assert_eq!(chat(&stack, "saver", 1, 1).header("x-fusebox-reason"), Some("budget_tokens_day"));
    wait_until("every state held", 20, || stack.envoy_stat(HELD) == Some(TENANTS + 2));
    wait_until("the idle runs freed", 20, || stack.envoy_counter("fusebox.runs.freed") == RUNS);
    // Idle past the longest window (60 s, and a margin): every state but the saver's is freed.
    wait_until("the idle states freed", 100, || stack.envoy_stat(HELD) == Some(1));
    assert_eq!(stack.envoy_counter("fusebox.state.freed"), TENANTS + 1, "the churn and the runner");
    assert_eq!(stack.envoy_counter("fusebox.state.compacted"), 1, "the saver's entry keeps its budget alone");
    let r = chat(&stack, "saver", 1, 1);
    assert_eq!(
        (r.status, r.header("x-fusebox-reason")),
        (429, Some("budget_tokens_day")),
        "the day's spending is kept"
    );
    // A tenant seen again after its state was freed starts afresh, and is counted again.
    assert_eq!(chat(&stack, "churn-7", 30, 30).status, 200);
    let status = stack.status(&token("churn-7", None));
    assert_eq!(fusebox_integration::observed(&status, "tokens_60s"), 60, "{status}");
    wait_until("the returning tenant held", 20, || stack.envoy_stat(HELD) == Some(2));
}

#[test]
fn a_new_tenant_whose_bucket_is_full_of_states_that_still_matter_is_refused_and_no_one_else_is() {
    use fusebox_engine::state::entry::{bucket, PER_BUCKET};
    // Tenants whose states share one bucket, found by hashing names as the filter does: a
    // hostile client with many valid credentials could pick them the same way.
    let crowd: Vec<String> = (0u64..)
        .map(|i| format!("crowd-{i}"))
        .filter(|n| bucket(n) == bucket("crowd-0"))
        .take(PER_BUCKET + 1)
        .collect();
    let policy = demo_policy(json!({"free": generous()}), json!({}));
    let stack = Stack::start(&policy);
    stack.wait_policy_version(1);
    let (last, first) = crowd.split_last().unwrap();
    for tenant in first {
        assert_eq!(chat(&stack, tenant, 5, 5).status, 200, "{tenant}");
    }
    // Every one of them is held for the longest window after its request: no room is left.
    let r = chat(&stack, last, 5, 5);
    assert_eq!((r.status, r.header("x-fusebox-reason")), (503, Some("state_full")), "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("5"));
    assert_eq!(r.json()["error"]["code"], "state_full");
    assert_eq!(stack.flushed_counter("fusebox.state.full"), 1);
    // The tenants already in that bucket, and tenants of other buckets, go on as before.
    assert_eq!(chat(&stack, &crowd[3], 5, 5).status, 200);
    assert_eq!(chat(&stack, "elsewhere", 5, 5).status, 200);
    let status = stack.status(&token(&crowd[3], None));
    assert_eq!(fusebox_integration::observed(&status, "tokens_60s"), 20, "{status}");
}
