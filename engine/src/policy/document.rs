//! The policy document: identity settings, tiers of limits, per-tenant overrides, prices.
//!
//! Parsing is strict (see `crate::strict`), so a bad policy is refused by the control service
//! and never reaches Envoy.

use super::limits::{Limits, TenantPolicy};
use super::prices::{self, Price};
use super::scopes::{self, ScopeDef};
use super::tiers::{default_tier_name, default_tiers};
use crate::identity::{IdentityConfig, Verifier};
use crate::ids::{is_valid_tenant_id, is_valid_tier_name};
use crate::strict::{field_error, parse_json, PolicyError};
use crate::usage::{CacheTokens, Usage};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Set by the control service; increases on every change.
    #[serde(default)]
    pub version: u64,
    pub identity: IdentityConfig,
    /// Tier for tenants with neither a policy entry nor a tier claim.
    #[serde(default = "default_tier_name")]
    pub default_tier: String,
    #[serde(default = "default_tiers")]
    pub tiers: BTreeMap<String, Limits>,
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantPolicy>,
    /// Prices by model name prefix (longest match wins; `*` for anything else).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: BTreeMap<String, Price>,
    /// Scopes beside the tenant (org, team, user, ...), each with limits of its own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scopes: BTreeMap<String, ScopeDef>,
}

/// Serializes a policy (as control serves it); `None` only if serialization fails.
pub fn to_json(policy: &Policy) -> Option<String> {
    serde_json::to_string(policy).ok()
}

