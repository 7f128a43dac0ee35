//! A compact JWT taken apart once: its header read, its signing input and signature split off,
//! its payload decoded on demand. HS256 is checked here directly (a keyed HMAC state cloned per
//! token, one pass over the signing input): on a token-cache miss that is most of the cost, and
//! a general JWT library decodes the header twice and builds option sets per token.

use super::error::IdentityError;
use ct_codecs::{Base64UrlSafeNoPadding, Decoder};
use serde::Deserialize;
use serde_json::{Map, Value};

/// A header longer than this (base64url) is refused before it is decoded.
const MAX_HEADER_B64: usize = 8192;

/// The header fields verification looks at; others are ignored.
#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    /// Critical extensions: none is understood, so any listed one refuses the token.
    #[serde(default)]
    crit: Option<Vec<String>>,
}

/// A compact JWT (`header.payload.signature`), split and its header checked.
#[derive(Debug)]
pub struct Compact<'a> {
    header: Header,
    /// `header.payload`, what the signature covers.
    signed: &'a str,
    payload_b64: &'a str,
    signature_b64: &'a str,
}

fn decode(b64: &str) -> Result<Vec<u8>, IdentityError> {
    Base64UrlSafeNoPadding::decode_to_vec(b64, None).map_err(|_| IdentityError::MalformedToken)
}

impl<'a> Compact<'a> {
    pub fn parse(token: &'a str) -> Result<Compact<'a>, IdentityError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(IdentityError::MalformedToken);
        };
        if header_b64.len() > MAX_HEADER_B64 {
            return Err(IdentityError::MalformedToken);
        }
        let header: Header = serde_json::from_slice(&decode(header_b64)?).map_err(|_| IdentityError::MalformedToken)?;
        if header.crit.as_ref().is_some_and(|c| !c.is_empty()) {
            return Err(IdentityError::MalformedToken);
        }
        // A `typ`, when given, must say JWT (`JWT`, or a `+jwt` media type such as `at+jwt`).
        if let Some(typ) = &header.typ {
            let typ = typ.to_ascii_uppercase();
            if typ != "JWT" && !typ.ends_with("+JWT") {
                return Err(IdentityError::MalformedToken);
            }
        }
        let signed = token.get(..header_b64.len() + 1 + payload_b64.len()).ok_or(IdentityError::MalformedToken)?;
        Ok(Compact { header, signed, payload_b64, signature_b64 })
    }

    pub fn alg(&self) -> &str {
        &self.header.alg
    }

    pub fn kid(&self) -> Option<&str> {
        self.header.kid.as_deref()
    }

    /// The payload's claims, every one of them (registered and custom alike).
    pub fn claims(&self) -> Result<Map<String, Value>, IdentityError> {
        serde_json::from_slice(&decode(self.payload_b64)?).map_err(|_| IdentityError::MalformedToken)
    }

    /// Whether the signature is this key's HMAC-SHA256 of the signing input (compared in
    /// constant time).
    pub fn hs256_signed_by(&self, key: &Hs256Key) -> Result<bool, IdentityError> {
        let signature = decode(self.signature_b64)?;
        let Ok(tag) = <[u8; 32]>::try_from(signature.as_slice()) else { return Ok(false) };
        let mut mac = key.0.clone();
        mac.update(self.signed.as_bytes());
        Ok(mac.finalize_verify(&tag))
    }
}

/// An HS256 secret, kept as the HMAC state after the key is absorbed.
#[derive(Clone)]
pub struct Hs256Key(hmac_sha256::HMAC);

impl Hs256Key {
    pub fn new(secret: &[u8]) -> Hs256Key {
        Hs256Key(hmac_sha256::HMAC::new(secret))
    }
}

impl std::fmt::Debug for Hs256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hs256Key(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ct_codecs::Encoder;

    fn b64(bytes: &[u8]) -> String {
        Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
    }

    fn signed(header: &str, payload: &str, secret: &[u8]) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let tag = hmac_sha256::HMAC::mac(input.as_bytes(), secret);
        format!("{input}.{}", b64(&tag))
    }

    #[test]
    fn a_token_signed_with_the_key_verifies_and_one_signed_with_another_does_not() {
        let token = signed(r#"{"alg":"HS256","typ":"JWT"}"#, r#"{"tenant":"acme"}"#, b"twelve-bytes-or-more");
        let c = Compact::parse(&token).unwrap();
        assert_eq!(c.alg(), "HS256");
        assert_eq!(c.hs256_signed_by(&Hs256Key::new(b"twelve-bytes-or-more")), Ok(true));
        assert_eq!(c.hs256_signed_by(&Hs256Key::new(b"another-secret-here")), Ok(false));
        assert_eq!(c.claims().unwrap().get("tenant"), Some(&Value::from("acme")));
    }

    #[test]
    fn a_changed_payload_or_a_short_signature_fails_the_check() {
        let token = signed(r#"{"alg":"HS256"}"#, r#"{"tenant":"acme"}"#, b"twelve-bytes-or-more");
        let key = Hs256Key::new(b"twelve-bytes-or-more");
        let (head, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged = format!("{head}.{}.{sig}", b64(br#"{"tenant":"evil"}"#));
        assert_eq!(Compact::parse(&forged).unwrap().hs256_signed_by(&key), Ok(false));
        let short = format!("{}.{}", &token[..token.rfind('.').unwrap()], b64(&[1, 2, 3]));
        assert_eq!(Compact::parse(&short).unwrap().hs256_signed_by(&key), Ok(false));
    }

    #[test]
    fn a_token_without_three_parts_or_with_an_unreadable_header_is_malformed() {
        for bad in ["", "a.b", "a.b.c.d", "!!!.e30.sig", &format!("{}.e30.", b64(b"not json"))] {
            assert_eq!(Compact::parse(bad).err(), Some(IdentityError::MalformedToken), "{bad}");
        }
    }

    #[test]
    fn a_critical_extension_or_a_type_other_than_jwt_is_refused() {
        let key = b"twelve-bytes-or-more";
        for header in [r#"{"alg":"HS256","crit":["exp"]}"#, r#"{"alg":"HS256","typ":"JWE"}"#] {
            let token = signed(header, "{}", key);
            assert_eq!(Compact::parse(&token).err(), Some(IdentityError::MalformedToken), "{header}");
        }
        for header in
            [r#"{"alg":"HS256","typ":"jwt"}"#, r#"{"alg":"HS256","typ":"at+jwt"}"#, r#"{"alg":"HS256","crit":[]}"#]
        {
            assert!(Compact::parse(&signed(header, "{}", key)).is_ok(), "{header}");
        }
    }
}
