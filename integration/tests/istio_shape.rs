#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! Istio's `WasmPlugin` gives the filter's VM no `vm_id` (pilot's WasmPlugin conversion sets
//! none). The singleton, installed through a bootstrap override, must then also leave it blank to
//! share the filter's shared data and queue. This runs the demo stack in that shape.

use fusebox_integration::{demo_policy, token, Stack};
use serde_json::json;

#[test]
fn filter_and_singleton_without_a_vm_id_still_share_the_policy_and_the_event_queue() {
    let demo = Stack::demo_bootstrap();
    let blank: String = demo.lines().filter(|l| l.trim() != "vm_id: fusebox").map(|l| format!("{l}\n")).collect();
    assert_eq!(demo.matches("vm_id: fusebox").count(), 2);
    assert!(!blank.contains("vm_id: fusebox"));
    // A limit only control's policy has: it shows the singleton's publication reached the workers.
    let policy = demo_policy(json!({"free": {"requests_10s": 2}}), json!({}));
    let stack = Stack::start_custom(&policy, 2, |_| (blank.clone(), Vec::new()));
    stack.wait_policy_version(1);
    let t = token("meshed", None);
    let statuses: Vec<u16> = (0..4).map(|_| stack.chat(Some(&t), &[]).status).collect();
    assert_eq!(&statuses[..2], &[200, 200]);
    assert!(statuses[2..].iter().all(|s| *s == 429), "control's limit applies: {statuses:?}");
    // Events reach control through the queue the singleton registered.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let usage = stack.control_get("/v1/usage?tenant=meshed");
        if usage["tenants"][0]["usage"]["requests"].as_u64() == Some(2) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "usage never reached control: {usage}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