impl Policy {
    /// Parses and validates a policy document.
    pub fn from_json(json: &[u8]) -> Result<Policy, PolicyError> {
        let policy: Policy = parse_json(json)?;
        policy.validate()?;
        Ok(policy)
    }

    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.tiers.is_empty() {
            return Err(field_error("tiers", "at least one tier is required"));
        }
        for (name, limits) in &self.tiers {
            if !is_valid_tier_name(name) {
                return Err(field_error(format!("tiers.{name}"), "tier names are 1-32 of [A-Za-z0-9_-]"));
            }
            limits.validate(&format!("tiers.{name}"))?;
        }
        if !self.tiers.contains_key(&self.default_tier) {
            return Err(field_error("default_tier", format!("unknown tier '{}'", self.default_tier)));
        }
        for (id, t) in &self.tenants {
            let at = format!("tenants.{id}");
            if !is_valid_tenant_id(id) {
                return Err(field_error(at, "tenant ids are 1-128 of [A-Za-z0-9-_.:@]"));
            }
            let tier_name = t.tier.as_deref().unwrap_or(&self.default_tier);
            let Some(base) = self.tiers.get(tier_name) else {
                return Err(field_error(format!("{at}.tier"), format!("unknown tier '{tier_name}'")));
            };
            let limits = t.apply(base);
            limits.validate(&at)?;
            t.check_topups(&limits, &at)?;
        }
        prices::validate(&self.prices)?;
        scopes::validate(&self.scopes)?;
        self.identity.validate(|t| self.tiers.contains_key(t))?;
        for (i, key) in self.identity.api_keys.iter().enumerate() {
            if let Some(unknown) = key.scopes.keys().find(|s| !self.scopes.contains_key(*s)) {
                return Err(field_error(
                    format!("identity.api_keys[{i}].scopes.{unknown}"),
                    format!("no scope '{unknown}' in the policy's scopes"),
                ));
            }
        }
        // Keys and digests are checked by building them, so an unusable one is refused here.
        self.verifier().map(|_| ())
    }

    /// The verifier of this policy's identity sources, reading its scopes' claims too.
    pub fn verifier(&self) -> Result<Verifier, PolicyError> {
        let claims = self.scopes.iter().map(|(name, def)| (name.clone(), def.claim(name).to_string())).collect();
        Verifier::with_scopes(&self.identity, claims)
    }

    /// The limits of `value` in `scope`, if the policy defines the scope and it can refuse
    /// anything (a scope only metered has no state to judge).
    pub fn scope_limits(&self, scope: &str, value: &str) -> Option<Limits> {
        let def = self.scopes.get(scope)?;
        let limits = def.limits_for(value);
        limits.limits_anything().then_some(limits)
    }

    /// Cost of `usage` on `model`, in millionths of the currency (0 when no price matches),
    /// the `cache`d part of its input at the cache prices.
    pub fn cost_micros(&self, model: Option<&str>, usage: Usage, cache: CacheTokens) -> u64 {
        prices::cost_micros(&self.prices, model, usage, cache)
    }

    /// Limits for a request on a route with a tier of its own: that tier's thresholds, with the
    /// tenant's operator hold (a kill switch stops every route). `None` if the policy has no
    /// such tier (the caller then uses the tenant's own limits).
    pub fn route_limits(&self, tenant: &str, tier: &str) -> Option<Limits> {
        let mut limits = self.tiers.get(tier)?.clone();
        limits.operator = self.limits_for(tenant, None).1.operator;
        Some(limits)
    }

    /// The limits that apply to `tenant`: its policy entry over its tier, where the tier is the
    /// one set for the tenant, else the verified tier claim, else the default tier.
    pub fn limits_for(&self, tenant: &str, claimed_tier: Option<&str>) -> (String, Limits) {
        let entry = self.tenants.get(tenant);
        let tier = entry
            .and_then(|t| t.tier.as_deref())
            .filter(|t| self.tiers.contains_key(*t))
            .or_else(|| claimed_tier.filter(|t| self.tiers.contains_key(*t)))
            .unwrap_or(&self.default_tier);
        let base = self.tiers.get(tier).cloned().unwrap_or_else(Limits::unlimited);
        let limits = match entry {
            Some(e) => e.apply(&base),
            None => base,
        };
        (tier.to_string(), limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::Metric;
    use crate::policy::MAX_THRESHOLD;
    use crate::testkit::policy_json;

    #[test]
    fn minimal_policy_gets_the_shipped_tiers() {
        let p = Policy::from_json(policy_json("").as_bytes()).unwrap();
        assert_eq!(p.tiers.keys().collect::<Vec<_>>(), ["enterprise", "free", "pro"]);
        assert_eq!(p.default_tier, "free");
        assert_eq!(p.limits_for("acme", None).1.tokens_60s, Some(60_000));
    }

    #[test]
    fn unknown_field_is_rejected_with_its_path() {
        let err = Policy::from_json(policy_json(r#", "tiers": {"free": {"tokens_6s": 5}}"#).as_bytes()).unwrap_err();
        assert_eq!(err.field, "tiers.free.tokens_6s");
        assert!(err.message.starts_with("unknown field `tokens_6s`"), "{err}");
    }

    #[test]
    fn zero_threshold_is_rejected_naming_the_field() {
        let err = Policy::from_json(policy_json(r#", "tiers": {"free": {"tokens_60s": 0}}"#).as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("tiers.free.tokens_60s: must be between 1 and {MAX_THRESHOLD} (omit it for no limit)")
        );
    }

    #[test]
    fn impossible_breaker_settings_are_rejected() {
        let err = Policy::from_json(
            policy_json(r#", "tiers": {"free": {"breaker": {"cooldown_s": 60, "max_cooldown_s": 10}}}"#).as_bytes(),
        )
        .unwrap_err();
        assert_eq!(err.field, "tiers.free.breaker.max_cooldown_s");
    }

    #[test]
    fn negative_threshold_is_a_type_error_on_that_field() {
        let err = Policy::from_json(policy_json(r#", "tiers": {"free": {"tokens_60s": -1}}"#).as_bytes()).unwrap_err();
        assert_eq!(err.field, "tiers.free.tokens_60s");
    }

    #[test]
    fn error_ratio_outside_zero_to_one_is_rejected() {
        let err =
            Policy::from_json(policy_json(r#", "tiers": {"free": {"error_ratio": 1.5}}"#).as_bytes()).unwrap_err();
        assert_eq!(err.field, "tiers.free.error_ratio");
        let err = Policy::from_json(policy_json(r#", "tenants": {"a": {"concurrency": 0}}"#).as_bytes()).unwrap_err();
        assert_eq!(err.field, "tenants.a.concurrency");
    }

    #[test]
    fn cost_uses_the_longest_matching_price_prefix() {
        let p = Policy::from_json(
            policy_json(
                r#", "prices": {"gpt-4o": {"input_per_mtok": 2.5, "output_per_mtok": 10},
                               "gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.6},
                               "*": {"input_per_mtok": 1, "output_per_mtok": 1}}"#,
            )
            .as_bytes(),
        )
        .unwrap();
        let u = Usage { input_tokens: 1000, output_tokens: 100 };
        assert_eq!(p.cost_micros(Some("gpt-4o-2024-08-06"), u, CacheTokens::default()), 3500);
        assert_eq!(p.cost_micros(Some("gpt-4o-mini-2024-07-18"), u, CacheTokens::default()), 210);
        assert_eq!(p.cost_micros(Some("claude"), u, CacheTokens::default()), 1100);
        assert_eq!(p.cost_micros(None, u, CacheTokens::default()), 1100);
        let no_prices = Policy::from_json(policy_json("").as_bytes()).unwrap();
        assert_eq!(no_prices.cost_micros(Some("gpt-4o"), u, CacheTokens::default()), 0);
    }

    #[test]
    fn cached_input_is_priced_apart_and_defaults_to_the_input_price() {
        let p = Policy::from_json(
            policy_json(
                r#", "prices": {"gpt-4o": {"input_per_mtok": 2.5, "output_per_mtok": 10, "cached_input_per_mtok": 1.25},
                               "claude": {"input_per_mtok": 3, "output_per_mtok": 15,
                                          "cached_input_per_mtok": 0.3, "cache_write_per_mtok": 3.75}}"#,
            )
            .as_bytes(),
        )
        .unwrap();
        let u = Usage { input_tokens: 1000, output_tokens: 100 };
        let read = CacheTokens { read: 800, write: 0 };
        // 200 fresh at 2.5, 800 cached at 1.25, 100 out at 10.
        assert_eq!(p.cost_micros(Some("gpt-4o"), u, read), 500 + 1000 + 1000);
        let both = CacheTokens { read: 500, write: 300 };
        assert_eq!(p.cost_micros(Some("claude-sonnet-4"), u, both), 600 + 150 + 1125 + 1500);
        // More cached than charged (a charge lowered below the report) is capped at the input.
        assert_eq!(p.cost_micros(Some("gpt-4o"), u, CacheTokens { read: 5000, write: 0 }), 1250 + 1000);
        let err = Policy::from_json(
            policy_json(
                r#", "prices": {"m": {"input_per_mtok": 1, "output_per_mtok": 1, "cached_input_per_mtok": -1}}"#,
            )
            .as_bytes(),
        )
        .unwrap_err();
        assert_eq!(err.field, "prices.m");
    }

    #[test]
    fn error_ratio_threshold_is_in_percent() {
        let p = Policy::from_json(policy_json(r#", "tiers": {"free": {"error_ratio": 0.25}}"#).as_bytes()).unwrap();
        assert_eq!(p.limits_for("a", None).1.threshold(Metric::ErrorRatio), Some(25));
    }

    #[test]
    fn default_tier_must_exist() {
        let err = Policy::from_json(policy_json(r#", "default_tier": "gold""#).as_bytes()).unwrap_err();
        assert_eq!(err.field, "default_tier");
    }

    #[test]
    fn tenant_with_unknown_tier_is_rejected() {
        let err = Policy::from_json(policy_json(r#", "tenants": {"acme": {"tier": "gold"}}"#).as_bytes()).unwrap_err();
        assert_eq!(err.field, "tenants.acme.tier");
    }

    #[test]
    fn a_policy_without_any_identity_source_is_rejected() {
        let err = Policy::from_json(br#"{"identity": {}}"#).unwrap_err();
        assert_eq!(err.field, "identity");
    }

    #[test]
    fn api_key_entries_are_checked() {
        let json = r#"{"identity": {"api_keys": [{"sha256": "abc", "tenant": "acme"}]}}"#;
        assert_eq!(Policy::from_json(json.as_bytes()).unwrap_err().field, "identity.api_keys[0].sha256");
        let digest = "a".repeat(64);
        let json =
            format!(r#"{{"identity": {{"api_keys": [{{"sha256": "{digest}", "tenant": "acme", "tier": "gold"}}]}}}}"#);
        assert_eq!(Policy::from_json(json.as_bytes()).unwrap_err().field, "identity.api_keys[0].tier");
        let json = format!(
            r#"{{"identity": {{"api_keys": [{{"sha256": "{digest}", "tenant": "acme"}}, {{"sha256": "{digest}", "tenant": "evil"}}]}}}}"#
        );
        assert_eq!(Policy::from_json(json.as_bytes()).unwrap_err().field, "identity.api_keys[1].sha256");
    }

    #[test]
    fn short_hmac_secret_is_rejected() {
        let json = r#"{"identity": {"jwt": {"issuer": "i", "audiences": ["a"], "keys": [{"alg": "HS256", "secret": "short"}]}}}"#;
        let err = Policy::from_json(json.as_bytes()).unwrap_err();
        assert_eq!(err.field, "identity.jwt.keys[0]");
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        assert!(Policy::from_json(format!("{} x", policy_json("")).as_bytes()).is_err());
    }

    #[test]
    fn tenant_override_wins_over_tier_and_tier_over_claim() {
        let p = Policy::from_json(
            policy_json(r#", "tenants": {"acme": {"tier": "pro", "tokens_60s": 5000, "breaker": {"cooldown_s": 3}}}"#)
                .as_bytes(),
        )
        .unwrap();
        let (tier, l) = p.limits_for("acme", Some("enterprise"));
        assert_eq!(tier, "pro");
        assert_eq!(l.tokens_60s, Some(5000));
        assert_eq!(l.tokens_10s, Some(200_000));
        assert_eq!(l.breaker.cooldown_s, 3);
        assert_eq!(p.limits_for("other", Some("enterprise")).0, "enterprise");
        assert_eq!(p.limits_for("other", Some("platinum")).0, "free");
    }

    #[test]
    fn a_top_up_raises_the_tenants_budget_for_its_period_and_spent_tokens_stay_spent() {
        use crate::admission::{admit, settle, Decision, Settlement};
        use crate::budget::Budget;
        use crate::state::TenantState;
        // 2026-12-04T12:00:00Z.
        let now_ms = 1_796_385_600_000;
        let policy = |topup: &str| {
            Policy::from_json(
                policy_json(&format!(
                    r#", "tiers": {{"free": {{"budget_tokens_day": 1000}}}}, "tenants": {{"acme": {{{topup}}}}}"#
                ))
                .as_bytes(),
            )
        };
        let before = policy("").unwrap().limits_for("acme", None).1;
        let after = policy(r#""topup": {"budget_tokens_day": {"period": "2026-12-04", "amount": 500}}"#)
            .unwrap()
            .limits_for("acme", None)
            .1;
        assert_eq!(after.budget_limit(Budget::TokensDay, now_ms / 1000), Some(1500));
        let mut s = TenantState::default();
        assert!(matches!(admit(&mut s, &before, now_ms, 0).0, Decision::Allow(_)));
        let done = Settlement { tokens: 1200, completed: true, release: true, ..Settlement::default() };
        settle(&mut s, &before, done, now_ms);
        assert!(matches!(admit(&mut s, &before, now_ms + 1, 0).0, Decision::Deny(_)), "1200 of 1000 spent");
        assert!(matches!(admit(&mut s, &after, now_ms + 2, 0).0, Decision::Allow(_)), "1200 of 1500");
        assert_eq!(s.budget_used(Budget::TokensDay, now_ms / 1000), 1200, "the top-up reset nothing");
        let err = policy(r#""topup": {"budget_cost_month": {"period": "2026-12", "amount": 5}}"#).unwrap_err();
        assert_eq!(err.field, "tenants.acme.topup.budget_cost_month", "no month budget to raise: {err}");
    }

    #[test]
    fn a_policy_with_scopes_models_shadow_and_top_ups_serializes_back_to_an_equal_policy() {
        let extra = r#", "tiers": {"free": {"tokens_60s": 1000, "shadow": ["tokens_60s", "run_steps"],
                                            "budget_cost_month": 10,
                                            "models": {"gpt-4o*": {"tokens_60s": 500, "mode": "shadow"}}}},
            "tenants": {"acme": {"mode": "shadow", "models": {},
                                 "topup": {"budget_cost_month": {"period": "2026-12", "amount": 2.5}}}},
            "scopes": {"org": {"claim": "org_id", "limits": {"budget_tokens_day": 100},
                               "values": {"initech": {"budget_tokens_day": 50,
                                          "topup": {"budget_tokens_day": {"period": "2026-12-04", "amount": 7}}}}},
                       "user": {}},
            "prices": {"gpt-4o": {"input_per_mtok": 2.5, "cached_input_per_mtok": 1.25, "output_per_mtok": 10}}"#;
        let p = Policy::from_json(policy_json(extra).as_bytes()).unwrap();
        let text = to_json(&p).unwrap();
        assert_eq!(Policy::from_json(text.as_bytes()).unwrap(), p, "{text}");
        // What was left at its default is left out, so a document stays as it was written.
        assert!(!text.contains(r#""mode":"enforce""#) && !text.contains(r#""shadow":[]"#), "{text}");
        let (_, acme) = p.limits_for("acme", None);
        assert!(acme.models.is_empty(), "the entry's empty map replaces the tier's");
        assert_eq!(p.limits_for("other", None).1.models.for_model("gpt-4o-mini").map(|(pat, _)| pat), Some("gpt-4o*"));
        assert_eq!(p.scope_limits("org", "initech").and_then(|l| l.budget_tokens_day), Some(50));
        assert!(p.scope_limits("user", "bob").is_none(), "a scope without limits is only metered");
    }

    #[test]
    fn model_patterns_are_names_or_prefixes_and_do_not_nest() {
        for (models, field) in [
            (r#"{"gpt 4o": {}}"#, "tiers.free.models.gpt 4o"),
            (r#"{"gpt-*-mini": {}}"#, "tiers.free.models.gpt-*-mini"),
            (r#"{"gpt-4o*": {"models": {"x": {}}}}"#, "tiers.free.models.gpt-4o*.models"),
            (r#"{"gpt-4o*": {"tokens_60s": 0}}"#, "tiers.free.models.gpt-4o*.tokens_60s"),
        ] {
            let json = policy_json(&format!(r#", "tiers": {{"free": {{"models": {models}}}}}"#));
            assert_eq!(Policy::from_json(json.as_bytes()).unwrap_err().field, field, "{models}");
        }
        let p = Policy::from_json(
            policy_json(
                r#", "tiers": {"free": {"models": {"*": {"tokens_60s": 1}, "claude-opus-4": {"tokens_60s": 2}}}}"#,
            )
            .as_bytes(),
        )
        .unwrap();
        let models = p.limits_for("a", None).1.models;
        assert_eq!(models.for_model("claude-opus-4").map(|(pat, _)| pat), Some("claude-opus-4"));
        assert_eq!(models.for_model("claude-opus-4-1").map(|(pat, _)| pat), Some("*"), "exact names are exact");
    }

    #[test]
    fn policy_serializes_back_to_an_equal_policy() {
        let p = Policy::from_json(policy_json(r#", "tenants": {"acme": {"tokens_10s": 7}}"#).as_bytes()).unwrap();
        let again = Policy::from_json(&serde_json::to_vec(&p).unwrap()).unwrap();
        assert_eq!(p, again);
    }
}
