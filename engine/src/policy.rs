//! The policy schema: identity settings, tiers of limits, per-tenant overrides.
//!
//! Parsing is strict: unknown fields and impossible values are rejected with a message that
//! names the field (`tiers.free.breaker.cooldown_s: must be at least 1`), so a bad policy is
//! refused by the control service and never reaches Envoy.

use crate::budget::Budget;
use crate::metric::Metric;
use crate::usage::Usage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The largest threshold accepted; beyond it a limit is meaningless (use no limit instead).
pub const MAX_THRESHOLD: u64 = 1 << 40;
pub const MAX_TENANT_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// Dotted path of the offending field (`tiers.free.tokens_60s`), empty for the document.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for PolicyError {}

pub(crate) fn field_error(field: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError { field: field.into(), message: message.into() }
}

/// Deserializes `T` strictly, reporting the path of the field serde stopped at.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, PolicyError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        field_error(field, e.inner().to_string())
    })?;
    de.end().map_err(|e| field_error("", e.to_string()))?;
    Ok(value)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    /// First cooldown after a trip, in seconds.
    #[serde(default = "default_cooldown_s")]
    pub cooldown_s: u32,
    /// Cap for the doubling cooldown on repeated trips.
    #[serde(default = "default_max_cooldown_s")]
    pub max_cooldown_s: u32,
    /// Probes admitted in HALF_OPEN; this many clean probes close the breaker.
    #[serde(default = "default_half_open_probes")]
    pub half_open_probes: u32,
}

fn default_cooldown_s() -> u32 {
    30
}
fn default_max_cooldown_s() -> u32 {
    300
}
fn default_half_open_probes() -> u32 {
    2
}
fn default_warn_ratio() -> f64 {
    0.5
}
fn default_error_min_requests() -> u32 {
    20
}
fn default_run_ttl_s() -> u64 {
    3600
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            cooldown_s: default_cooldown_s(),
            max_cooldown_s: default_max_cooldown_s(),
            half_open_probes: default_half_open_probes(),
        }
    }
}

/// A tier's limits. An absent threshold means the metric is not limited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_10s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_60s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_10s: Option<u64>,
    /// Tool calls (OpenAI tool_calls, Responses function calls, Anthropic tool_use) per 60 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls_60s: Option<u64>,
    /// Share (0-1] of completed responses in the last 60 s that may be upstream errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_ratio: Option<f64>,
    /// Completed responses in the window before `error_ratio` is judged.
    #[serde(default = "default_error_min_requests")]
    pub error_min_requests: u32,
    /// Requests in flight at once; more are refused (without tripping the breaker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u64>,
    /// Tokens per UTC day; once used up, requests are refused until midnight UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens_day: Option<u64>,
    /// Cost per UTC calendar month, in the currency of `prices`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_cost_month: Option<f64>,
    /// Agent runs (`x-agent-run-id`): requests per run tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_steps: Option<u64>,
    /// Sub-agent nesting below the root run (root = 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_depth: Option<u64>,
    /// Wall-clock seconds since the run tree's first request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_duration_s: Option<u64>,
    /// Tokens used by the whole run tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_tokens: Option<u64>,
    /// A run's record is forgotten after this many seconds without a request.
    #[serde(default = "default_run_ttl_s")]
    pub run_ttl_s: u64,
    /// End the tenant's SSE streams in flight, with a final error event, when its breaker opens.
    #[serde(default)]
    pub terminate_streams: bool,
    /// Lower a request's `max_tokens` (and kin) to what remains of its token windows.
    #[serde(default)]
    pub clamp_max_tokens: bool,
    /// Allowed responses carry `x-fusebox-warning` once a metric passes this share of its threshold.
    #[serde(default = "default_warn_ratio")]
    pub warn_ratio: f64,
    #[serde(default)]
    pub breaker: BreakerSettings,
    /// What an operator set on this tenant's breaker (from its policy entry, never from a tier).
    #[serde(skip)]
    pub operator: Operator,
}

/// An operator's forced breaker state (the kill switch, or a breaker held closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Forced {
    /// Every request is refused with `kill_switch` until an operator closes or resets it.
    Open,
    /// The breaker never trips; caps (concurrency) and budgets still apply.
    Closed,
}

impl Forced {
    pub fn as_str(self) -> &'static str {
        match self {
            Forced::Open => "open",
            Forced::Closed => "closed",
        }
    }
}

