//! The shapes of the names fusebox accepts: tenant ids and tier names end up in headers,
//! shared-data keys, metrics and logs, so only safe characters pass.

pub const MAX_TENANT_LEN: usize = 128;

/// True for ids that are safe in headers, shared-data keys and logs.
pub fn is_valid_tenant_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_TENANT_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@'))
}

pub(crate) fn is_valid_tier_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 32 && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_restricted_to_safe_characters() {
        assert!(is_valid_tenant_id("acme-corp_1.eu:team@x"));
        assert!(!is_valid_tenant_id(""));
        assert!(!is_valid_tenant_id("a b"));
        assert!(!is_valid_tenant_id("a\r\nx-evil: 1"));
        assert!(!is_valid_tenant_id(&"a".repeat(129)));
    }

    #[test]
    fn tier_names_are_short_and_plain() {
        assert!(is_valid_tier_name("embeddings-v2_eu"));
        assert!(!is_valid_tier_name(""));
        assert!(!is_valid_tier_name("a.b"));
        assert!(!is_valid_tier_name(&"t".repeat(33)));
    }
}
