#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! Every Envoy YAML shipped in `envoy/` is accepted by the real Envoy (`--mode validate`),
//! with the real `.wasm` loaded.

use fusebox_integration::{envoy_binary, render, wasm_path, work_dir, workspace_root};
use std::path::PathBuf;
use std::process::Command;

fn yaml_files(dir: PathBuf, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            yaml_files(path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

#[test]
fn every_envoy_yaml_validates_with_the_real_envoy() {
    let envoy = envoy_binary().unwrap();
    let wasm = wasm_path().unwrap();
    let mut files = Vec::new();
    yaml_files(workspace_root().join("envoy"), &mut files);
    assert!(files.len() >= 2, "expected the demo and the per-route example, found {files:?}");
    let dir = work_dir();
    for file in files {
        let vars = [
            ("LISTEN_PORT", "10000".to_string()),
            ("ADMIN_PORT", "9901".to_string()),
            ("CONTROL_PORT", "8090".to_string()),
            ("MOCK_PORT", "18080".to_string()),
            ("WASM", wasm.display().to_string()),
        ];
        let rendered = render(&std::fs::read_to_string(&file).unwrap(), &vars);
        assert!(!rendered.contains("${"), "{} has an unknown placeholder", file.display());
        let out = dir.join(file.file_name().unwrap());
        std::fs::write(&out, rendered).unwrap();
        let result = Command::new(&envoy)
            .args(["--mode", "validate", "--use-dynamic-base-id", "-l", "error", "-c"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            result.status.success(),
            "{} does not validate:\n{}\n{}",
            file.display(),
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
    }
}

#[test]
fn a_broken_filter_configuration_is_refused_by_envoy() {
    // Invalid plugin configuration makes on_configure return false: Envoy must refuse it.
    let envoy = envoy_binary().unwrap();
    let wasm = wasm_path().unwrap();
    let template = std::fs::read_to_string(workspace_root().join("envoy/demo.yaml")).unwrap();
    let broken = template.replace(r#""unmatched": "pass","#, r#""unmatched": "sometimes","#);
    assert_ne!(broken, template);
    let dir = work_dir();
    let path = dir.join("broken.yaml");
    let vars = [
        ("LISTEN_PORT", "10000".to_string()),
        ("ADMIN_PORT", "9901".to_string()),
        ("CONTROL_PORT", "8090".to_string()),
        ("MOCK_PORT", "18080".to_string()),
        ("WASM", wasm.display().to_string()),
    ];
    std::fs::write(&path, render(&broken, &vars)).unwrap();
    let result = Command::new(&envoy)
        .args(["--mode", "validate", "--use-dynamic-base-id", "-l", "error", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!result.status.success(), "envoy accepted a broken fusebox configuration");
}
