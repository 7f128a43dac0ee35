//! HS256 tokens are checked by fusebox itself (`compact.rs`); these tests hold that check to
//! jwt-simple's, which verified them before: over every combination of header, claims and
//! signature below, both accept the same tokens and refuse the others for the same reason.

use super::*;
use ct_codecs::{Base64UrlSafeNoPadding, Encoder};
use jwt_simple::prelude::*;
use serde_json::{json, Map, Value};

const NOW: u64 = 1_800_000_000;
const SECRET: &str = "differential-secret-0123";
const ISSUER: &str = "https://auth.example";

fn ours() -> JwtVerifier {
    let cfg: JwtConfig = serde_json::from_value(json!({
        "issuer": ISSUER, "audiences": ["fusebox", "other-api"],
        "keys": [{"alg": "HS256", "kid": "k1", "secret": SECRET}]
    }))
    .unwrap();
    JwtVerifier::new(&cfg).unwrap()
}

/// What jwt-simple decides, followed by the checks fusebox adds (an `exp` required and at most
/// a day ahead, a valid tenant): the verification fusebox did before it checked HS256 itself.
fn reference(token: &str) -> Result<String, IdentityError> {
    let header = Token::decode_metadata(token).map_err(|_| IdentityError::MalformedToken)?;
    if header.algorithm() != "HS256" {
        return Err(IdentityError::UnknownKey);
    }
    if header.key_id().is_some_and(|k| k != "k1") {
        return Err(IdentityError::UnknownKey);
    }
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from([ISSUER.to_string()])),
        allowed_audiences: Some(HashSet::from(["fusebox".to_string(), "other-api".to_string()])),
        time_tolerance: Some(Duration::from_secs(30)),
        max_token_length: Some(8192),
        artificial_time: Some(UnixTimeStamp::from_secs(NOW)),
        ..VerificationOptions::default()
    };
    let key = HS256Key::from_bytes(SECRET.as_bytes());
    let claims = key.verify_token::<Map<String, Value>>(token, Some(options)).map_err(|e| super::jwt::map_error(&e))?;
    let exp = claims.expires_at.ok_or(IdentityError::MissingExpiry)?.as_secs();
    if exp.saturating_sub(NOW) > 86_400 + 30 {
        return Err(IdentityError::LifetimeTooLong);
    }
    match claims.custom.get("tenant") {
        Some(Value::String(t)) => Ok(t.clone()),
        _ => Err(IdentityError::MissingTenant),
    }
}

fn b64(bytes: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
}

fn token(header: &Value, claims: &Value, secret: &str, signature: Signature) -> String {
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let mut tag = hmac_sha256::HMAC::mac(input.as_bytes(), secret.as_bytes()).to_vec();
    match signature {
        Signature::Whole => {}
        Signature::Flipped => tag[7] ^= 0x20,
        Signature::Short => tag.truncate(31),
    }
    format!("{input}.{}", b64(&tag))
}

#[derive(Clone, Copy, Debug)]
enum Signature {
    Whole,
    Flipped,
    Short,
}

fn headers() -> Vec<Value> {
    vec![
        json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}),
        json!({"alg": "HS256"}),
        json!({"alg": "HS256", "typ": "at+jwt"}),
        json!({"alg": "HS256", "typ": "JOSE"}),
        json!({"alg": "HS256", "crit": ["exp"]}),
        json!({"alg": "HS256", "crit": []}),
        json!({"alg": "HS256", "kid": "k2"}),
        json!({"alg": "none"}),
        json!({"alg": "RS256", "kid": "k1"}),
        json!({"typ": "JWT"}),
    ]
}