/// A forced state as control records it in the tenant's policy entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForcedBreaker {
    pub state: Forced,
    /// Why (for operators; never shown to the tenant).
    #[serde(default)]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Unix seconds when it was set.
    #[serde(default)]
    pub since_s: u64,
}

/// The operator's part of a tenant's limits, as admission needs it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Operator {
    pub forced: Option<Forced>,
    /// Bumped by control on `close` and `reset`: a tenant state that has seen an older epoch
    /// drops its breaker (OPEN, cooldown doubling) back to CLOSED.
    pub epoch: u64,
}

impl Limits {
    /// Parses a tier strictly (as `PUT /v1/tiers/{tier}` receives it); values are checked when
    /// the policy holding it is validated.
    pub fn from_json(json: &[u8]) -> Result<Limits, PolicyError> {
        parse_json(json)
    }

    /// No thresholds at all (defaults for everything else).
    pub fn unlimited() -> Limits {
        Limits {
            tokens_10s: None,
            tokens_60s: None,
            requests_10s: None,
            tool_calls_60s: None,
            error_ratio: None,
            error_min_requests: default_error_min_requests(),
            concurrency: None,
            budget_tokens_day: None,
            budget_cost_month: None,
            run_steps: None,
            run_depth: None,
            run_duration_s: None,
            run_tokens: None,
            run_ttl_s: default_run_ttl_s(),
            terminate_streams: false,
            clamp_max_tokens: false,
            warn_ratio: default_warn_ratio(),
            breaker: BreakerSettings::default(),
            operator: Operator::default(),
        }
    }

    /// A budget's limit in its unit (tokens, or cost in millionths of the currency).
    pub fn budget_limit(&self, budget: Budget) -> Option<u64> {
        match budget {
            Budget::TokensDay => self.budget_tokens_day,
            // Validated finite and positive; far below u64::MAX after scaling.
            Budget::CostMonth => self.budget_cost_month.map(|c| (c * 1e6).round() as u64),
        }
    }

    /// Threshold in the metric's unit (the error ratio in whole percent).
    pub fn threshold(&self, metric: Metric) -> Option<u64> {
        match metric {
            Metric::Tokens10s => self.tokens_10s,
            Metric::Tokens60s => self.tokens_60s,
            Metric::Requests10s => self.requests_10s,
            Metric::ToolCalls60s => self.tool_calls_60s,
            // A ratio in (0, 1] is at most 100 percent: the conversion cannot overflow.
            Metric::ErrorRatio => self.error_ratio.map(|r| (r * 100.0).round() as u64),
            Metric::Concurrency => self.concurrency,
        }
    }

    fn validate(&self, at: &str) -> Result<(), PolicyError> {
        if let Some(r) = self.error_ratio {
            if !(r > 0.0 && r <= 1.0) {
                return Err(field_error(format!("{at}.error_ratio"), "must be greater than 0 and at most 1"));
            }
        }
        if let Some(c) = self.budget_cost_month {
            if !(c > 0.0 && c <= 1e12) {
                return Err(field_error(format!("{at}.budget_cost_month"), "must be greater than 0 and at most 1e12"));
            }
        }
        for (name, v) in
            [("run_steps", self.run_steps), ("run_duration_s", self.run_duration_s), ("run_tokens", self.run_tokens)]
        {
            if v == Some(0) {
                return Err(field_error(format!("{at}.{name}"), "must be at least 1 (omit it for no limit)"));
            }
        }
        if self.run_ttl_s == 0 || self.run_ttl_s > 7 * 86_400 {
            return Err(field_error(format!("{at}.run_ttl_s"), "must be between 1 and 604800"));
        }
        if self.budget_tokens_day == Some(0) {
            return Err(field_error(format!("{at}.budget_tokens_day"), "must be at least 1 (omit it for no budget)"));
        }
        if self.error_min_requests == 0 {
            return Err(field_error(format!("{at}.error_min_requests"), "must be at least 1"));
        }
        for m in Metric::ALL.into_iter().filter(|m| *m != Metric::ErrorRatio) {
            if let Some(t) = self.threshold(m) {
                if t == 0 || t > MAX_THRESHOLD {
                    return Err(field_error(
                        format!("{at}.{m}"),
                        format!("must be between 1 and {MAX_THRESHOLD} (omit it for no limit)"),
                    ));
                }
            }
        }
        if !(self.warn_ratio > 0.0 && self.warn_ratio <= 1.0) {
            return Err(field_error(format!("{at}.warn_ratio"), "must be greater than 0 and at most 1"));
        }
        let b = &self.breaker;
        if b.cooldown_s == 0 {
            return Err(field_error(format!("{at}.breaker.cooldown_s"), "must be at least 1"));
        }
        if b.max_cooldown_s < b.cooldown_s || b.max_cooldown_s > 86_400 {
            return Err(field_error(
                format!("{at}.breaker.max_cooldown_s"),
                "must be at least cooldown_s and at most 86400",
            ));
        }
        if b.half_open_probes == 0 || b.half_open_probes > 1000 {
            return Err(field_error(format!("{at}.breaker.half_open_probes"), "must be between 1 and 1000"));
        }
        Ok(())
    }
}

