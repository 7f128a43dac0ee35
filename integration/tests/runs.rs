#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! End-to-end agent runs: per-run steps, depth (from the stored parent chain), tokens; sub-agents
//! count toward their root run; a tripped run affects only itself; run ids are scoped per tenant.

use fusebox_integration::{demo_policy, generous, token, Resp, Stack};
use serde_json::json;

fn stack(run_limits: serde_json::Value) -> Stack {
    let mut tier = generous();
    tier.as_object_mut().unwrap().extend(run_limits.as_object().unwrap().clone());
    let stack = Stack::start(&demo_policy(json!({"free": tier}), json!({})));
    stack.wait_policy_version(1);
    stack
}

fn step(stack: &Stack, token: &str, run: &str, parent: Option<&str>, tokens: &str) -> Resp {
    let mut h = vec![("x-agent-run-id", run), ("x-mock-input-tokens", tokens), ("x-mock-output-tokens", "0")];
    if let Some(p) = parent {
        h.push(("x-agent-parent-run-id", p));
    }
    stack.chat(Some(token), &h)
}

#[test]
fn a_run_over_its_steps_is_refused_while_other_runs_and_tenants_continue() {
    let stack = stack(json!({"run_steps": 3}));
    let (acme, globex) = (token("acme", None), token("globex", None));
    for _ in 0..3 {
        assert_eq!(step(&stack, &acme, "run-1", None, "10").status, 200);
    }
    let denied = step(&stack, &acme, "run-1", None, "10");
    assert_eq!(denied.status, 429);
    assert_eq!(denied.header("x-fusebox-reason"), Some("run_steps"));
    assert_eq!(denied.header("x-should-retry"), Some("false"));
    let body = denied.json();
    assert_eq!(body["error"]["type"], "agent_run_limit");
    assert_eq!(body["error"]["fusebox"]["run_id"], "run-1");
    assert_eq!(
        (body["error"]["fusebox"]["threshold"].as_u64(), body["error"]["fusebox"]["observed"].as_u64()),
        (Some(3), Some(4))
    );
    // Only that run: another run of acme, plain requests of acme, and globex's "run-1" go on.
    assert_eq!(step(&stack, &acme, "run-2", None, "10").status, 200);
    assert_eq!(stack.chat(Some(&acme), &[]).status, 200);
    assert_eq!(step(&stack, &globex, "run-1", None, "10").status, 200, "run ids are scoped per tenant");
    assert_eq!(stack.status(&acme)["breaker"]["state"], "closed");
    assert_eq!(stack.mock_stats()["tenants"]["acme"]["requests"], 5);
}

#[test]
fn sub_agents_count_toward_their_root_run_and_depth_comes_from_the_chain() {
    let stack = stack(json!({"run_steps": 4, "run_depth": 1}));
    let t = token("planner", None);
    assert_eq!(step(&stack, &t, "root", None, "1").status, 200);
    assert_eq!(step(&stack, &t, "child", Some("root"), "1").status, 200);
    // A grandchild is depth 2 whatever the client claims about it.
    let deep = step(&stack, &t, "grandchild", Some("child"), "1");
    assert_eq!(deep.status, 429);
    assert_eq!(deep.header("x-fusebox-reason"), Some("run_depth"));
    assert_eq!(deep.json()["error"]["fusebox"]["observed"], 2);
    assert_eq!(step(&stack, &t, "child", Some("root"), "1").status, 200);
    assert_eq!(step(&stack, &t, "root", None, "1").status, 200);
    // 4 steps in the tree (root 2, child 2): the next one, from either, is over.
    assert_eq!(step(&stack, &t, "child", Some("root"), "1").header("x-fusebox-reason"), Some("run_steps"));
    assert_eq!(step(&stack, &t, "root", None, "1").header("x-fusebox-reason"), Some("run_steps"));
}

#[test]
fn a_run_over_its_tokens_is_stopped_after_the_step_that_crossed() {
    let stack = stack(json!({"run_tokens": 500}));
    let t = token("writer", None);
    assert_eq!(step(&stack, &t, "essay", None, "300").status, 200);
    assert_eq!(step(&stack, &t, "essay", None, "300").status, 200);
    let denied = step(&stack, &t, "essay", None, "300");
    assert_eq!(denied.header("x-fusebox-reason"), Some("run_tokens"), "{}", denied.body);
    assert_eq!(stack.envoy_counter("fusebox.runs.trips"), 1);
}

#[test]
fn a_malformed_run_id_is_a_clear_400() {
    let stack = stack(json!({}));
    let r = stack.chat(Some(&token("acme", None)), &[("x-agent-run-id", "run with spaces")]);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "invalid_run_id");
    assert_eq!(stack.mock_stats()["all"]["requests"], 0);
}

#[test]
fn invented_run_ids_that_fill_one_bucket_get_run_capacity_and_other_runs_go_on() {
    use fusebox_engine::run::{bucket, RUNS_PER_BUCKET};
    // Run ids of acme whose records share one bucket, found by hashing them as the filter does.
    let of = |run: &str| bucket(&format!("acme/{run}"));
    let crowd: Vec<String> =
        (0u64..).map(|i| format!("run-{i}")).filter(|r| of(r) == of("run-0")).take(RUNS_PER_BUCKET + 1).collect();
    let stack = stack(json!({"run_steps": 100, "run_ttl_s": 600}));
    let acme = token("acme", None);
    let (last, first) = crowd.split_last().unwrap();
    for run in first {
        assert_eq!(step(&stack, &acme, run, None, "10").status, 200, "{run}");
    }
    let refused = step(&stack, &acme, last, None, "10");
    assert_eq!((refused.status, refused.header("x-fusebox-reason")), (429, Some("run_capacity")), "{}", refused.body);
    // Runs already in that bucket, runs elsewhere and plain requests go on.
    assert_eq!(step(&stack, &acme, &crowd[5], None, "10").status, 200);
    assert_eq!(step(&stack, &acme, "elsewhere", None, "10").status, 200);
    assert_eq!(stack.chat(Some(&acme), &[]).status, 200);
}
