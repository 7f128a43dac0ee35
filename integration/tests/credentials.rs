#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! Credentials kept apart: the tenant's credential (its JWT, its fusebox API key) is read by
//! fusebox and removed before the upstream; the provider's key is added by Envoy
//! (`credential_injector` from a secret file), so the upstream sees the provider key and never a
//! tenant's. Clients are the official OpenAI and Anthropic Python SDKs, streaming and not.

use fusebox_engine::identity::{hex, sha256};
use fusebox_integration::{token, workspace_root, Stack, DEMO_AUDIENCE, DEMO_ISSUER, DEMO_SECRET};
use serde_json::{json, Value};
use std::process::Command;

const PROVIDER_KEY: &str = "Bearer sk-provider-test-0001";
const FUSEBOX_KEY: &str = "fbx-tenant-key-initech-0001";

/// The demo bootstrap with Envoy's credential injector after fusebox, reading the provider key
/// from a file.
fn with_injector(key_file: &std::path::Path) -> String {
    let demo = Stack::demo_bootstrap();
    let injector = r#"          - name: envoy.filters.http.credential_injector
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.CredentialInjector
              overwrite: true
              credential:
                name: envoy.http.injected_credentials.generic
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.http.injected_credentials.generic.v3.Generic
                  credential: { name: provider-key }
                  header: Authorization
          - name: envoy.filters.http.router
"#;
    let secret = format!(
        "static_resources:\n  secrets:\n  - name: provider-key\n    generic_secret:\n      secret: {{ filename: {} }}\n",
        key_file.display()
    );
    let out = demo.replacen("          - name: envoy.filters.http.router\n", injector, 1).replacen(
        "static_resources:\n",
        &secret,
        1,
    );
    assert_ne!(out, demo);
    out
}

#[test]
fn the_upstream_sees_the_provider_key_and_never_a_tenants_credential() {
    // JWTs and fusebox API keys both configured: the collision the Anthropic SDK's x-api-key causes.
    let policy = json!({
        "identity": {
            "jwt": {"issuer": DEMO_ISSUER, "audiences": [DEMO_AUDIENCE], "keys": [{"alg": "HS256", "kid": "demo", "secret": DEMO_SECRET}]},
            "api_keys": [{"sha256": hex(&sha256(FUSEBOX_KEY.as_bytes())), "tenant": "initech"}]
        },
        "tiers": {"free": {"tokens_60s": 100_000_000u64}}
    });
    let stack = Stack::start_custom(&policy.to_string(), 2, |dir| {
        let key_file = dir.join("provider-key");
        std::fs::write(&key_file, PROVIDER_KEY).unwrap();
        (with_injector(&key_file), Vec::new())
    });
    stack.wait_policy_version(1);

    let jwt = token("globex", None);
    let python = workspace_root().join(".venv/bin/python");
    assert!(python.is_file(), "{} missing: run `make test` (it installs the SDKs)", python.display());
    let out = Command::new(python)
        .arg(workspace_root().join("integration/sdk/credentials.py"))
        .arg(stack.url(""))
        .arg(&jwt)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    for call in ["openai", "openai_stream", "anthropic", "anthropic_stream"] {
        assert_eq!(report[call]["ok"], true, "{call}: {report}");
    }
    // A fusebox API key in x-api-key identifies its tenant, and stops at fusebox too.
    let r = stack.post("/v1/chat/completions", None, &[("x-api-key", FUSEBOX_KEY)], r#"{"model":"m","messages":[]}"#);
    assert_eq!(r.status, 200, "{}", r.body);

    let stats = stack.mock_stats();
    for tenant in ["globex", "initech"] {
        let seen = &stats["tenants"][tenant]["credentials_seen"];
        assert_eq!(seen, &json!([format!("authorization: {PROVIDER_KEY}")]), "{tenant}: {seen}");
    }
    assert!(!stats.to_string().contains(&jwt), "the tenant's JWT reached the upstream");
    assert!(!stats.to_string().contains(FUSEBOX_KEY), "the tenant's fusebox key reached the upstream");
    assert_eq!(stats["tenants"]["globex"]["requests"], 4, "{stats}");
}

#[test]
fn without_an_injector_the_upstream_gets_no_credential_at_all() {
    let stack =
        Stack::start(&fusebox_integration::demo_policy(json!({"free": fusebox_integration::generous()}), json!({})));
    stack.wait_policy_version(1);
    let jwt = token("plain", None);
    let headers = [("x-api-key", "sk-ant-client-side-placeholder")];
    assert_eq!(stack.chat(Some(&jwt), &headers).status, 200);
    let stream = r#"{"model":"m","stream":true,"messages":[]}"#;
    assert_eq!(stack.post("/v1/chat/completions", Some(&jwt), &headers, stream).status, 200);
    let stats = stack.mock_stats();
    assert_eq!(stats["tenants"]["plain"]["requests"], 2);
    assert_eq!(stats["tenants"]["plain"]["credentials_seen"], json!([]), "{stats}");
}
