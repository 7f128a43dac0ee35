//! Plugin configuration, as written in Envoy YAML (`configuration` of the Wasm filter or of
//! the `envoy.bootstrap.wasm` singleton).

use crate::fleet::FleetConfig;
use crate::path::canonical;
use crate::policy::Policy;
use crate::strict::{field_error, parse_json, PolicyError};
use serde::{Deserialize, Serialize};

/// What the filter does with a request on a matched route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Identify, admit (maybe deny), count.
    Enforce,
    /// Identify and count, never deny (dry run); requests without identity pass uncounted.
    Observe,
    /// Untouched (a client-sent `x-fusebox-tenant` is still removed).
    Pass,
}

/// Which request paths a rule matches (query string ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// Paths starting with this.
    Prefix(String),
    /// Exactly this path.
    Exact(String),
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Exact(p) => path == p,
        }
    }

    /// The rule's prefix or path: how usage is labelled (never by the raw path).
    pub fn label(&self) -> &str {
        match self {
            PathMatch::Prefix(p) | PathMatch::Exact(p) => p,
        }
    }
}

/// A path rule; the first matching rule wins. Written as `{"prefix": ...}` or `{"path": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RouteRuleJson", into = "RouteRuleJson")]
pub struct RouteRule {
    pub matches: PathMatch,
    pub mode: Mode,
    /// Requests on this route are judged by this tier of the policy (not the tenant's own), in
    /// windows and a breaker of their own: e.g. embeddings with limits apart from chat. The
    /// tenant's operator hold (kill switch) still applies.
    pub tier: Option<String>,
}

/// A route rule as written in the plugin configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteRuleJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tier: Option<String>,
}

impl TryFrom<RouteRuleJson> for RouteRule {
    type Error = &'static str;

    fn try_from(r: RouteRuleJson) -> Result<RouteRule, Self::Error> {
        // Rules are written and matched in canonical form (see `crate::path`).
        let matches = match (r.prefix, r.path) {
            (Some(p), None) => PathMatch::Prefix(canonical(&p)),
            (None, Some(p)) => PathMatch::Exact(canonical(&p)),
            _ => return Err("set exactly one of 'prefix' or 'path'"),
        };
        Ok(RouteRule { matches, mode: r.mode, tier: r.tier })
    }
}

impl From<RouteRule> for RouteRuleJson {
    fn from(r: RouteRule) -> RouteRuleJson {
        let (prefix, path) = match r.matches {
            PathMatch::Prefix(p) => (Some(p), None),
            PathMatch::Exact(p) => (None, Some(p)),
        };
        RouteRuleJson { prefix, path, mode: r.mode, tier: r.tier }
    }
}

/// What the route rules say about a request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    pub mode: Mode,
    /// The matching rule's prefix or path, `*` when none matches (usage is reported per
    /// label, never per raw path).
    pub label: &'a str,
    /// The route's own tier, if it names one.
    pub tier: Option<&'a str>,
}

fn default_namespace() -> String {
    "fusebox".to_string()
}
/// A path no rule names is enforced: identity required, counted. Operators mark what may pass.
fn default_unmatched() -> Mode {
    Mode::Enforce
}
fn default_true() -> bool {
    true
}
fn default_status_path() -> Option<String> {
    Some("/fusebox/status".to_string())
}

fn default_authorization_header() -> String {
    "authorization".to_string()
}
fn default_api_key_header() -> String {
    "x-api-key".to_string()
}

/// The request headers that carry a tenant's credential. fusebox reads them and removes them
/// before the upstream (the provider's own key is Envoy's to add), so a tenant's JWT or fusebox
/// key never reaches a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialHeaders {
    /// `Bearer <JWT or API key>`.
    #[serde(default = "default_authorization_header")]
    pub authorization: String,
    /// A fusebox API key (set another name, e.g. `x-fusebox-key`, where clients must send a
    /// provider-style `x-api-key`).
    #[serde(default = "default_api_key_header")]
    pub api_key: String,
}

impl Default for CredentialHeaders {
    fn default() -> Self {
        CredentialHeaders { authorization: default_authorization_header(), api_key: default_api_key_header() }
    }
}

