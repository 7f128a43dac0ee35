#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! Every Envoy YAML shipped in `envoy/` is accepted by the real Envoy (`--mode validate`),
//! with the real `.wasm` loaded.

use fusebox_integration::{envoy_binary, render, wasm_path, work_dir, workspace_root};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Renders a template with fixed ports and the real `.wasm` into `dir`, returning the path.
fn render_into(dir: &Path, name: &str, template: &str) -> PathBuf {
    // The provider examples read their key from a file, which must exist to validate.
    let key_file = dir.join("provider-key");
    std::fs::write(&key_file, "Bearer sk-example").unwrap();
    let vars = [
        ("PROVIDER_KEY_FILE", key_file.display().to_string()),
        ("LISTEN_PORT", "10000".to_string()),
        ("ADMIN_PORT", "9901".to_string()),
        ("CONTROL_PORT", "8090".to_string()),
        ("MOCK_PORT", "18080".to_string()),
        ("WASM", wasm_path().unwrap().display().to_string()),
    ];
    let rendered = render(template, &vars);
    assert!(!rendered.contains("${"), "{name} has an unknown placeholder");
    let out = dir.join(name);
    std::fs::write(&out, rendered).unwrap();
    out
}

/// `envoy --mode validate` on a file: Ok, or Envoy's output.
fn validate(path: &Path) -> Result<(), String> {
    let result = Command::new(envoy_binary().unwrap())
        .args(["--mode", "validate", "--use-dynamic-base-id", "-l", "error", "-c"])
        .arg(path)
        .output()
        .unwrap();
    if result.status.success() {
        Ok(())
    } else {
        Err(format!("{}\n{}", String::from_utf8_lossy(&result.stdout), String::from_utf8_lossy(&result.stderr)))
    }
}

fn yaml_files(dir: PathBuf, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            // Kubernetes manifests and cluster snippets, not Envoy bootstraps (both are checked below).
            if !path.ends_with("istio/k8s") && !path.ends_with("snippets") {
                yaml_files(path, out);
            }
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

#[test]
fn every_envoy_yaml_rendered_as_make_envoy_configs_does_validates_with_the_real_envoy() {
    let mut files = Vec::new();
    yaml_files(workspace_root().join("envoy"), &mut files);
    assert!(files.len() >= 2, "expected the demo and the per-route example, found {files:?}");
    for provider in ["openai", "anthropic", "azure-openai"] {
        let expected = workspace_root().join(format!("envoy/providers/{provider}.yaml"));
        assert!(files.contains(&expected), "the {provider} example is shipped and validated");
    }
    // Exactly what `make envoy-configs` runs (the provider examples read their key from a file,
    // which must exist to validate).
    let dir = work_dir();
    let key_file = dir.join("provider-key");
    std::fs::write(&key_file, "Bearer sk-example").unwrap();
    let out = dir.join("rendered");
    let run = Command::new(fusebox_integration::sibling_binary("fusebox-render").unwrap())
        .arg("--out")
        .arg(&out)
        .env("FUSEBOX_PROVIDER_KEY_FILE", &key_file)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let rendered: Vec<PathBuf> = String::from_utf8_lossy(&run.stdout).lines().map(PathBuf::from).collect();
    assert_eq!(rendered.len(), files.len(), "one rendered file per template: {rendered:?}");
    for file in rendered {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("${"), "{} still has a placeholder", file.display());
        if let Err(output) = validate(&file) {
            panic!("{} does not validate:\n{output}", file.display());
        }
    }
}

#[test]
fn the_mtls_control_cluster_validates_in_place_of_the_demo_one() {
    let dir = work_dir();
    let pki = fusebox_integration::Pki::create(&dir).unwrap();
    let demo = std::fs::read_to_string(workspace_root().join("envoy/demo.yaml")).unwrap();
    let spliced = fusebox_integration::with_control_cluster(&demo, "control-cluster-mtls.yaml");
    assert!(spliced.contains("UpstreamTlsContext") && spliced.contains("${CONTROL_CA}"), "{spliced}");
    let rendered = render_into(&dir, "control-mtls.yaml", &render(&spliced, &pki.envoy_vars()));
    if let Err(output) = validate(&rendered) {
        panic!("envoy/snippets/control-cluster-mtls.yaml does not validate:\n{output}");
    }
}