/// Partial breaker settings in a tenant override.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_s: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cooldown_s: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_open_probes: Option<u32>,
}

/// A tenant's entry: its tier and any limits that differ from the tier's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_10s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_60s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_10s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls_60s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_min_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens_day: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_cost_month: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_steps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_depth: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_duration_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_ttl_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate_streams: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clamp_max_tokens: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerOverride>,
    /// Set by control's breaker endpoint (`open` = kill switch); absent = automatic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced: Option<ForcedBreaker>,
    /// Set by control: see [`Operator::epoch`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub breaker_epoch: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl TenantPolicy {
    /// Parses a tenant entry strictly (as `PUT /v1/tenants/{t}` receives it); the whole policy
    /// is validated once the entry is in place.
    pub fn from_json(json: &[u8]) -> Result<TenantPolicy, PolicyError> {
        parse_json(json)
    }

    fn apply(&self, base: &Limits) -> Limits {
        let mut l = base.clone();
        l.tokens_10s = self.tokens_10s.or(l.tokens_10s);
        l.tokens_60s = self.tokens_60s.or(l.tokens_60s);
        l.requests_10s = self.requests_10s.or(l.requests_10s);
        l.tool_calls_60s = self.tool_calls_60s.or(l.tool_calls_60s);
        l.error_ratio = self.error_ratio.or(l.error_ratio);
        l.error_min_requests = self.error_min_requests.unwrap_or(l.error_min_requests);
        l.concurrency = self.concurrency.or(l.concurrency);
        l.budget_tokens_day = self.budget_tokens_day.or(l.budget_tokens_day);
        l.budget_cost_month = self.budget_cost_month.or(l.budget_cost_month);
        l.run_steps = self.run_steps.or(l.run_steps);
        l.run_depth = self.run_depth.or(l.run_depth);
        l.run_duration_s = self.run_duration_s.or(l.run_duration_s);
        l.run_tokens = self.run_tokens.or(l.run_tokens);
        l.run_ttl_s = self.run_ttl_s.unwrap_or(l.run_ttl_s);
        l.terminate_streams = self.terminate_streams.unwrap_or(l.terminate_streams);
        l.clamp_max_tokens = self.clamp_max_tokens.unwrap_or(l.clamp_max_tokens);
        l.warn_ratio = self.warn_ratio.unwrap_or(l.warn_ratio);
        if let Some(b) = self.breaker {
            l.breaker.cooldown_s = b.cooldown_s.unwrap_or(l.breaker.cooldown_s);
            l.breaker.max_cooldown_s = b.max_cooldown_s.unwrap_or(l.breaker.max_cooldown_s);
            l.breaker.half_open_probes = b.half_open_probes.unwrap_or(l.breaker.half_open_probes);
        }
        l.operator = Operator { forced: self.forced.as_ref().map(|f| f.state), epoch: self.breaker_epoch };
        l
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "alg", deny_unknown_fields)]
pub enum JwtKey {
    /// Shared secret (UTF-8, at least 12 bytes).
    HS256 {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kid: Option<String>,
        secret: String,
    },
    /// RSA public key in PEM (at least 2048 bits).
    RS256 {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kid: Option<String>,
        pem: String,
    },
    /// P-256 public key in PEM.
    ES256 {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kid: Option<String>,
        pem: String,
    },
}

impl JwtKey {
    pub fn kid(&self) -> Option<&str> {
        match self {
            JwtKey::HS256 { kid, .. } | JwtKey::RS256 { kid, .. } | JwtKey::ES256 { kid, .. } => kid.as_deref(),
        }
    }
}