/// Each claim set varies one claim of a valid token (or leaves it valid).
fn claim_sets() -> Vec<Value> {
    let valid =
        json!({"iss": ISSUER, "aud": "fusebox", "exp": NOW + 600, "iat": NOW - 5, "nbf": NOW - 5, "tenant": "acme"});
    let with = |k: &str, v: Value| {
        let mut c = valid.clone();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = valid.clone();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let mut sets = vec![valid.clone()];
    for (k, values) in [
        ("iss", vec![json!("https://evil.example"), json!(7)]),
        ("aud", vec![json!("nope"), json!(["x", "other-api"]), json!(["x", "y"]), json!([]), json!(3)]),
        ("exp", vec![json!(NOW - 31), json!(NOW - 29), json!(NOW + 86_400), json!(NOW + 90_000), json!(1.8e9 + 600.5)]),
        ("exp", vec![json!("soon"), json!(-1)]),
        ("nbf", vec![json!(NOW + 29), json!(NOW + 31), json!(-5)]),
        ("iat", vec![json!(NOW + 29), json!(NOW + 31)]),
        ("tenant", vec![json!(42)]),
    ] {
        sets.extend(values.into_iter().map(|v| with(k, v)));
    }
    sets.extend(["iss", "aud", "exp", "nbf", "iat", "tenant"].map(without));
    sets
}

#[test]
fn hs256_tokens_are_accepted_and_refused_as_jwt_simple_decides() {
    let verifier = ours();
    let mut compared = 0;
    let mut accepted = 0;
    for header in headers() {
        for claims in claim_sets() {
            for (secret, signature) in [
                (SECRET, Signature::Whole),
                ("another-secret-entirely", Signature::Whole),
                (SECRET, Signature::Flipped),
                (SECRET, Signature::Short),
            ] {
                let t = token(&header, &claims, secret, signature);
                let ours = verifier.verify_token(&t, NOW).map(|id| id.tenant);
                let theirs = reference(&t);
                // A claim of the wrong type is an unreadable token to jwt-simple, which reads
                // claims into typed fields; fusebox reads it as a claim that does not match.
                let typed = matches!(theirs, Err(IdentityError::MalformedToken))
                    && matches!(
                        ours,
                        Err(IdentityError::WrongIssuer | IdentityError::WrongAudience | IdentityError::InvalidTenant)
                    );
                let tenant_kind =
                    theirs == Err(IdentityError::MissingTenant) && ours == Err(IdentityError::InvalidTenant);
                assert!(
                    ours == theirs || typed || tenant_kind,
                    "header {header} claims {claims} {signature:?} with {secret}: ours {ours:?}, jwt-simple {theirs:?}"
                );
                compared += 1;
                accepted += usize::from(ours.is_ok());
            }
        }
    }
    assert!(accepted >= 20, "only {accepted} of {compared} tokens were valid: the sets do not cover acceptance");
    assert!(compared - accepted >= compared / 2, "most combinations must be refused");
}

#[test]
fn a_token_any_of_whose_three_parts_is_changed_is_refused() {
    let verifier = ours();
    let claims = json!({"iss": ISSUER, "aud": "fusebox", "exp": NOW + 600, "tenant": "acme"});
    let t = token(&json!({"alg": "HS256"}), &claims, SECRET, Signature::Whole);
    assert!(verifier.verify_token(&t, NOW).is_ok());
    for i in 0..t.len() {
        let mut bytes = t.clone().into_bytes();
        if bytes[i] == b'.' {
            continue;
        }
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(bytes).unwrap();
        // A change in a base64 character's unused low bits can leave the decoded bytes as
        // they were (jwt-simple accepts those too); anything else must fail.
        if let Ok(id) = verifier.verify_token(&changed, NOW) {
            assert_eq!(reference(&changed), Ok(id.tenant), "byte {i} changed yet accepted: {changed}");
        }
    }
}

#[test]
fn a_registered_claim_such_as_sub_can_name_the_tenant() {
    let cfg: JwtConfig = serde_json::from_value(json!({
        "issuer": ISSUER, "audiences": ["fusebox"], "tenant_claim": "sub",
        "keys": [{"alg": "HS256", "secret": SECRET}]
    }))
    .unwrap();
    let claims = json!({"iss": ISSUER, "aud": "fusebox", "exp": NOW + 600, "sub": "user-7"});
    let t = token(&json!({"alg": "HS256"}), &claims, SECRET, Signature::Whole);
    assert_eq!(JwtVerifier::new(&cfg).unwrap().verify_token(&t, NOW).map(|id| id.tenant), Ok("user-7".into()));
}

#[test]
fn a_scope_can_be_read_from_sub_as_the_configuration_example_does() {
    let mut verifier = ours();
    verifier.set_scope_claims(vec![("user".into(), "sub".into())]);
    let claims = json!({"iss": ISSUER, "aud": "fusebox", "exp": NOW + 600, "tenant": "acme", "sub": "user-7"});
    let t = token(&json!({"alg": "HS256"}), &claims, SECRET, Signature::Whole);
    let id = verifier.verify_token(&t, NOW).unwrap();
    assert_eq!(id.scopes, vec![Membership { scope: "user".into(), value: "user-7".into() }]);
}
