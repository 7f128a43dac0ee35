//! Scopes beside the tenant: an org, a team, a user or key. A request belongs to each scope its
//! verified claims (or its API key's entry) name; each scope has limits of its own for every
//! value (`limits`), with overrides per value (`values`), and its own state: windows, budgets,
//! breaker. A request is admitted only if the tenant and every limited scope it belongs to admit
//! it, so the strictest refuses, and the refusal names its scope.

use super::limits::{Limits, TenantPolicy};
use crate::ids::is_valid_tenant_id;
use crate::strict::{field_error, PolicyError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One scope of the policy (`"scopes": {"org": {...}}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeDef {
    /// The JWT (or `jwt_authn` payload) claim naming the caller's value; default: the scope's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// Every value's limits (a tier's fields). Without any threshold or budget here or in
    /// `values`, the scope is only metered, and costs nothing on the request path.
    #[serde(default)]
    pub limits: Limits,
    /// Overrides for one value: `{"initech": {"tokens_60s": 5000}}` (no `tier`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, TenantPolicy>,
}

impl ScopeDef {
    pub fn claim<'a>(&'a self, name: &'a str) -> &'a str {
        self.claim.as_deref().unwrap_or(name)
    }

    /// The limits of `value` in this scope.
    pub fn limits_for(&self, value: &str) -> Limits {
        match self.values.get(value) {
            Some(entry) => entry.apply(&self.limits),
            None => self.limits.clone(),
        }
    }
}

/// The name of a scope value's state in the state table (`*org:initech`): `*` cannot occur in
/// a tenant id, so no tenant's state, nor a route tier's (`tenant#tier`), shares it.
pub fn scope_state_name(scope: &str, value: &str) -> String {
    format!("*{scope}:{value}")
}

/// `org:initech`, as a refusal names it (`fusebox.scope`).
pub fn scope_label(scope: &str, value: &str) -> String {
    format!("{scope}:{value}")
}

/// Scope names: 1-32 of `[a-z0-9_]`, starting with a letter; `tenant` is the tenant itself.
pub fn is_valid_scope_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && name != "tenant"
}

/// At most this many scopes: each limited one is a state update per request.
pub const MAX_SCOPES: usize = 8;

pub(crate) fn validate(scopes: &BTreeMap<String, ScopeDef>) -> Result<(), PolicyError> {
    if scopes.len() > MAX_SCOPES {
        return Err(field_error("scopes", format!("at most {MAX_SCOPES} scopes")));
    }
    for (name, def) in scopes {
        let at = format!("scopes.{name}");
        if !is_valid_scope_name(name) {
            return Err(field_error(at, "scope names are 1-32 of [a-z0-9_], starting with a letter, and not 'tenant'"));
        }
        if def.claim.as_deref().is_some_and(str::is_empty) {
            return Err(field_error(format!("{at}.claim"), "must not be empty"));
        }
        def.limits.validate(&format!("{at}.limits"))?;
        for (value, entry) in &def.values {
            let at = format!("{at}.values.{value}");
            if !is_valid_tenant_id(value) {
                return Err(field_error(at, "scope values are 1-128 of [A-Za-z0-9-_.:@]"));
            }
            if entry.tier.is_some() {
                return Err(field_error(format!("{at}.tier"), "a scope value has no tier: set its limits here"));
            }
            let limits = entry.apply(&def.limits);
            limits.validate(&at)?;
            entry.check_topups(&limits, &at)?;
        }
    }
    Ok(())
}