fn default_tenant_claim() -> String {
    "tenant".to_string()
}
fn default_tier_claim() -> Option<String> {
    Some("tier".to_string())
}
fn default_leeway_s() -> u32 {
    30
}
fn default_max_token_bytes() -> usize {
    8192
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Required `iss`.
    pub issuer: String,
    /// The token's `aud` must contain one of these.
    pub audiences: Vec<String>,
    /// Claim holding the tenant id.
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// Claim holding the tier; a tier set for the tenant in the policy wins over it.
    #[serde(default = "default_tier_claim")]
    pub tier_claim: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway_s")]
    pub leeway_s: u32,
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    #[serde(default)]
    pub keys: Vec<JwtKey>,
    /// A JWK set (`{"keys": [...]}`, RSA and P-256 public keys with their `kid`), as served by
    /// an identity provider. Rotate keys by publishing a new policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
}

/// An API key, stored only as the SHA-256 digest of the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Lowercase hex SHA-256 of the key (`fusebox-control hash-key` prints it).
    pub sha256: String,
    pub tenant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// A label for operators (never used for matching).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

fn default_jwt_authn_filter() -> String {
    "envoy.filters.http.jwt_authn".to_string()
}
fn default_payload_key() -> String {
    "jwt_payload".to_string()
}

/// Trust the payload Envoy's own `jwt_authn` filter verified and put in dynamic metadata
/// (`payload_in_metadata`). Only safe when `jwt_authn` runs before fusebox on the same routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtAuthnConfig {
    #[serde(default = "default_jwt_authn_filter")]
    pub filter: String,
    /// The `payload_in_metadata` name configured on the jwt_authn provider.
    #[serde(default = "default_payload_key")]
    pub payload_key: String,
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    #[serde(default = "default_tier_claim")]
    pub tier_claim: Option<String>,
}

/// Where tenant identity may come from; at least one source is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<ApiKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_authn: Option<JwtAuthnConfig>,
}

fn default_tier_name() -> String {
    "free".to_string()
}

/// Shipped tiers, used when a policy does not define `tiers`.
pub fn default_tiers() -> BTreeMap<String, Limits> {
    let tier = |t10: u64, t60: u64, r10: u64, tools: u64, concurrency: u64, cooldown_s: u32, run_steps: u64| Limits {
        tokens_10s: Some(t10),
        tokens_60s: Some(t60),
        requests_10s: Some(r10),
        tool_calls_60s: Some(tools),
        error_ratio: Some(0.5),
        error_min_requests: default_error_min_requests(),
        concurrency: Some(concurrency),
        budget_tokens_day: None,
        budget_cost_month: None,
        run_steps: Some(run_steps),
        run_depth: Some(4),
        run_duration_s: Some(3600),
        run_tokens: None,
        run_ttl_s: default_run_ttl_s(),
        terminate_streams: false,
        clamp_max_tokens: false,
        warn_ratio: default_warn_ratio(),
        breaker: BreakerSettings { cooldown_s, ..BreakerSettings::default() },
        operator: Operator::default(),
    };
    BTreeMap::from([
        ("free".to_string(), tier(20_000, 60_000, 20, 60, 4, 30, 50)),
        ("pro".to_string(), tier(200_000, 600_000, 100, 600, 32, 15, 500)),
        ("enterprise".to_string(), tier(2_000_000, 6_000_000, 1000, 6000, 256, 10, 5000)),
    ])
}

/// Price of a model, per million tokens, in the budget currency.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

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
}

/// Serializes a policy (as control serves it); `None` only if serialization fails.
pub fn to_json(policy: &Policy) -> Option<String> {
    serde_json::to_string(policy).ok()
}

/// True for ids that are safe in headers, shared-data keys and logs.
pub fn is_valid_tenant_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_TENANT_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@'))
}

