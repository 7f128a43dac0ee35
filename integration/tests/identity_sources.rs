#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! End-to-end identity sources besides the bearer JWT: API keys (by SHA-256 digest) and the
//! payload verified by Envoy's own jwt_authn filter.

use fusebox_engine::identity::{hex, sha256};
use fusebox_integration::{generous, observed, token, Stack, DEMO_AUDIENCE, DEMO_ISSUER, DEMO_SECRET};
use serde_json::json;

#[test]
fn api_keys_identify_their_tenant_by_digest_in_either_header() {
    let policy = json!({
        "identity": {
            "jwt": {"issuer": DEMO_ISSUER, "audiences": [DEMO_AUDIENCE], "keys": [{"alg": "HS256", "kid": "demo", "secret": DEMO_SECRET}]},
            "api_keys": [{"sha256": hex(&sha256(b"sk-test-acme-1")), "tenant": "acme-keyed", "name": "ci"}]
        },
        "tiers": {"free": generous()}
    });
    let stack = Stack::start(&policy.to_string());
    stack.wait_policy_version(1);
    let u = [("x-mock-input-tokens", "10"), ("x-mock-output-tokens", "5")];
    let by_header = stack.post("/v1/chat/completions", None, &[("x-api-key", "sk-test-acme-1"), u[0], u[1]], "{}");
    assert_eq!(by_header.status, 200, "{}", by_header.body);
    let by_bearer = stack.post("/v1/chat/completions", Some("sk-test-acme-1"), &u, "{}");
    assert_eq!(by_bearer.status, 200, "{}", by_bearer.body);
    let wrong = stack.post("/v1/chat/completions", None, &[("x-api-key", "sk-test-acme-2")], "{}");
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["error"]["code"], "invalid_api_key");
    // JWTs still work next to keys.
    assert_eq!(stack.chat(Some(&token("globex", None)), &[]).status, 200);
    let mock = stack.mock_stats();
    assert_eq!(mock["tenants"]["acme-keyed"]["requests"], 2);
    assert_eq!(mock["tenants"]["globex"]["requests"], 1);
    let status = stack.get(&stack.url("/fusebox/status"), &[("x-api-key", "sk-test-acme-1")]).json();
    assert_eq!(status["tenant"], "acme-keyed");
    assert_eq!(observed(&status, "tokens_60s"), 30);
}

#[test]
fn envoy_jwt_authn_payload_identifies_the_tenant() {
    let policy = json!({"identity": {"jwt_authn": {"payload_key": "jwt_payload"}}, "tiers": {"free": generous()}});
    let stack = Stack::start_with_envoy(&policy.to_string(), "jwt-authn.yaml");
    stack.wait_policy_version_at("/v1/fusebox/status", 1);
    let t = token("authn-tenant", None);
    let r = stack.chat(Some(&t), &[("x-mock-input-tokens", "7"), ("x-mock-output-tokens", "3")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(stack.mock_stats()["tenants"]["authn-tenant"]["requests"], 1);
    // jwt_authn itself refuses a bad token before fusebox sees the request.
    let forged = fusebox_engine::identity::mint(
        fusebox_engine::identity::MintKey::Hs256("not-the-demo-secret-at-all"),
        Some("demo"),
        DEMO_ISSUER,
        DEMO_AUDIENCE,
        json!({"tenant": "authn-tenant"}).as_object().cloned().unwrap(),
        fusebox_integration::now_s(),
        60,
    )
    .unwrap();
    assert_eq!(stack.chat(Some(&forged), &[]).status, 401);
    assert_eq!(stack.mock_stats()["all"]["requests"], 1);
}

#[test]
fn scopes_are_read_from_the_payload_jwt_authn_verified() {
    let policy = json!({"identity": {"jwt_authn": {"payload_key": "jwt_payload"}}, "tiers": {"free": generous()},
                        "scopes": {"org": {"claim": "org_id", "limits": {"requests_10s": 1}}}});
    let stack = Stack::start_with_envoy(&policy.to_string(), "jwt-authn.yaml");
    stack.wait_policy_version_at("/v1/fusebox/status", 1);
    let member = |tenant: &str| {
        fusebox_integration::token_with(tenant, json!({"org_id": "initech"}).as_object().cloned().unwrap())
    };
    assert_eq!(stack.chat(Some(&member("one")), &[]).status, 200);
    let r = stack.chat(Some(&member("two")), &[]);
    assert_eq!(r.status, 429, "two tenants, one org of 1 request per 10 s: {}", r.body);
    assert_eq!(r.header("x-fusebox-scope"), Some("org:initech"));
}

#[test]
fn rotating_jwt_keys_in_the_policy_retires_the_old_key_at_once() {
    let policy = |kid: &str, secret: &str| {
        json!({
            "identity": {"jwt": {"issuer": DEMO_ISSUER, "audiences": [DEMO_AUDIENCE],
                                 "keys": [{"alg": "HS256", "kid": kid, "secret": secret},
                                          {"alg": "HS256", "kid": "demo", "secret": DEMO_SECRET}]}},
            "tiers": {"free": generous()}
        })
        .to_string()
    };
    let mint = |kid: &str, secret: &str| {
        let claims = json!({"tenant": "rotating"}).as_object().cloned().unwrap();
        fusebox_engine::identity::mint(
            fusebox_engine::identity::MintKey::Hs256(secret),
            Some(kid),
            DEMO_ISSUER,
            DEMO_AUDIENCE,
            claims,
            fusebox_integration::now_s(),
            600,
        )
        .unwrap()
    };
    let stack = Stack::start(&policy("2026-a", "first-secret-0123456789"));
    stack.wait_policy_version(1);
    let old = mint("2026-a", "first-secret-0123456789");
    let new = mint("2026-b", "second-secret-0123456789");
    assert_eq!(stack.chat(Some(&old), &[]).status, 200, "and now the old token is in the verified cache");
    assert_eq!(stack.chat(Some(&new), &[]).status, 401);
    stack.set_policy(&policy("2026-b", "second-secret-0123456789"));
    stack.wait_policy_version(2);
    let refused = stack.chat(Some(&old), &[]);
    assert_eq!(refused.status, 401, "a cached token of a retired key is not accepted");
    assert_eq!(refused.json()["error"]["code"], "unknown_signing_key");
    assert_eq!(stack.chat(Some(&new), &[]).status, 200);
}
