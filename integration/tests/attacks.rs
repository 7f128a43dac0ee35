#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! The identity attack matrix, end to end: every forged, stale or malformed credential gets a
//! 401 with a precise code, and no such request reaches the upstream.

use fusebox_engine::identity::{mint, MintKey};
use fusebox_integration::{generous, now_s, workspace_root, Stack, DEMO_AUDIENCE, DEMO_ISSUER, DEMO_SECRET};
use serde_json::{json, Value};

fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A compact JWS with any header and claims, HMAC-SHA256-signed with `secret` (or unsigned).
fn craft(header: Value, claims: Value, secret: Option<&[u8]>) -> String {
    let signing_input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
    let signature = secret.map(|s| b64url(&hmac_sha256::HMAC::mac(signing_input.as_bytes(), s))).unwrap_or_default();
    format!("{signing_input}.{signature}")
}

fn claims(extra: Value) -> Value {
    let now = now_s();
    let mut c =
        json!({"iss": DEMO_ISSUER, "aud": DEMO_AUDIENCE, "iat": now, "nbf": now, "exp": now + 600, "tenant": "victim"});
    c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    c
}

fn hs(claims: Value) -> String {
    craft(json!({"alg": "HS256", "typ": "JWT", "kid": "demo"}), claims, Some(DEMO_SECRET.as_bytes()))
}