/// Configuration of the HTTP filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Prefix for shared-data keys; filter and singleton must agree.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub routes: Vec<RouteRule>,
    /// Mode for paths no rule matches.
    #[serde(default = "default_unmatched")]
    pub unmatched: Mode,
    /// Path where a verified tenant can read its own breaker state and windows (`null` = off).
    #[serde(default = "default_status_path")]
    pub status_path: Option<String>,
    /// Add `stream_options.include_usage` to streamed OpenAI chat requests that lack it, so that
    /// no stream goes uncounted (requires holding the request body, at most `inject::MAX_REWRITE_BYTES`).
    #[serde(default = "default_true")]
    pub inject_stream_usage: bool,
    /// Which headers carry the tenant's credential (read, then removed before the upstream).
    #[serde(default)]
    pub credential_headers: CredentialHeaders,
    /// Leave the OpenTelemetry GenAI attributes (`gen_ai.*`, see `crate::telemetry`) in filter
    /// state for span tags and record the `gen_ai.client.token.usage` histograms. Off by default:
    /// it costs a few hostcalls per request, worth paying where spans are collected.
    #[serde(default)]
    pub gen_ai_telemetry: bool,
    /// Policy used until (and whenever) no policy from the control service is available.
    pub policy: Policy,
}

impl FilterConfig {
    pub fn from_json(json: &[u8]) -> Result<FilterConfig, PolicyError> {
        let cfg: FilterConfig = parse_json(json)?;
        validate_namespace(&cfg.namespace)?;
        for (i, r) in cfg.routes.iter().enumerate() {
            if let Some(tier) = &r.tier {
                if !cfg.policy.tiers.contains_key(tier) {
                    return Err(field_error(
                        format!("routes[{i}].tier"),
                        format!("tier '{tier}' is not in the filter's policy (define it there too)"),
                    ));
                }
            }
        }
        for (field, name) in
            [("authorization", &cfg.credential_headers.authorization), ("api_key", &cfg.credential_headers.api_key)]
        {
            let token = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.');
            if name.is_empty() || name.len() > 64 || !name.bytes().all(token) {
                return Err(field_error(
                    format!("credential_headers.{field}"),
                    "a lowercase header name of [a-z0-9-_.]",
                ));
            }
        }
        if let Some(p) = &cfg.status_path {
            if !p.starts_with('/') {
                return Err(field_error("status_path", "must start with '/'"));
            }
        }
        cfg.policy.validate().map_err(|e| PolicyError { field: prefixed("policy", &e.field), message: e.message })?;
        Ok(cfg)
    }

    /// The mode for a request path (query string is ignored).
    pub fn mode_for(&self, path: &str) -> Mode {
        self.route_for(path).mode
    }

    /// What the first matching rule says about a request path, in its canonical form (see
    /// `crate::path`: every spelling of a path lands on the same rule).
    pub fn route_for(&self, path: &str) -> RouteMatch<'_> {
        self.route_for_canonical(&canonical(path))
    }

    /// [`FilterConfig::route_for`] for a path already in canonical form.
    pub fn route_for_canonical(&self, path: &str) -> RouteMatch<'_> {
        match self.routes.iter().find(|r| r.matches.matches(path)) {
            Some(r) => RouteMatch { mode: r.mode, label: r.matches.label(), tier: r.tier.as_deref() },
            None => RouteMatch { mode: self.unmatched, label: "*", tier: None },
        }
    }

    /// Whether a canonical path is the status endpoint.
    pub fn is_status_path(&self, path: &str) -> bool {
        self.status_path.as_deref().is_some_and(|s| canonical(s) == path)
    }
}

fn prefixed(prefix: &str, field: &str) -> String {
    if field.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

fn validate_namespace(ns: &str) -> Result<(), PolicyError> {
    if ns.is_empty()
        || ns.len() > 64
        || !ns.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(field_error("namespace", "1-64 of [A-Za-z0-9-_.]"));
    }
    Ok(())
}

fn default_authority() -> String {
    "fusebox-control".to_string()
}
fn default_policy_path() -> String {
    "/v1/policy".to_string()
}
fn default_poll_interval_ms() -> u64 {
    1000
}
fn default_timeout_ms() -> u64 {
    1000
}
fn default_long_poll_s() -> u64 {
    25
}
fn default_events_path() -> Option<String> {
    Some("/v1/events".to_string())
}
fn default_max_backlog() -> usize {
    50_000
}

