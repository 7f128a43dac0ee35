#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! Istio's `WasmPlugin` gives the filter's VM no `vm_id` (pilot's WasmPlugin conversion sets
//! none). The singleton, installed through a bootstrap override, must then also leave it blank to
//! share the filter's shared data and queue. This runs the demo stack in that shape.

use fusebox_integration::{demo_policy, token, work_dir, workspace_root, Ports, Stack, StackOptions};
use serde_json::json;

#[test]
fn filter_and_singleton_without_a_vm_id_still_share_the_policy_and_the_event_queue() {
    let dir = work_dir();
    let demo = std::fs::read_to_string(workspace_root().join("envoy/demo.yaml")).unwrap();
    let blank: String = demo.lines().filter(|l| l.trim() != "vm_id: fusebox").map(|l| format!("{l}\n")).collect();
    assert_eq!(demo.matches("vm_id: fusebox").count(), 2);
    assert!(!blank.contains("vm_id: fusebox"));
    let config = dir.join("blank-vm-id.yaml");
    std::fs::write(&config, blank).unwrap();
    let policy_file = dir.join("policy.json");
    // A limit only control's policy has: it shows the singleton's publication reached the workers.
    std::fs::write(&policy_file, demo_policy(json!({"free": {"requests_10s": 2}}), json!({}))).unwrap();
    let options = StackOptions {
        ports: Ports::free(),
        policy_file,
        db: dir.join("control.db"),
        envoy_config: config,
        workers: 2,
        foreground: false,
        start_control: true,
        control_args: Vec::new(),
    };
    let stack = Stack::start_with(options, dir).unwrap();
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