#[test]
fn per_route_example_enforces_chat_and_embeddings_apart_and_leaves_admin_paths_alone() {
    use fusebox_integration::{demo_policy, token, Stack};
    let tiers = serde_json::json!({
        "free": {"tokens_60s": 100_000, "requests_10s": 100},
        "embeddings": {"tokens_60s": 100_000, "requests_10s": 2},
    });
    let stack = Stack::start_with_envoy(&demo_policy(tiers, serde_json::json!({})), "per-route.yaml");
    stack.wait_policy_version(1);
    let t = token("split", None);
    let embed = |stack: &Stack| {
        stack.post("/v1/embeddings", Some(&t), &[], r#"{"model":"text-embedding-3-small","input":"hi"}"#)
    };
    assert_eq!(embed(&stack).status, 200);
    assert_eq!(embed(&stack).status, 200);
    let third = embed(&stack);
    assert_eq!(third.status, 429, "{}", third.body);
    assert_eq!(third.header("x-fusebox-reason"), Some("requests_10s"));
    // The embeddings tier's breaker is its own: chat is untouched.
    for _ in 0..3 {
        assert_eq!(stack.chat(Some(&t), &[]).status, 200);
    }
    // The filter is off on the admin paths: no token needed, the upstream answers.
    let admin = stack.get(&stack.url("/admin/anything"), &[]);
    assert_eq!(admin.status, 404, "the mock's answer, not fusebox's 401: {}", admin.body);
    let mock = stack.mock_stats();
    assert_eq!(mock["tenants"]["split"]["requests"], 5, "2 embeddings and 3 chats went up");
    // Control audits the embeddings trip as that route tier's, and does not show the tenant's
    // own breaker as open.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let audit = stack.control_get("/v1/audit?tenant=split");
        let scoped = audit["entries"].as_array().into_iter().flatten().any(|e| {
            e["action"] == "breaker.transition" && e["outcome"] == "open" && e["details"]["scope"] == "embeddings"
        });
        if scoped {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no scoped trip in the audit log: {audit}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(stack.control_get("/v1/tenants/split")["breaker"].is_null(), "the tenant's own breaker never moved");
}

/// The first JSON document in `text` after `marker`.
fn json_after(text: &str, marker: &str) -> serde_json::Value {
    let at = text.find(marker).unwrap_or_else(|| panic!("{marker} not found"));
    let rest = &text[at + marker.len()..];
    let start = rest.find('{').unwrap();
    let mut docs = serde_json::Deserializer::from_str(&rest[start..]).into_iter::<serde_json::Value>();
    docs.next().unwrap().unwrap()
}

#[test]
fn the_istio_examples_carry_filter_configurations_fusebox_accepts() {
    let k8s = workspace_root().join("envoy/istio/k8s");
    let plugin = std::fs::read_to_string(k8s.join("wasmplugin.yaml")).unwrap();
    let filter = std::fs::read_to_string(k8s.join("envoyfilter.yaml")).unwrap();
    let from_plugin = json_after(&plugin, "pluginConfig:");
    let from_filter = json_after(&filter, "value: |");
    assert_eq!(from_plugin, from_filter, "both examples configure the filter alike");
    let config = fusebox_engine::config::FilterConfig::from_json(from_plugin.to_string().as_bytes());
    assert!(config.is_ok(), "{:?}", config.err());
}

#[test]
fn a_broken_filter_configuration_is_refused_by_envoy() {
    // Invalid plugin configuration makes on_configure return false: Envoy must refuse it.
    let template = std::fs::read_to_string(workspace_root().join("envoy/demo.yaml")).unwrap();
    let broken = template.replace(r#""unmatched": "enforce","#, r#""unmatched": "sometimes","#);
    assert_ne!(broken, template);
    let dir = work_dir();
    let path = render_into(&dir, "broken.yaml", &broken);
    let output = validate(&path).expect_err("envoy accepted a broken fusebox configuration");
    assert!(output.contains("fusebox: invalid configuration: unmatched"), "{output}");
}
