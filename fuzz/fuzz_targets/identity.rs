//! Any bytes as bearer token, API key or jwt_authn claims: an identity or an error, never a panic.
#![no_main]
use fusebox_engine::identity::{Credentials, EnvoyJwt, TokenCache, Verifier};
use fusebox_engine::policy::Policy;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const POLICY: &str = r#"{"identity": {
  "jwt": {"issuer": "https://auth.example", "audiences": ["fusebox"],
          "keys": [{"alg": "HS256", "kid": "demo", "secret": "fusebox-demo-secret-change-me"}]},
  "api_keys": [{"sha256": "0000000000000000000000000000000000000000000000000000000000000000", "tenant": "k"}],
  "jwt_authn": {}
}}"#;

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let policy = Policy::from_json(POLICY.as_bytes()).unwrap_or_else(|e| panic!("fixture policy: {e}"));
        Verifier::new(&policy.identity).unwrap_or_else(|e| panic!("fixture keys: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut cache = TokenCache::new(16);
    let bearer = format!("Bearer {text}");
    for c in [
        Credentials { authorization: Some(&bearer), ..Credentials::default() },
        Credentials { authorization: Some(&text), ..Credentials::default() },
        Credentials { api_key: Some(&text), ..Credentials::default() },
        Credentials { envoy_jwt: Some(EnvoyJwt { tenant: Some(text.to_string()), tier: None, scopes: Vec::new() }), ..Credentials::default() },
    ] {
        if let Ok(id) = verifier().identify(&c, &mut cache, 1_800_000_000) {
            assert!(fusebox_engine::policy::is_valid_tenant_id(&id.tenant));
        }
    }
});
