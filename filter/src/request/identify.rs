//! Who a request is: the tenant from verified credentials (never from a client-sent header),
//! and the agent run it belongs to.

use crate::active::ActivePolicy;
use crate::host;
use fusebox_engine::config::CredentialHeaders;
use fusebox_engine::identity::{Credentials, EnvoyJwt, Identity};
use fusebox_engine::reply::{self, Reply};
use fusebox_engine::run::is_valid_run_id;

/// Identifies a request from its headers (and, for `jwt_authn`, Envoy's metadata).
pub fn identify(
    active: &ActivePolicy,
    names: &CredentialHeaders,
    headers: &host::Headers,
    now_ms: u64,
) -> Result<Identity, Reply> {
    let verifier = &active.verifier;
    let authorization = headers.get(&names.authorization);
    let api_key = verifier.accepts_api_keys().then(|| headers.get(&names.api_key)).flatten();
    let envoy_jwt = verifier.jwt_authn().and_then(|cfg| {
        let claim =
            |name: &str| host::property_string(&["metadata", "filter_metadata", &cfg.filter, &cfg.payload_key, name]);
        let tenant = claim(&cfg.tenant_claim);
        // Without a tenant there is no verified payload here (jwt_authn did not run or found no token).
        tenant.as_ref()?;
        let tier = cfg.tier_claim.as_deref().and_then(claim);
        let scopes =
            verifier.scope_claims().iter().filter_map(|(scope, name)| Some((scope.clone(), claim(name)?))).collect();
        Some(EnvoyJwt { tenant, tier, scopes })
    });
    let credentials = Credentials { authorization: authorization.as_deref(), api_key: api_key.as_deref(), envoy_jwt };
    let mut cache = active.token_cache.borrow_mut();
    verifier.identify(&credentials, &mut cache, now_ms / 1000).map_err(reply::invalid_identity)
}

/// `x-agent-run-id` and `x-agent-parent-run-id` of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunHeaders {
    pub run_id: String,
    pub parent: Option<String>,
}

impl RunHeaders {
    /// Checks the run headers' values; `None` when the request names no run.
    pub fn parse(run_id: Option<&str>, parent: Option<&str>) -> Result<Option<RunHeaders>, Reply> {
        let Some(run_id) = run_id else { return Ok(None) };
        let bad = |name: &str| {
            reply::bad_request("invalid_run_id", &format!("{name} must be 1-128 characters of [A-Za-z0-9-_.:@]"))
        };
        if !is_valid_run_id(run_id) {
            return Err(bad("x-agent-run-id"));
        }
        if parent.is_some_and(|p| !is_valid_run_id(p)) {
            return Err(bad("x-agent-parent-run-id"));
        }
        Ok(Some(RunHeaders { run_id: run_id.to_string(), parent: parent.map(str::to_string) }))
    }

    pub fn from_headers(headers: &host::Headers) -> Result<Option<RunHeaders>, Reply> {
        RunHeaders::parse(headers.get("x-agent-run-id").as_deref(), headers.get("x-agent-parent-run-id").as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_without_a_run_id_is_no_run_even_with_a_parent() {
        assert_eq!(RunHeaders::parse(None, Some("p")), Ok(None));
    }

    #[test]
    fn valid_run_headers_are_kept_as_sent() {
        let run = RunHeaders::parse(Some("run-1"), Some("root:0")).unwrap();
        assert_eq!(run, Some(RunHeaders { run_id: "run-1".into(), parent: Some("root:0".into()) }));
    }

    #[test]
    fn an_invalid_run_id_or_parent_is_a_400_naming_the_header() {
        let bad = RunHeaders::parse(Some("a b"), None).unwrap_err();
        assert_eq!(bad.status, 400);
        assert!(bad.body.contains("x-agent-run-id"), "{}", bad.body);
        let bad_parent = RunHeaders::parse(Some("ok"), Some(&"p".repeat(129))).unwrap_err();
        assert!(bad_parent.body.contains("x-agent-parent-run-id"), "{}", bad_parent.body);
    }
}