fn is_valid_tier_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 32 && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
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
            t.apply(base).validate(&at)?;
        }
        for (model, p) in &self.prices {
            let ok = |v: f64| v.is_finite() && (0.0..=1e6).contains(&v);
            if !ok(p.input_per_mtok) || !ok(p.output_per_mtok) {
                return Err(field_error(
                    format!("prices.{model}"),
                    "prices must be between 0 and 1e6 per million tokens",
                ));
            }
        }
        let id = &self.identity;
        if id.jwt.is_none() && id.api_keys.is_empty() && id.jwt_authn.is_none() {
            return Err(field_error("identity", "configure at least one of 'jwt', 'api_keys', 'jwt_authn'"));
        }
        if let Some(jwt) = &id.jwt {
            if jwt.issuer.is_empty() {
                return Err(field_error("identity.jwt.issuer", "must not be empty"));
            }
            if jwt.audiences.is_empty() || jwt.audiences.iter().any(String::is_empty) {
                return Err(field_error("identity.jwt.audiences", "at least one non-empty audience is required"));
            }
            if jwt.tenant_claim.is_empty() {
                return Err(field_error("identity.jwt.tenant_claim", "must not be empty"));
            }
            if !(256..=65_536).contains(&jwt.max_token_bytes) {
                return Err(field_error("identity.jwt.max_token_bytes", "must be between 256 and 65536"));
            }
            if jwt.keys.is_empty() && jwt.jwks.is_none() {
                return Err(field_error("identity.jwt.keys", "at least one key (or a 'jwks') is required"));
            }
        }
        for (i, k) in id.api_keys.iter().enumerate() {
            if !is_valid_tenant_id(&k.tenant) {
                return Err(field_error(
                    format!("identity.api_keys[{i}].tenant"),
                    "tenant ids are 1-128 of [A-Za-z0-9-_.:@]",
                ));
            }
            if let Some(tier) = k.tier.as_deref().filter(|t| !self.tiers.contains_key(*t)) {
                return Err(field_error(format!("identity.api_keys[{i}].tier"), format!("unknown tier '{tier}'")));
            }
        }
        // Keys and digests are checked by building them, so an unusable one is refused here.
        crate::identity::Verifier::new(id).map(|_| ())
    }

    /// Cost of `usage` on `model`, in millionths of the currency (0 when no price matches).
    pub fn cost_micros(&self, model: Option<&str>, usage: Usage) -> u64 {
        let by_prefix = model.and_then(|m| {
            self.prices
                .iter()
                .filter(|(prefix, _)| *prefix != "*" && m.starts_with(prefix.as_str()))
                .max_by_key(|(p, _)| p.len())
        });
        let Some((_, price)) = by_prefix.or_else(|| self.prices.get_key_value("*")) else { return 0 };
        // Validated finite and non-negative; token counts are far below 2^53.
        let micros =
            usage.input_tokens as f64 * price.input_per_mtok + usage.output_tokens as f64 * price.output_per_mtok;
        micros.round() as u64
    }

    /// The limits that apply to `tenant`: its policy entry over its tier, where the tier is the
    /// one set for the tenant, else the verified tier claim, else the default tier.
    /// Limits for a request on a route with a tier of its own: that tier's thresholds, with the
    /// tenant's operator hold (a kill switch stops every route). `None` if the policy has no
    /// such tier (the caller then uses the tenant's own limits).
    pub fn route_limits(&self, tenant: &str, tier: &str) -> Option<Limits> {
        let mut limits = self.tiers.get(tier)?.clone();
        limits.operator = self.limits_for(tenant, None).1.operator;
        Some(limits)
    }

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
pub(crate) mod tests {
    use super::*;

    pub(crate) const DEMO_SECRET: &str = "fusebox-demo-secret-change-me";

    pub(crate) fn policy_json(extra: &str) -> String {
        format!(
            r#"{{"identity": {{"jwt": {{"issuer": "https://auth.example", "audiences": ["fusebox"],
                 "keys": [{{"alg": "HS256", "kid": "demo", "secret": "{DEMO_SECRET}"}}]}}}}{extra}}}"#
        )
    }

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
        assert_eq!(p.cost_micros(Some("gpt-4o-2024-08-06"), u), 3500);
        assert_eq!(p.cost_micros(Some("gpt-4o-mini-2024-07-18"), u), 210);
        assert_eq!(p.cost_micros(Some("claude"), u), 1100);
        assert_eq!(p.cost_micros(None, u), 1100);
        let no_prices = Policy::from_json(policy_json("").as_bytes()).unwrap();
        assert_eq!(no_prices.cost_micros(Some("gpt-4o"), u), 0);
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
    fn tenant_ids_are_restricted_to_safe_characters() {
        assert!(is_valid_tenant_id("acme-corp_1.eu:team@x"));
        assert!(!is_valid_tenant_id(""));
        assert!(!is_valid_tenant_id("a b"));
        assert!(!is_valid_tenant_id("a\r\nx-evil: 1"));
        assert!(!is_valid_tenant_id(&"a".repeat(129)));
    }

    #[test]
    fn policy_serializes_back_to_an_equal_policy() {
        let p = Policy::from_json(policy_json(r#", "tenants": {"acme": {"tokens_10s": 7}}"#).as_bytes()).unwrap();
        let again = Policy::from_json(&serde_json::to_vec(&p).unwrap()).unwrap();
        assert_eq!(p, again);
    }
}
