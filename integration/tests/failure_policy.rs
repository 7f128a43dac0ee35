#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! What Envoy's plugin `failure_policy` does to traffic once a Wasm VM has failed, shown with a
//! test-only filter that traps on demand (fusebox itself never panics).

use fusebox_integration::{demo_policy, generous, render, workspace_root, Stack};
use serde_json::json;

fn stack(failure_policy: &str) -> Stack {
    let trapper = workspace_root().join("target/wasm32-wasip1/release/fusebox_trapper.wasm");
    assert!(trapper.is_file(), "{} missing: `make wasm` builds it", trapper.display());
    let template =
        std::fs::read_to_string(workspace_root().join("integration/envoy-test/failure-policy.yaml")).unwrap();
    let vars = [("FAILURE_POLICY", failure_policy.to_string()), ("TRAPPER_WASM", trapper.display().to_string())];
    let bootstrap = render(&template, &vars);
    Stack::start_custom(&demo_policy(json!({"free": generous()}), json!({})), 1, |_| (bootstrap.clone(), Vec::new()))
}

fn healthz(stack: &Stack) -> u16 {
    stack.get(&stack.url("/healthz"), &[]).status
}

#[test]
fn fail_closed_refuses_traffic_after_the_vm_fails() {
    let stack = stack("FAIL_CLOSED");
    assert_eq!(healthz(&stack), 200);
    let trapped = stack.get(&stack.url("/healthz"), &[("x-trap", "1")]);
    assert!(trapped.status >= 500, "the request that trapped the VM fails: {}", trapped.status);
    assert_eq!(healthz(&stack), 503, "with FAIL_CLOSED nothing passes a failed VM");
}

#[test]
fn fail_open_lets_traffic_through_unfiltered_after_the_vm_fails() {
    let stack = stack("FAIL_OPEN");
    assert_eq!(healthz(&stack), 200);
    let trapped = stack.get(&stack.url("/healthz"), &[("x-trap", "1")]);
    assert!(trapped.status >= 500 || trapped.status == 200, "{}", trapped.status);
    assert_eq!(healthz(&stack), 200, "with FAIL_OPEN traffic skips the failed filter");
    // Unfiltered: even a request that would trap now passes.
    assert_eq!(stack.get(&stack.url("/healthz"), &[("x-trap", "1")]).status, 200);
}