/// Where and how the singleton polls the control service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Envoy cluster name of the control service.
    pub cluster: String,
    #[serde(default = "default_authority")]
    pub authority: String,
    #[serde(default = "default_policy_path")]
    pub policy_path: String,
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Each poll asks control to hold its answer until the policy changes, up to this many
    /// seconds (`GET <policy_path>?wait=S`), so a change reaches the workers as soon as it is
    /// made; `poll_interval_ms` then only paces polls after an unchanged answer or a failure.
    /// 0: plain polling.
    #[serde(default = "default_long_poll_s")]
    pub long_poll_s: u64,
    /// Bearer token for reading the policy and posting events, if control requires one: the
    /// shared filter token, or this Envoy's own node token (`fusebox-control serve --node-tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The node this Envoy reports events as (with a node token: the node it belongs to).
    /// Default: Envoy's `node.id` where the singleton can read it, else `envoy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Where usage and breaker events are POSTed (`null`: not reported).
    #[serde(default = "default_events_path")]
    pub events_path: Option<String>,
    /// Events kept while control is unreachable; beyond it the oldest are dropped (and counted).
    #[serde(default = "default_max_backlog")]
    pub max_backlog: usize,
}

/// Configuration of the `envoy.bootstrap.wasm` singleton: `{"singleton": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SingletonConfig {
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub control: ControlConfig,
    /// Counting with the rest of the fleet (absent: this Envoy counts alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetConfig>,
    /// How long one sweep over the tenant state table takes (see `state::entry`): a state whose
    /// hold has ended is removed within this long.
    #[serde(default = "default_sweep_pass_ms")]
    pub sweep_pass_ms: u64,
}

fn default_sweep_pass_ms() -> u64 {
    60_000
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SingletonEnvelope {
    singleton: SingletonConfig,
}

/// The two roles one `.wasm` plays, told apart by the shape of the configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginConfig {
    Filter(Box<FilterConfig>),
    Singleton(Box<SingletonConfig>),
}

