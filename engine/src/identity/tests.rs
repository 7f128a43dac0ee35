//! Tests of the identity sources together: tokens minted here, verified through a policy.

use super::*;
use crate::policy::Policy;
use crate::testkit::{policy_json, DEMO_SECRET};
use jwt_simple::prelude::*;
use serde_json::json;
use serde_json::{Map, Value};

const NOW: u64 = 1_800_000_000;

fn verifier() -> JwtVerifier {
    let p = Policy::from_json(policy_json("").as_bytes()).unwrap();
    JwtVerifier::new(p.identity.jwt.as_ref().unwrap()).unwrap()
}

fn claims(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

/// A one-minute token for tenant "a", signed as given.
fn minted(secret: &str, kid: Option<&str>, issuer: &str, audience: &str) -> String {
    mint(MintKey::Hs256(secret), kid, issuer, audience, claims(json!({"tenant": "a"})), NOW, 60).unwrap()
}

fn token(c: Value) -> String {
    mint(MintKey::Hs256(DEMO_SECRET), Some("demo"), "https://auth.example", "fusebox", claims(c), NOW - 10, 3600)
        .unwrap()
}

#[test]
fn valid_token_yields_tenant_and_tier() {
    let t = token(json!({"tenant": "acme", "tier": "pro"}));
    let id = verifier().verify_authorization(Some(&format!("Bearer {t}")), NOW).unwrap();
    assert_eq!(id.tenant, "acme");
    assert_eq!(id.tier.as_deref(), Some("pro"));
    assert_eq!(id.expires_at_s, Some(NOW - 10 + 3600));
}

#[test]
fn missing_header_is_missing_credentials() {
    assert_eq!(verifier().verify_authorization(None, NOW), Err(IdentityError::MissingCredentials));
    assert_eq!(verifier().verify_authorization(Some("  "), NOW), Err(IdentityError::MissingCredentials));
}

#[test]
fn basic_auth_is_an_unsupported_scheme() {
    assert_eq!(verifier().verify_authorization(Some("Basic YTpi"), NOW), Err(IdentityError::UnsupportedScheme));
}

#[test]
fn expired_token_is_rejected() {
    let t = token(json!({"tenant": "acme"}));
    assert_eq!(verifier().verify_token(&t, NOW + 3600 + 31), Err(IdentityError::Expired));
    assert!(verifier().verify_token(&t, NOW + 3600 + 10).is_ok(), "within leeway");
}

#[test]
fn token_used_before_nbf_is_rejected() {
    let t = token(json!({"tenant": "acme"}));
    assert_eq!(verifier().verify_token(&t, NOW - 100), Err(IdentityError::NotYetValid));
}

#[test]
fn wrong_secret_fails_the_signature() {
    let t = minted("another-secret-of-length", Some("demo"), "https://auth.example", "fusebox");
    assert_eq!(verifier().verify_token(&t, NOW), Err(IdentityError::BadSignature));
}

#[test]
fn wrong_issuer_and_audience_are_rejected() {
    let t = minted(DEMO_SECRET, None, "https://evil", "fusebox");
    assert_eq!(verifier().verify_token(&t, NOW), Err(IdentityError::WrongIssuer));
    let t = minted(DEMO_SECRET, None, "https://auth.example", "other");
    assert_eq!(verifier().verify_token(&t, NOW), Err(IdentityError::WrongAudience));
}

#[test]
fn tampered_payload_fails_the_signature() {
    let t = token(json!({"tenant": "acme"}));
    let parts: Vec<&str> = t.split('.').collect();
    let forged = Base64UrlSafeNoPadding::encode_to_string(
        serde_json::to_vec(
            &json!({"tenant": "victim", "iss": "https://auth.example", "aud": "fusebox", "exp": NOW + 60}),
        )
        .unwrap(),
    )
    .unwrap();
    let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
    assert_eq!(verifier().verify_token(&tampered, NOW), Err(IdentityError::BadSignature));
}

#[test]
fn alg_none_is_rejected() {
    let header = Base64UrlSafeNoPadding::encode_to_string(br#"{"alg":"none","typ":"JWT"}"#).unwrap();
    let body = Base64UrlSafeNoPadding::encode_to_string(
        serde_json::to_vec(
            &json!({"tenant": "acme", "iss": "https://auth.example", "aud": "fusebox", "exp": NOW + 60}),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(verifier().verify_token(&format!("{header}.{body}."), NOW), Err(IdentityError::UnknownKey));
}

#[test]
fn garbage_is_a_malformed_token() {
    assert_eq!(verifier().verify_token("not.a.jwt", NOW), Err(IdentityError::MalformedToken));
    assert_eq!(verifier().verify_token("%%%", NOW), Err(IdentityError::MalformedToken));
    assert_eq!(verifier().verify_token("", NOW), Err(IdentityError::MalformedToken));
}

#[test]
fn oversized_token_is_rejected_before_parsing() {
    assert_eq!(verifier().verify_token(&"a".repeat(9000), NOW), Err(IdentityError::TokenTooLarge));
}

#[test]
fn missing_or_unsafe_tenant_claims_are_rejected() {
    assert_eq!(verifier().verify_token(&token(json!({"sub": "x"})), NOW), Err(IdentityError::MissingTenant));
    assert_eq!(verifier().verify_token(&token(json!({"tenant": 42})), NOW), Err(IdentityError::InvalidTenant));
    assert_eq!(verifier().verify_token(&token(json!({"tenant": "a\r\nb"})), NOW), Err(IdentityError::InvalidTenant));
}

#[test]
fn unknown_kid_with_only_named_keys_is_an_unknown_key() {
    let t = minted(DEMO_SECRET, Some("rotated-away"), "https://auth.example", "fusebox");
    assert_eq!(verifier().verify_token(&t, NOW), Err(IdentityError::UnknownKey));
}

#[test]
fn token_without_exp_is_rejected() {
    let mut c = claims_for("a");
    c.expires_at = None;
    let t = HS256Key::from_bytes(DEMO_SECRET.as_bytes()).authenticate(c).unwrap();
    assert_eq!(verifier().verify_token(&t, NOW), Err(IdentityError::MissingExpiry));
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/keys").join(name)).unwrap()
}

fn asymmetric_verifier(keys: Value) -> JwtVerifier {
    let cfg: JwtConfig = serde_json::from_value(json!({
        "issuer": "https://auth.example", "audiences": ["fusebox"], "keys": keys
    }))
    .unwrap();
    JwtVerifier::new(&cfg).unwrap()
}

fn claims_for(tenant: &str) -> JWTClaims<Map<String, Value>> {
    let mut c = Claims::with_custom_claims(claims(json!({"tenant": tenant})), Duration::from_secs(600))
        .with_issuer("https://auth.example")
        .with_audience("fusebox");
    c.issued_at = Some(UnixTimeStamp::from_secs(NOW));
    c.invalid_before = Some(UnixTimeStamp::from_secs(NOW));
    c.expires_at = Some(UnixTimeStamp::from_secs(NOW + 600));
    c
}

#[test]
fn rs256_token_verifies_against_the_public_key() {
    let v = asymmetric_verifier(json!([{"alg": "RS256", "kid": "r1", "pem": fixture("rs256-public.pem")}]));
    let pair = RS256KeyPair::from_pem(&fixture("rs256-private.pem")).unwrap().with_key_id("r1");
    let t = pair.sign(claims_for("acme")).unwrap();
    assert_eq!(v.verify_token(&t, NOW).unwrap().tenant, "acme");
}

#[test]
fn a_minted_rs256_token_verifies_against_the_public_key() {
    let v = asymmetric_verifier(json!([{"alg": "RS256", "kid": "r1", "pem": fixture("rs256-public.pem")}]));
    let private = fixture("rs256-private.pem");
    let t = mint(
        MintKey::Rs256Pem(&private),
        Some("r1"),
        "https://auth.example",
        "fusebox",
        claims(json!({"tenant": "acme"})),
        NOW,
        600,
    )
    .unwrap();
    assert_eq!(v.verify_token(&t, NOW).unwrap().tenant, "acme");
    assert!(mint(MintKey::Rs256Pem("not a key"), None, "i", "a", claims(json!({})), NOW, 60).is_err());
}

#[test]
fn es256_token_verifies_against_the_public_key() {
    let v = asymmetric_verifier(json!([{"alg": "ES256", "pem": fixture("es256-public.pem")}]));
    let pair = ES256KeyPair::from_pem(&fixture("es256-private.pem")).unwrap();
    let t = pair.sign(claims_for("globex")).unwrap();
    assert_eq!(v.verify_token(&t, NOW).unwrap().tenant, "globex");
}

#[test]
fn hs256_token_keyed_with_the_rsa_public_key_is_refused() {
    // Algorithm confusion: the attacker uses the (public) RSA key bytes as an HMAC secret.
    let public = fixture("rs256-public.pem");
    let forged = HS256Key::from_bytes(public.as_bytes()).with_key_id("r1").authenticate(claims_for("victim")).unwrap();
    let rsa_only = asymmetric_verifier(json!([{"alg": "RS256", "kid": "r1", "pem": public}]));
    assert_eq!(rsa_only.verify_token(&forged, NOW), Err(IdentityError::UnknownKey));
    let mixed = asymmetric_verifier(json!([
        {"alg": "RS256", "kid": "r1", "pem": public},
        {"alg": "HS256", "secret": DEMO_SECRET}
    ]));
    assert_eq!(mixed.verify_token(&forged, NOW), Err(IdentityError::BadSignature));
}

#[test]
fn es256_token_signed_by_another_key_fails_the_signature() {
    let v = asymmetric_verifier(json!([{"alg": "ES256", "pem": fixture("es256-public.pem")}]));
    let other = ES256KeyPair::generate();
    assert_eq!(v.verify_token(&other.sign(claims_for("acme")).unwrap(), NOW), Err(IdentityError::BadSignature));
}

#[test]
fn a_key_that_is_not_a_public_key_is_refused_at_policy_load() {
    let cfg: JwtConfig = serde_json::from_value(json!({
        "issuer": "i", "audiences": ["a"], "keys": [{"alg": "RS256", "pem": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}]
    }))
    .unwrap();
    let err = JwtVerifier::new(&cfg).unwrap_err();
    assert_eq!(err.field, "identity.jwt.keys[0]");
}

#[test]
fn jwks_keys_verify_by_kid_and_a_rotated_out_kid_is_unknown() {
    let rsa = RS256KeyPair::from_pem(&fixture("rs256-private.pem")).unwrap().with_key_id("2024-a");
    let ec = ES256KeyPair::from_pem(&fixture("es256-private.pem")).unwrap().with_key_id("2024-b");
    let mut rsa_jwk: Value = serde_json::from_str(&rsa.public_key().to_jwk()).unwrap();
    rsa_jwk["kid"] = json!("2024-a");
    let mut ec_jwk: Value = serde_json::from_str(&ec.public_key().to_jwk()).unwrap();
    ec_jwk["kid"] = json!("2024-b");
    let cfg: JwtConfig = serde_json::from_value(json!({
        "issuer": "https://auth.example", "audiences": ["fusebox"], "jwks": {"keys": [rsa_jwk, ec_jwk]}
    }))
    .unwrap();
    let v = JwtVerifier::new(&cfg).unwrap();
    assert_eq!(v.verify_token(&rsa.sign(claims_for("acme")).unwrap(), NOW).unwrap().tenant, "acme");
    assert_eq!(v.verify_token(&ec.sign(claims_for("globex")).unwrap(), NOW).unwrap().tenant, "globex");
    let retired = RS256KeyPair::from_pem(&fixture("rs256-private.pem")).unwrap().with_key_id("2023-z");
    assert_eq!(v.verify_token(&retired.sign(claims_for("acme")).unwrap(), NOW), Err(IdentityError::UnknownKey));
}

#[test]
fn a_bad_jwk_is_refused_naming_its_index() {
    let cfg: JwtConfig = serde_json::from_value(json!({
        "issuer": "i", "audiences": ["a"], "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}
    }))
    .unwrap();
    assert_eq!(JwtVerifier::new(&cfg).unwrap_err().field, "identity.jwt.jwks.keys[0]");
}

fn full_verifier(extra: Value) -> Verifier {
    let mut identity = json!({
        "jwt": {"issuer": "https://auth.example", "audiences": ["fusebox"],
                "keys": [{"alg": "HS256", "kid": "demo", "secret": DEMO_SECRET}]},
        "api_keys": [{"sha256": hex(&sha256(b"sk-live-acme-0001")), "tenant": "acme", "tier": "pro", "name": "ci"}]
    });
    identity.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    Verifier::new(&serde_json::from_value(identity).unwrap()).unwrap()
}

#[test]
fn api_key_in_x_api_key_or_bearer_identifies_its_tenant() {
    let v = full_verifier(json!({}));
    let mut cache = TokenCache::new(8);
    let by_header = Credentials { api_key: Some("sk-live-acme-0001"), ..Credentials::default() };
    let id = v.identify(&by_header, &mut cache, NOW).unwrap();
    assert_eq!((id.tenant.as_str(), id.tier.as_deref(), id.source), ("acme", Some("pro"), Source::ApiKey));
    let by_bearer = Credentials { authorization: Some("Bearer sk-live-acme-0001"), ..Credentials::default() };
    assert_eq!(v.identify(&by_bearer, &mut cache, NOW).unwrap().tenant, "acme");
    let wrong = Credentials { api_key: Some("sk-live-acme-0002"), ..Credentials::default() };
    assert_eq!(v.identify(&wrong, &mut cache, NOW), Err(IdentityError::UnknownApiKey));
}

#[test]
fn a_known_api_key_is_remembered_in_its_own_key_space_and_unknown_ones_are_not() {
    let v = full_verifier(json!({}));
    let mut cache = TokenCache::new(8);
    let key = Credentials { api_key: Some(" sk-live-acme-0001 "), ..Credentials::default() };
    let first = v.identify(&key, &mut cache, NOW).unwrap();
    assert_eq!((cache.api_keys(), cache.len()), (1, 0), "kept as an API key, not as a verified JWT");
    assert_eq!(v.identify(&key, &mut cache, NOW).unwrap(), first, "the same identity from the cache");
    for i in 0..100 {
        let forged = format!("sk-forged-{i}");
        let c = Credentials { api_key: Some(&forged), ..Credentials::default() };
        assert_eq!(v.identify(&c, &mut cache, NOW), Err(IdentityError::UnknownApiKey));
    }
    assert_eq!(cache.api_keys(), 1, "inventing keys fills nothing");
    // A key a policy no longer lists is unknown with that policy's verifier and a new cache.
    let without = Verifier::new(&serde_json::from_value(json!({"api_keys": []})).unwrap()).unwrap();
    assert!(without.identify(&key, &mut TokenCache::new(8), NOW).is_err());
}

#[test]
fn bearer_jwt_still_works_next_to_api_keys() {
    let v = full_verifier(json!({}));
    let t = token(json!({"tenant": "globex"}));
    let c = Credentials { authorization: Some(&format!("Bearer {t}")), ..Credentials::default() };
    let id = v.identify(&c, &mut TokenCache::new(8), NOW).unwrap();
    assert_eq!((id.tenant.as_str(), id.source), ("globex", Source::Jwt));
}

#[test]
fn envoy_jwt_authn_payload_is_used_only_when_configured() {
    let env = EnvoyJwt { tenant: Some("initech".into()), tier: None, scopes: Vec::new() };
    let c = Credentials { envoy_jwt: Some(env.clone()), ..Credentials::default() };
    let without = full_verifier(json!({}));
    assert_eq!(without.identify(&c, &mut TokenCache::new(8), NOW), Err(IdentityError::MissingCredentials));
    let with = full_verifier(json!({"jwt_authn": {}}));
    let id = with.identify(&c, &mut TokenCache::new(8), NOW).unwrap();
    assert_eq!((id.tenant.as_str(), id.source), ("initech", Source::EnvoyJwtAuthn));
    let bad = Credentials {
        envoy_jwt: Some(EnvoyJwt { tenant: Some("a b".into()), tier: None, scopes: Vec::new() }),
        ..Credentials::default()
    };
    assert_eq!(with.identify(&bad, &mut TokenCache::new(8), NOW), Err(IdentityError::InvalidTenant));
}

#[test]
fn cached_tokens_skip_verification_until_they_expire() {
    let v = full_verifier(json!({}));
    let mut cache = TokenCache::new(8);
    let t = token(json!({"tenant": "acme"}));
    let auth = format!("Bearer {t}");
    let c = Credentials { authorization: Some(&auth), ..Credentials::default() };
    v.identify(&c, &mut cache, NOW).unwrap();
    assert_eq!(cache.len(), 1);
    assert!(cache.get(&TokenKey::of(&t), NOW).is_some());
    // exp = NOW - 10 + 3600, plus 30 s leeway: gone after that, and then refused.
    assert!(cache.get(&TokenKey::of(&t), NOW - 10 + 3600 + 31).is_none());
    assert_eq!(v.identify(&c, &mut cache, NOW + 3700), Err(IdentityError::Expired));
}

#[test]
fn the_token_cache_stays_bounded() {
    let mut cache = TokenCache::new(4);
    let id = Identity { tenant: "t".into(), tier: None, expires_at_s: None, source: Source::Jwt, scopes: Vec::new() };
    for i in 0..100u8 {
        cache.insert(&TokenKey::of(&format!("token-{i}")), id.clone(), u64::MAX);
        assert!(cache.len() <= 8);
    }
    assert!(cache.get(&TokenKey::of("token-99"), 0).is_some());
    assert!(cache.get(&TokenKey::of("token-0"), 0).is_none());
}

#[test]
fn a_cached_token_is_found_only_by_the_very_same_token() {
    let mut cache = TokenCache::new(8);
    let id = Identity { tenant: "t".into(), tier: None, expires_at_s: None, source: Source::Jwt, scopes: Vec::new() };
    let t = token(json!({"tenant": "t"}));
    cache.insert(&TokenKey::of(&t), id, u64::MAX);
    assert!(cache.get(&TokenKey::of(&t), 0).is_some());
    let mut flipped = t.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(cache.get(&TokenKey::of(std::str::from_utf8(&flipped).unwrap()), 0).is_none());
    assert!(cache.get(&TokenKey::of(&t[..t.len() - 1]), 0).is_none(), "a prefix is not the token");
}

#[test]
fn a_long_token_is_kept_by_its_digest_so_entries_stay_small() {
    let long = "x".repeat(MAX_INLINE_TOKEN + 1);
    let other = format!("{}y", "x".repeat(MAX_INLINE_TOKEN));
    assert_ne!(TokenKey::of(&long), TokenKey::of(&other));
    assert_eq!(TokenKey::of(&long), TokenKey::of(&long.clone()));
    assert_ne!(TokenKey::of(&long), TokenKey::of(&"x".repeat(MAX_INLINE_TOKEN)));
    let mut cache = TokenCache::new(8);
    let id = Identity { tenant: "t".into(), tier: None, expires_at_s: None, source: Source::Jwt, scopes: Vec::new() };
    cache.insert(&TokenKey::of(&long), id, u64::MAX);
    assert!(cache.get(&TokenKey::of(&long), 0).is_some());
    assert!(cache.get(&TokenKey::of(&other), 0).is_none());
}

#[test]
fn tokens_near_the_inline_limit_cannot_hold_more_than_two_generations_of_bytes() {
    // 4 096 entries allowed, but 2 KiB tokens fill a generation's 2 MiB after 1 024.
    let mut cache = TokenCache::new(4096);
    let id = Identity { tenant: "t".into(), tier: None, expires_at_s: None, source: Source::Jwt, scopes: Vec::new() };
    for i in 0..5000 {
        let t = format!("{i:0>width$}", width = MAX_INLINE_TOKEN);
        cache.insert(&TokenKey::of(&t), id.clone(), u64::MAX);
    }
    assert!(cache.len() <= 2 * 1024, "{} entries of 2 KiB", cache.len());
    assert!(cache.get(&TokenKey::of(&format!("{:0>width$}", 4999, width = MAX_INLINE_TOKEN)), 0).is_some());
}

#[test]
fn a_token_that_expires_further_ahead_than_the_maximum_lifetime_is_refused() {
    let long = |valid_for_s: u64| {
        mint(
            MintKey::Hs256(DEMO_SECRET),
            Some("demo"),
            "https://auth.example",
            "fusebox",
            claims(json!({"tenant": "a"})),
            NOW,
            valid_for_s,
        )
        .unwrap()
    };
    assert_eq!(verifier().verify_token(&long(10 * 365 * 86_400), NOW), Err(IdentityError::LifetimeTooLong));
    assert_eq!(IdentityError::LifetimeTooLong.code(), "token_lifetime_too_long");
    assert!(verifier().verify_token(&long(86_400), NOW).is_ok(), "a day is the default maximum");
    // The limit is on what is left of the token, so an old long-lived token ages into it.
    assert!(verifier().verify_token(&long(2 * 86_400), NOW + 86_400).is_ok());
}

#[test]
fn the_maximum_lifetime_is_configurable_within_bounds() {
    let p = Policy::from_json(
        policy_json("")
            .replace(r#""audiences": ["fusebox"],"#, r#""audiences": ["fusebox"], "max_lifetime_s": 600,"#)
            .as_bytes(),
    )
    .unwrap();
    let v = JwtVerifier::new(p.identity.jwt.as_ref().unwrap()).unwrap();
    let hour = mint(
        MintKey::Hs256(DEMO_SECRET),
        None,
        "https://auth.example",
        "fusebox",
        claims(json!({"tenant": "a"})),
        NOW,
        3600,
    )
    .unwrap();
    assert_eq!(v.verify_token(&hour, NOW), Err(IdentityError::LifetimeTooLong));
    let bad =
        policy_json("").replace(r#""audiences": ["fusebox"],"#, r#""audiences": ["fusebox"], "max_lifetime_s": 0,"#);
    assert_eq!(Policy::from_json(bad.as_bytes()).unwrap_err().field, "identity.jwt.max_lifetime_s");
}

#[test]
fn a_token_that_failed_is_refused_from_the_cache_for_a_minute_and_checked_again_after() {
    let p = Policy::from_json(policy_json("").as_bytes()).unwrap();
    let v = Verifier::new(&p.identity).unwrap();
    let forged = minted("another-secret-of-length", Some("demo"), "https://auth.example", "fusebox");
    let c = Credentials { authorization: Some(&format!("Bearer {forged}")), ..Credentials::default() };
    let mut cache = TokenCache::new(8);
    assert_eq!(v.identify(&c, &mut cache, NOW), Err(IdentityError::BadSignature));
    assert_eq!(cache.failures(), 1);
    assert_eq!(cache.failure(&TokenKey::of(&forged), NOW + 59), Some(IdentityError::BadSignature));
    assert_eq!(v.identify(&c, &mut cache, NOW + 30), Err(IdentityError::BadSignature));
    assert_eq!(cache.failure(&TokenKey::of(&forged), NOW + 61), None, "forgotten after a minute");
    assert!(cache.is_empty(), "nothing was verified");
}

#[test]
fn a_token_used_before_its_nbf_is_not_remembered_as_failed() {
    let p = Policy::from_json(policy_json("").as_bytes()).unwrap();
    let v = Verifier::new(&p.identity).unwrap();
    let t = token(json!({"tenant": "acme"}));
    let c = Credentials { authorization: Some(&format!("Bearer {t}")), ..Credentials::default() };
    let mut cache = TokenCache::new(8);
    assert_eq!(v.identify(&c, &mut cache, NOW - 100), Err(IdentityError::NotYetValid));
    assert_eq!(cache.failures(), 0);
    assert!(v.identify(&c, &mut cache, NOW).is_ok(), "valid once its nbf has come");
}

#[test]
fn a_bearer_jwt_wins_over_a_provider_style_api_key_header() {
    let v = full_verifier(json!({}));
    let t = token(json!({"tenant": "globex"}));
    let auth = format!("Bearer {t}");
    // The Anthropic SDK (and litellm's anthropic route) always send an `x-api-key`.
    let c = Credentials { authorization: Some(&auth), api_key: Some("sk-ant-provider-key"), ..Credentials::default() };
    let id = v.identify(&c, &mut TokenCache::new(8), NOW).unwrap();
    assert_eq!((id.tenant.as_str(), id.source), ("globex", Source::Jwt));
    // Without a JWT, the API key header is the credential, and an unknown one is refused.
    let c = Credentials { api_key: Some("sk-ant-provider-key"), ..Credentials::default() };
    assert_eq!(v.identify(&c, &mut TokenCache::new(8), NOW), Err(IdentityError::UnknownApiKey));
}

/// A policy with scopes org (claim `org_id`) and team, and a key placed in both.
fn scoped_policy() -> Policy {
    let key = hex(&sha256(b"sk-live-ml-0001"));
    Policy::from_json(
        json!({
            "identity": {
                "jwt": {"issuer": "https://auth.example", "audiences": ["fusebox"],
                        "keys": [{"alg": "HS256", "kid": "demo", "secret": DEMO_SECRET}]},
                "api_keys": [{"sha256": key, "tenant": "acme", "scopes": {"org": "initech", "team": "ml"}}]
            },
            "scopes": {"org": {"claim": "org_id", "limits": {"tokens_60s": 1000}}, "team": {}}
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

fn memberships(id: &Identity) -> Vec<(&str, &str)> {
    id.scopes.iter().map(|m| (m.scope.as_str(), m.value.as_str())).collect()
}

#[test]
fn scopes_come_from_the_configured_claims_and_from_the_api_keys_entry() {
    let v = scoped_policy().verifier().unwrap();
    let mut cache = TokenCache::new(8);
    let t = token(json!({"tenant": "globex", "org_id": "initech", "team": "search"}));
    let c = Credentials { authorization: Some(&format!("Bearer {t}")), ..Credentials::default() };
    assert_eq!(memberships(&v.identify(&c, &mut cache, NOW).unwrap()), [("org", "initech"), ("team", "search")]);
    // A claim the token does not carry is a scope it is not in.
    let t = token(json!({"tenant": "globex", "org_id": "initech"}));
    let c = Credentials { authorization: Some(&format!("Bearer {t}")), ..Credentials::default() };
    assert_eq!(memberships(&v.identify(&c, &mut cache, NOW).unwrap()), [("org", "initech")]);
    let key = Credentials { api_key: Some("sk-live-ml-0001"), ..Credentials::default() };
    assert_eq!(memberships(&v.identify(&key, &mut cache, NOW).unwrap()), [("org", "initech"), ("team", "ml")]);
}

#[test]
fn a_scope_claim_that_is_not_a_valid_id_refuses_the_token() {
    let v = scoped_policy().verifier().unwrap();
    for bad in [json!("two words"), json!(7), json!(["initech"])] {
        let t = token(json!({"tenant": "globex", "org_id": bad}));
        let c = Credentials { authorization: Some(&format!("Bearer {t}")), ..Credentials::default() };
        assert_eq!(v.identify(&c, &mut TokenCache::new(8), NOW), Err(IdentityError::InvalidScope), "{bad}");
    }
}

#[test]
fn a_key_placed_in_an_undefined_scope_is_refused_at_policy_load() {
    let key = hex(&sha256(b"k"));
    let json = json!({"identity": {"api_keys": [{"sha256": key, "tenant": "acme", "scopes": {"division": "x"}}]}});
    let err = Policy::from_json(json.to_string().as_bytes()).unwrap_err();
    assert_eq!(err.field, "identity.api_keys[0].scopes.division");
    let err = Policy::from_json(br#"{"identity": {"api_keys": []}, "scopes": {"tenant": {}}}"#).unwrap_err();
    assert_eq!(err.field, "scopes.tenant");
}
