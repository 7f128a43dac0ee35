#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! Istio's `WasmPlugin` gives the filter's VM no `vm_id` (pilot's WasmPlugin conversion sets
//! none). The singleton, installed through a bootstrap override, must then also leave it blank to
//! share the filter's shared data and queue. This runs the demo stack in that shape.

use fusebox_integration::{demo_policy, token, workspace_root, Stack};
use serde_json::{json, Value};

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

#[test]
fn the_bootstrap_override_declares_each_volume_once_and_ships_its_init_image() {
    let istio = workspace_root().join("envoy/istio");
    let text = std::fs::read_to_string(istio.join("k8s/bootstrap-override.yaml")).unwrap();
    let annotation = |key: &str| -> Vec<Value> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .map(|v| serde_json::from_str(v.trim().trim_matches('\'')).unwrap())
            .map(|v: Value| v.as_array().unwrap().clone())
            .unwrap_or_default()
    };
    // Volumes: those the annotation adds and those the pod spec declares, each name once.
    let mut volumes: Vec<String> =
        annotation("sidecar.istio.io/userVolume:").iter().map(|v| v["name"].as_str().unwrap().to_string()).collect();
    let spec = text.split("\n      volumes:\n").nth(1).expect("the pod declares its volumes");
    volumes.extend(spec.lines().filter_map(|l| l.trim().strip_prefix("- name: ")).map(str::to_string));
    let mut unique = volumes.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), volumes.len(), "a volume declared twice: {volumes:?}");
    // What istio-proxy mounts exists, at the path the singleton's bootstrap reads from.
    let mounts = annotation("sidecar.istio.io/userVolumeMount:");
    assert!(!mounts.is_empty());
    for m in &mounts {
        assert!(volumes.iter().any(|v| v == m["name"].as_str().unwrap()), "{m} mounts no declared volume");
    }
    let copy_to = "/var/lib/fusebox/fusebox_filter.wasm";
    assert!(text.contains(copy_to) && mounts.iter().any(|m| m["mountPath"] == "/var/lib/fusebox"));
    // The init image is one this repository builds: its Dockerfile names that tag and copies the
    // module to the path the init container copies from.
    let image =
        text.lines().find_map(|l| l.trim().strip_prefix("image: ")).filter(|i| i.contains("fusebox-init")).unwrap();
    let dockerfile = std::fs::read_to_string(istio.join("Dockerfile.init")).unwrap();
    assert!(dockerfile.contains(&format!("-t {image} ")), "Dockerfile.init builds {image}");
    assert!(dockerfile.contains("COPY target/wasm32-wasip1/release/fusebox_filter.wasm /plugin.wasm"));
    assert!(text.contains(r#"command: ["cp", "/plugin.wasm", "/var/lib/fusebox/fusebox_filter.wasm"]"#));
    assert!(dockerfile.lines().any(|l| l.starts_with("FROM busybox")), "cp needs a shell image");
}