#[test]
fn every_forged_stale_or_malformed_credential_is_refused_before_the_upstream() {
    let rsa_public = std::fs::read_to_string(workspace_root().join("tests/keys/rs256-public.pem")).unwrap();
    let policy = json!({
        "identity": {"jwt": {"issuer": DEMO_ISSUER, "audiences": [DEMO_AUDIENCE], "keys": [
            {"alg": "HS256", "kid": "demo", "secret": DEMO_SECRET},
            {"alg": "RS256", "kid": "rsa", "pem": rsa_public}
        ]}},
        "tiers": {"free": generous()}
    });
    let stack = Stack::start(&policy.to_string());
    stack.wait_policy_version(1);
    let now = now_s();
    let good = hs(claims(json!({})));
    let parts: Vec<&str> = good.split('.').collect();
    // Flip the first character: every bit of it is signature (the last one carries padding bits,
    // and changing those makes non-canonical base64, a different error).
    let first = parts[2].chars().next().unwrap();
    let flipped_signature = format!("{}{}", if first == 'A' { 'B' } else { 'A' }, &parts[2][1..]);
    let forged_payload = b64url(claims(json!({"tenant": "someone-else"})).to_string().as_bytes());
    let no_exp = {
        let mut c = claims(json!({}));
        c.as_object_mut().unwrap().remove("exp");
        hs(c)
    };
    let no_tenant = {
        let mut c = claims(json!({}));
        c.as_object_mut().unwrap().remove("tenant");
        hs(c)
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("no credentials", String::new(), "missing_credentials"),
        ("basic auth", "Basic dmljdGltOnB3".into(), "unsupported_auth_scheme"),
        ("garbage base64", "Bearer @@@.###.$$$".into(), "malformed_token"),
        ("not a jwt", "Bearer hello".into(), "malformed_token"),
        (
            "alg none",
            format!("Bearer {}", craft(json!({"alg": "none", "kid": "demo"}), claims(json!({})), None)),
            "unknown_signing_key",
        ),
        (
            "HS256 keyed with the RS256 public key",
            format!(
                "Bearer {}",
                mint(
                    MintKey::Hs256(&rsa_public),
                    Some("rsa"),
                    DEMO_ISSUER,
                    DEMO_AUDIENCE,
                    claims(json!({})).as_object().cloned().unwrap(),
                    now,
                    600
                )
                .unwrap()
            ),
            "unknown_signing_key",
        ),
        (
            "expired",
            format!("Bearer {}", hs(claims(json!({"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600})))),
            "token_expired",
        ),
        ("not yet valid", format!("Bearer {}", hs(claims(json!({"nbf": now + 3600})))), "token_not_yet_valid"),
        ("wrong issuer", format!("Bearer {}", hs(claims(json!({"iss": "https://evil.example"})))), "invalid_issuer"),
        ("wrong audience", format!("Bearer {}", hs(claims(json!({"aud": "another-api"})))), "invalid_audience"),
        ("tampered payload", format!("Bearer {}.{}.{}", parts[0], forged_payload, parts[2]), "invalid_signature"),
        ("tampered signature", format!("Bearer {}.{}.{}", parts[0], parts[1], flipped_signature), "invalid_signature"),
        (
            "unknown kid",
            format!(
                "Bearer {}",
                craft(json!({"alg": "HS256", "kid": "retired"}), claims(json!({})), Some(DEMO_SECRET.as_bytes()))
            ),
            "unknown_signing_key",
        ),
        ("oversized token", format!("Bearer {}.{}.x", parts[0], "A".repeat(12_000)), "token_too_large"),
        ("no expiry", format!("Bearer {no_exp}"), "token_without_expiry"),
        (
            "valid for ten years",
            format!("Bearer {}", hs(claims(json!({"exp": now + 10 * 365 * 86_400})))),
            "token_lifetime_too_long",
        ),
        (
            "an expiry near the end of time",
            format!("Bearer {}", hs(claims(json!({"exp": 9_000_000_000_000_000_000u64})))),
            "token_lifetime_too_long",
        ),
        ("no tenant claim", format!("Bearer {no_tenant}"), "missing_tenant_claim"),
        (
            "unsafe tenant claim",
            format!("Bearer {}", hs(claims(json!({"tenant": "a\r\nx-evil: 1"})))),
            "invalid_tenant_claim",
        ),
        (
            "non-string tenant claim",
            format!("Bearer {}", hs(claims(json!({"tenant": ["a", "b"]})))),
            "invalid_tenant_claim",
        ),
    ];
    for (name, authorization, code) in &cases {
        let headers: Vec<(&str, &str)> =
            if authorization.is_empty() { vec![] } else { vec![("authorization", authorization.as_str())] };
        let r = stack.post("/v1/chat/completions", None, &headers, "{}");
        assert_eq!(r.status, 401, "{name}: {}", r.body);
        assert_eq!(r.json()["error"]["type"], "invalid_identity", "{name}");
        assert_eq!(r.json()["error"]["code"], *code, "{name}");
    }
    // The well-formed token works, so every refusal above is about the forgery.
    assert_eq!(stack.chat(Some(&good), &[]).status, 200);
    let mock = stack.mock_stats();
    assert_eq!(mock["all"]["requests"], 1, "no refused request reached the upstream");
    assert_eq!(stack.envoy_counter("fusebox.requests.unauthenticated"), cases.len() as u64);
}

/// Sends raw bytes as one HTTP/1.1 request on a new connection; the response's status code.
fn raw_status(port: u16, head: &[u8], body: &str) -> u16 {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut req =
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\n"
            .to_vec();
    req.extend_from_slice(head);
    req.extend_from_slice(format!("content-length: {}\r\n\r\n{body}", body.len()).as_bytes());
    conn.write_all(&req).unwrap();
    // The status line is enough; do not wait for the connection to close.
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    while !out.windows(2).any(|w| w == b"\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn header_values_that_are_not_utf8_get_clear_answers_and_never_trap_a_worker() {
    // proxy-wasm's string getters panic on such values; one request used to kill its worker's VM.
    let stack = Stack::start(&fusebox_integration::demo_policy(json!({"free": generous()}), json!({})));
    stack.wait_policy_version(1);
    let good = fusebox_integration::token("bytes", None);
    let auth = format!("authorization: Bearer {good}\r\n");
    let body = r#"{"model":"m","messages":[]}"#;
    let with_auth = |extra: &[u8]| [auth.as_bytes(), extra].concat();
    // Several of each, on new connections, so that every worker sees them.
    for _ in 0..6 {
        assert_eq!(raw_status(stack.ports.listen, b"authorization: Bearer \xff\xfe.\xff\r\n", body), 401);
        assert_eq!(raw_status(stack.ports.listen, &with_auth(b"x-agent-run-id: run-\xff\r\n"), body), 400);
        assert_eq!(raw_status(stack.ports.listen, &with_auth(b"x-fusebox-tenant: \xff\r\n"), body), 200);
        assert_eq!(raw_status(stack.ports.listen, &with_auth(b"accept-encoding: gzip\xff\r\n"), body), 200);
        // The upstream's answer carries a non-UTF-8 content-type: still read and counted.
        assert_eq!(raw_status(stack.ports.listen, &with_auth(b"x-mock-binary-header: 1\r\n"), body), 200);
        // A header name that is not a token never reaches the filter: Envoy refuses it.
        assert_eq!(raw_status(stack.ports.listen, &with_auth(b"x-\xffname: 1\r\n"), body), 400);
    }
    for _ in 0..20 {
        assert_eq!(stack.chat(Some(&good), &[]).status, 200, "every worker still serves");
    }
    let mock = stack.mock_stats();
    assert_eq!(mock["tenants"]["bytes"]["requests"], 6 * 3 + 20, "only the admitted requests went up");
    assert!(!stack.log("envoy.log").contains("panicked"), "no VM trapped");
    // Counted, binary content-type included: the filter's token counters (flushed on the
    // workers' 1 s tick) equal what the mock served.
    let served = mock["all"]["input_tokens"].as_u64().unwrap();
    assert!(served > 0);
    assert_eq!(stack.flushed_counter("fusebox.tokens.input"), served);
}