impl PluginConfig {
    pub fn from_json(json: &[u8]) -> Result<PluginConfig, PolicyError> {
        let probe: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| field_error("", format!("configuration is not JSON: {e}")))?;
        if probe.get("singleton").is_some() {
            let env: SingletonEnvelope = parse_json(json)?;
            let s = env.singleton;
            validate_namespace(&s.namespace).map_err(|e| field_error(prefixed("singleton", &e.field), e.message))?;
            if s.control.poll_interval_ms < 100 || s.control.timeout_ms == 0 {
                return Err(field_error(
                    "singleton.control",
                    "poll_interval_ms must be at least 100 and timeout_ms at least 1",
                ));
            }
            if s.control
                .node_id
                .as_deref()
                .is_some_and(|n| n.is_empty() || n.len() > 256 || !n.bytes().all(|b| b.is_ascii_graphic()))
            {
                return Err(field_error("singleton.control.node_id", "1-256 printable characters"));
            }
            if s.control.long_poll_s > 60 {
                return Err(field_error("singleton.control.long_poll_s", "must be at most 60 (0 turns it off)"));
            }
            if !s.control.policy_path.starts_with('/') {
                return Err(field_error("singleton.control.policy_path", "must start with '/'"));
            }
            if s.control.events_path.as_deref().is_some_and(|p| !p.starts_with('/')) {
                return Err(field_error("singleton.control.events_path", "must start with '/'"));
            }
            if !(100..=10_000_000).contains(&s.control.max_backlog) {
                return Err(field_error("singleton.control.max_backlog", "must be between 100 and 10000000"));
            }
            if let Some(f) = &s.fleet {
                f.validate().map_err(|e| field_error(prefixed("singleton.fleet", &e.field), e.message))?;
            }
            if !(1_000..=3_600_000).contains(&s.sweep_pass_ms) {
                return Err(field_error("singleton.sweep_pass_ms", "must be between 1000 and 3600000"));
            }
            Ok(PluginConfig::Singleton(Box::new(s)))
        } else {
            FilterConfig::from_json(json).map(|c| PluginConfig::Filter(Box::new(c)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::policy_json;

    fn filter(extra: &str) -> Result<FilterConfig, PolicyError> {
        FilterConfig::from_json(format!(r#"{{"policy": {}{extra}}}"#, policy_json("")).as_bytes())
    }

    #[test]
    fn first_matching_rule_wins_and_unmatched_paths_are_enforced_by_default() {
        let cfg = filter(
            r#", "routes": [{"path": "/healthz", "mode": "pass"}, {"prefix": "/v1/", "mode": "enforce"},
                            {"prefix": "/v1/embeddings", "mode": "observe"}]"#,
        )
        .unwrap();
        assert_eq!(cfg.mode_for("/v1/chat/completions?x=1"), Mode::Enforce);
        assert_eq!(cfg.mode_for("/v1/embeddings"), Mode::Enforce);
        assert_eq!(cfg.mode_for("/healthz"), Mode::Pass);
        assert_eq!(cfg.mode_for("/healthz/deep"), Mode::Enforce, "an exact rule names one path");
        assert_eq!(cfg.mode_for("/other"), Mode::Enforce, "a path no rule names needs identity");
        let open = filter(r#", "routes": [{"prefix": "/v1/", "mode": "enforce"}], "unmatched": "pass""#).unwrap();
        assert_eq!(open.mode_for("/other"), Mode::Pass, "unless the operator says so");
    }

    #[test]
    fn every_spelling_of_a_path_lands_on_its_rule() {
        let cfg = filter(
            r#", "routes": [{"path": "/healthz", "mode": "pass"}, {"prefix": "/V1/", "mode": "enforce", "tier": "pro"}],
                "unmatched": "pass""#,
        )
        .unwrap();
        for spelling in [
            "//v1/chat/completions",
            "/./v1/chat/completions",
            "/healthz/../v1/chat/completions",
            "/%76%31/chat/completions",
            "/V1/chat/completions",
            "/v1;x=1/chat/completions",
            "http://host/v1/chat/completions",
        ] {
            let m = cfg.route_for(spelling);
            assert_eq!((m.mode, m.label, m.tier), (Mode::Enforce, "/v1/", Some("pro")), "{spelling}");
        }
        assert_eq!(cfg.mode_for("//healthz"), Mode::Pass);
        assert_eq!(cfg.mode_for("/v1"), Mode::Pass, "the prefix /v1/ names what is below /v1/");
        assert!(cfg.is_status_path(&crate::path::canonical("//fusebox/Status")));
    }

    #[test]
    fn the_status_path_matches_with_or_without_a_query_and_nothing_below_it() {
        let cfg = filter("").unwrap();
        let is_status = |p: &str| cfg.is_status_path(&crate::path::canonical(p));
        assert!(is_status("/fusebox/status"));
        assert!(is_status("/fusebox/status?verbose=1"));
        assert!(!is_status("/fusebox/status/x"));
        assert!(!is_status("/v1/chat/completions"));
        let off = filter(r#", "status_path": null"#).unwrap();
        assert!(!off.is_status_path("/fusebox/status"), "no path is the status endpoint when it is off");
    }

    #[test]
    fn a_route_can_name_a_tier_of_its_own_which_the_policy_must_have() {
        let cfg = filter(
            r#", "routes": [{"prefix": "/v1/embeddings", "mode": "enforce", "tier": "pro"},
                            {"prefix": "/v1/", "mode": "enforce"}]"#,
        )
        .unwrap();
        let m = cfg.route_for("/v1/embeddings?x=1");
        assert_eq!((m.mode, m.label, m.tier), (Mode::Enforce, "/v1/embeddings", Some("pro")));
        assert_eq!(cfg.route_for("/v1/chat/completions").tier, None);
        let err = filter(r#", "routes": [{"prefix": "/v1/", "mode": "enforce", "tier": "gold"}]"#).unwrap_err();
        assert_eq!(err.field, "routes[0].tier");
        // The route's tier replaces the tenant's thresholds but keeps its operator hold.
        let policy = crate::policy::Policy::from_json(
            policy_json(r#", "tenants": {"acme": {"tier": "free", "tokens_60s": 7, "forced": {"state": "open"}}}"#)
                .as_bytes(),
        )
        .unwrap();
        let pro = policy.route_limits("acme", "pro").unwrap();
        assert_eq!(pro.tokens_60s, policy.tiers["pro"].tokens_60s);
        assert_ne!(pro.tokens_60s, Some(7));
        assert_eq!(pro.operator.forced, Some(crate::policy::Forced::Open), "the kill switch covers every route");
        assert!(policy.route_limits("acme", "gold").is_none());
    }

    #[test]
    fn rule_needs_exactly_one_matcher() {
        let err = filter(r#", "routes": [{"mode": "enforce"}]"#).unwrap_err();
        assert_eq!(err.field, "routes[0]");
        assert!(err.message.starts_with("set exactly one of 'prefix' or 'path'"), "{err}");
        let both = filter(r#", "routes": [{"prefix": "/v1/", "path": "/v1/x", "mode": "enforce"}]"#).unwrap_err();
        assert_eq!(both.field, "routes[0]");
        assert!(both.message.starts_with("set exactly one of 'prefix' or 'path'"), "{both}");
        let unknown = filter(r#", "routes": [{"prefix": "/v1/", "mode": "enforce", "prefx": 1}]"#).unwrap_err();
        assert!(unknown.message.starts_with("unknown field `prefx`"), "{unknown}");
    }

    #[test]
    fn a_route_rule_is_written_back_as_it_was_read() {
        let cfg =
            filter(r#", "routes": [{"path": "/healthz", "mode": "pass"}, {"prefix": "/v1/", "mode": "enforce"}]"#)
                .unwrap();
        assert_eq!(cfg.routes[0].matches, PathMatch::Exact("/healthz".into()));
        let json = serde_json::to_value(&cfg.routes).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"path": "/healthz", "mode": "pass"}, {"prefix": "/v1/", "mode": "enforce"}])
        );
    }

    #[test]
    fn bad_policy_inside_the_filter_config_names_the_full_path() {
        let cfg = format!(r#"{{"policy": {}}}"#, policy_json(r#", "tiers": {"free": {"tokens_60s": 0}}"#));
        let err = FilterConfig::from_json(cfg.as_bytes()).unwrap_err();
        assert_eq!(err.field, "policy.tiers.free.tokens_60s");
    }

    #[test]
    fn singleton_config_is_recognised_by_its_key() {
        let cfg = PluginConfig::from_json(br#"{"singleton": {"control": {"cluster": "fusebox_control"}}}"#).unwrap();
        let PluginConfig::Singleton(s) = cfg else { panic!("not a singleton") };
        assert_eq!(s.control.poll_interval_ms, 1000);
        assert_eq!(s.namespace, "fusebox");
        assert_eq!(s.fleet, None, "an Envoy counts alone unless told otherwise");
        assert_eq!(s.sweep_pass_ms, 60_000);
        let fast = br#"{"singleton": {"control": {"cluster": "c"}, "sweep_pass_ms": 10}}"#;
        assert_eq!(PluginConfig::from_json(fast).unwrap_err().field, "singleton.sweep_pass_ms");
    }

    #[test]
    fn a_singleton_counting_with_the_fleet_is_checked_field_by_field() {
        let cfg = br#"{"singleton": {"control": {"cluster": "c"}, "fleet": {"expected_envoys": 3}}}"#;
        let Ok(PluginConfig::Singleton(s)) = PluginConfig::from_json(cfg) else { panic!("not a singleton") };
        assert_eq!(s.fleet.map(|f| (f.expected_envoys, f.interval_ms)), Some((3, 250)));
        let bad = br#"{"singleton": {"control": {"cluster": "c"}, "fleet": {"expected_envoys": 3, "interval_ms": 1}}}"#;
        assert_eq!(PluginConfig::from_json(bad).unwrap_err().field, "singleton.fleet.interval_ms");
    }

    #[test]
    fn unknown_fields_in_plugin_config_are_rejected() {
        let err = PluginConfig::from_json(br#"{"singleton": {"control": {"cluster": "c", "pol": 1}}}"#).unwrap_err();
        assert_eq!(err.field, "singleton.control.pol");
        assert!(PluginConfig::from_json(b"not json").is_err());
        assert!(PluginConfig::from_json(b"{}").is_err(), "filter config needs a policy");
    }

    #[test]
    fn credential_headers_default_to_authorization_and_x_api_key_and_can_be_renamed() {
        let cfg = filter("").unwrap();
        assert_eq!(cfg.credential_headers, CredentialHeaders::default());
        assert_eq!(cfg.credential_headers.api_key, "x-api-key");
        let renamed = filter(r#", "credential_headers": {"api_key": "x-fusebox-key"}"#).unwrap();
        assert_eq!(
            (renamed.credential_headers.authorization.as_str(), renamed.credential_headers.api_key.as_str()),
            ("authorization", "x-fusebox-key")
        );
        let bad = filter(r#", "credential_headers": {"api_key": "X Fusebox"}"#).unwrap_err();
        assert_eq!(bad.field, "credential_headers.api_key");
    }
}
