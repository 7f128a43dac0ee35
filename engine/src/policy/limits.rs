//! The limits a tier holds and the overrides a tenant entry holds, each limit declared once
//! (see `overridable.rs`), with the checks the schema cannot express.

use super::operator::{ForcedBreaker, Operator};
use super::overridable::overridable;
use super::shadow::{Limit, LimitMode, LimitSet};
use super::topup::{ActiveTopUps, TopUps};
use crate::budget::Budget;
use crate::metric::Metric;
use crate::strict::{field_error, parse_json, PolicyError};

/// The largest threshold accepted; beyond it a limit is meaningless (use no limit instead).
pub const MAX_THRESHOLD: u64 = 1 << 40;

overridable! {
    #[derive(Copy, Eq)]
    pub struct BreakerSettings {}
    /// Partial breaker settings in a tenant override.
    #[derive(Copy, Eq)]
    pub struct BreakerOverride {}
    overridable {
        /// First cooldown after a trip, in seconds.
        cooldown_s: u32 = 30,
        /// Cap for the doubling cooldown on repeated trips.
        max_cooldown_s: u32 = 300,
        /// Probes admitted in HALF_OPEN; this many clean probes close the breaker.
        half_open_probes: u32 = 2,
    }
}

overridable! {
    /// A tier's limits. An absent threshold means the metric is not limited.
    pub struct Limits {
        pub breaker: BreakerSettings,
        /// What an operator set on this tenant's breaker (from its policy entry, never from a tier).
        #[serde(skip)]
        pub operator: Operator,
        /// The tenant's budget top-ups (from its policy entry, never from a tier).
        #[serde(skip)]
        pub topups: ActiveTopUps,
    }
    /// A tenant's entry: its tier and any limits that differ from the tier's.
    pub struct TenantPolicy {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tier: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub breaker: Option<BreakerOverride>,
        /// Set by control's breaker endpoint (`open` = kill switch); absent = automatic.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub forced: Option<ForcedBreaker>,
        /// Set by control: see [`Operator::epoch`].
        #[serde(default, skip_serializing_if = "is_zero")]
        pub breaker_epoch: u64,
        /// Budgets raised for their current period (`POST /v1/tenants/{t}/topup`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub topup: Option<TopUps>,
    }
    overridable {
        tokens_10s: u64,
        tokens_60s: u64,
        requests_10s: u64,
        /// Tool calls (OpenAI tool_calls, Responses function calls, Anthropic tool_use) per 60 s.
        tool_calls_60s: u64,
        /// Share (0-1] of completed responses in the last 60 s that may be upstream errors.
        error_ratio: f64,
        /// Completed responses in the window before `error_ratio` is judged.
        error_min_requests: u32 = 20,
        /// Requests in flight at once; more are refused (without tripping the breaker).
        concurrency: u64,
        /// Tokens per UTC day; once used up, requests are refused until midnight UTC.
        budget_tokens_day: u64,
        /// Cost per UTC calendar month, in the currency of `prices`.
        budget_cost_month: f64,
        /// Agent runs (`x-agent-run-id`): requests per run tree.
        run_steps: u64,
        /// Sub-agent nesting below the root run (root = 0).
        run_depth: u64,
        /// Wall-clock seconds since the run tree's first request.
        run_duration_s: u64,
        /// Tokens used by the whole run tree.
        run_tokens: u64,
        /// A run's record is forgotten after this many seconds without a request.
        run_ttl_s: u64 = 3600,
        /// End the tenant's SSE streams in flight, with a final error event, when its breaker opens.
        terminate_streams: bool = false,
        /// Lower a request's `max_tokens` (and kin) to what remains of its token windows.
        clamp_max_tokens: bool = false,
        /// Output tokens reserved for a request before the tenant has responses to learn from
        /// (after that: the largest output of its recent responses, and never more than the
        /// request's own `max_tokens`).
        default_output_tokens: u64 = 1024,
        /// Allowed responses carry `x-fusebox-warning` once a metric passes this share of its threshold.
        warn_ratio: f64 = 0.5,
        /// `shadow`: no limit here refuses; would-be refusals are counted and reported instead.
        mode: LimitMode = LimitMode::Enforce,
        /// Limits judged in shadow (counted and reported, never refusing) while the rest enforce.
        shadow: LimitSet = LimitSet::EMPTY,
        /// Limits per model: `{"gpt-4o*": {"tokens_60s": 50000}}`, judged once the request body
        /// names its model (a tenant entry's map replaces its tier's whole).
        models: ModelLimits = ModelLimits::default(),
    }
}

/// Limits by model name or pattern (`gpt-4o*` matches every name starting `gpt-4o`; the
/// longest matching pattern wins), each a tier's fields, in a state of their own per tenant.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ModelLimits(pub std::collections::BTreeMap<String, Limits>);

impl crate::policy::overridable::Unset for ModelLimits {
    fn is_unset(&self) -> bool {
        self.0.is_empty()
    }
}

/// At most this many model patterns per tier or tenant.
pub const MAX_MODEL_PATTERNS: usize = 32;

impl ModelLimits {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pattern and limits for `model`, if any pattern matches it.
    pub fn for_model(&self, model: &str) -> Option<(&str, &Limits)> {
        self.0
            .iter()
            .filter(|(p, _)| match p.strip_suffix('*') {
                Some(prefix) => model.starts_with(prefix),
                None => model == p.as_str(),
            })
            .max_by_key(|(p, _)| p.len())
            .map(|(p, l)| (p.as_str(), l))
    }

    fn validate(&self, at: &str) -> Result<(), PolicyError> {
        if self.0.len() > MAX_MODEL_PATTERNS {
            return Err(field_error(format!("{at}.models"), format!("at most {MAX_MODEL_PATTERNS} patterns")));
        }
        for (pattern, limits) in &self.0 {
            let at = format!("{at}.models.{pattern}");
            let name = pattern.strip_suffix('*').unwrap_or(pattern);
            let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'@');
            if pattern.len() > 128 || (name.is_empty() && pattern != "*") || !name.bytes().all(ok) {
                return Err(field_error(at, "a model name, or a prefix ending in '*' (1-128 of [A-Za-z0-9-_.:/@])"));
            }
            if !limits.models.is_empty() {
                return Err(field_error(format!("{at}.models"), "model limits do not nest"));
            }
            limits.validate(&at)?;
        }
        Ok(())
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Limits {
    /// Parses a tier strictly (as `PUT /v1/tiers/{tier}` receives it); values are checked when
    /// the policy holding it is validated.
    pub fn from_json(json: &[u8]) -> Result<Limits, PolicyError> {
        parse_json(json)
    }

    /// No thresholds at all (defaults for everything else).
    pub fn unlimited() -> Limits {
        Limits::default()
    }

    /// Whether this tier or tenant has `budget` at all (a top-up can only raise one it has).
    pub fn has_budget(&self, budget: Budget) -> bool {
        match budget {
            Budget::TokensDay => self.budget_tokens_day.is_some(),
            Budget::CostMonth => self.budget_cost_month.is_some(),
        }
    }

    /// A budget's limit at `now_s` in its unit (tokens, or cost in millionths of the currency):
    /// the tier's (or tenant's) with any top-up for the current period.
    pub fn budget_limit(&self, budget: Budget, now_s: u64) -> Option<u64> {
        let base = match budget {
            Budget::TokensDay => self.budget_tokens_day,
            // Validated finite and positive; far below u64::MAX after scaling.
            Budget::CostMonth => self.budget_cost_month.map(|c| (c * 1e6).round() as u64),
        };
        base.map(|b| b.saturating_add(self.topups.raise(budget, now_s)))
    }

    /// Whether these limits can refuse anything a scope's state judges: a window, the error
    /// ratio, concurrency, a budget, or an operator's kill switch.
    pub fn limits_anything(&self) -> bool {
        Metric::ALL.into_iter().any(|m| self.threshold(m).is_some())
            || self.budget_tokens_day.is_some()
            || self.budget_cost_month.is_some()
            || self.operator.forced.is_some()
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

    pub(crate) fn validate(&self, at: &str) -> Result<(), PolicyError> {
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
        if self.default_output_tokens == 0 || self.default_output_tokens > 1_000_000 {
            return Err(field_error(format!("{at}.default_output_tokens"), "must be between 1 and 1000000"));
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
        self.models.validate(at)?;
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

impl TenantPolicy {
    /// Parses a tenant entry strictly (as `PUT /v1/tenants/{t}` receives it); the whole policy
    /// is validated once the entry is in place.
    pub fn from_json(json: &[u8]) -> Result<TenantPolicy, PolicyError> {
        parse_json(json)
    }

    /// This entry's limits: `base` (its tier's) with what the entry overrides.
    pub(crate) fn apply(&self, base: &Limits) -> Limits {
        let mut l = base.clone();
        self.override_fields(&mut l);
        if let Some(b) = &self.breaker {
            b.override_fields(&mut l.breaker);
        }
        l.operator = Operator { forced: self.forced.as_ref().map(|f| f.state), epoch: self.breaker_epoch };
        // Checked when the policy was validated (see `check_topups`).
        l.topups = self.topup.as_ref().and_then(|t| t.active("").ok()).unwrap_or_default();
        l
    }

    /// A top-up must be usable and raise a budget the tenant has.
    pub(crate) fn check_topups(&self, limits: &Limits, at: &str) -> Result<(), PolicyError> {
        let Some(topups) = &self.topup else { return Ok(()) };
        topups.active(&format!("{at}.topup"))?;
        for budget in [Budget::TokensDay, Budget::CostMonth] {
            if topups.get(budget).is_some() && !limits.has_budget(budget) {
                return Err(field_error(
                    format!("{at}.topup.{budget}"),
                    format!("the tenant has no {budget} to raise (set one on its tier or entry)"),
                ));
            }
        }
        Ok(())
    }
}

impl Limits {
    /// The limits this tier or tenant shadows: all of them in `shadow` mode, else its list.
    pub fn shadowed(&self) -> LimitSet {
        match self.mode {
            LimitMode::Shadow => LimitSet::all(),
            LimitMode::Enforce => self.shadow,
        }
    }

    /// Splits these limits into what admission enforces and what it only shadows (`None` when
    /// nothing is shadowed). The enforced part keeps the shadowed set in `shadow`, so whatever
    /// keeps state alive (a running budget) still sees those limits.
    pub fn split_shadow(mut self) -> (Limits, Option<Box<Limits>>) {
        let shadowed = self.shadowed();
        if shadowed.is_empty() {
            return (self, None);
        }
        let mut shadow = Limits { breaker: self.breaker, topups: self.topups, ..Limits::unlimited() };
        shadow.error_min_requests = self.error_min_requests;
        shadow.warn_ratio = self.warn_ratio;
        for limit in shadowed.iter() {
            move_threshold(limit, &mut self, &mut shadow);
        }
        self.mode = LimitMode::Enforce;
        self.shadow = shadowed;
        (self, Some(Box::new(shadow)))
    }
}

/// Moves this limit's threshold from `from` to `to` (the shadow part of a split).
fn move_threshold(limit: Limit, from: &mut Limits, to: &mut Limits) {
    match limit {
        Limit::Tokens10s => to.tokens_10s = from.tokens_10s.take(),
        Limit::Tokens60s => to.tokens_60s = from.tokens_60s.take(),
        Limit::Requests10s => to.requests_10s = from.requests_10s.take(),
        Limit::ToolCalls60s => to.tool_calls_60s = from.tool_calls_60s.take(),
        Limit::ErrorRatio => to.error_ratio = from.error_ratio.take(),
        Limit::Concurrency => to.concurrency = from.concurrency.take(),
        Limit::BudgetTokensDay => to.budget_tokens_day = from.budget_tokens_day.take(),
        Limit::BudgetCostMonth => to.budget_cost_month = from.budget_cost_month.take(),
        Limit::RunSteps => to.run_steps = from.run_steps.take(),
        Limit::RunDepth => to.run_depth = from.run_depth.take(),
        Limit::RunDurationS => to.run_duration_s = from.run_duration_s.take(),
        Limit::RunTokens => to.run_tokens = from.run_tokens.take(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting_moves_each_shadowed_threshold_out_of_what_is_enforced() {
        let l = Limits {
            tokens_60s: Some(100),
            requests_10s: Some(5),
            budget_cost_month: Some(2.0),
            run_steps: Some(3),
            shadow: [Limit::Tokens60s, Limit::RunSteps].into_iter().collect(),
            ..Limits::unlimited()
        };
        let (enforced, shadow) = l.split_shadow();
        let shadow = shadow.unwrap();
        assert_eq!((enforced.tokens_60s, enforced.run_steps), (None, None));
        assert_eq!((enforced.requests_10s, enforced.budget_cost_month), (Some(5), Some(2.0)));
        assert_eq!((shadow.tokens_60s, shadow.run_steps), (Some(100), Some(3)));
        assert_eq!((shadow.requests_10s, shadow.budget_cost_month), (None, None));
        assert!(enforced.shadow.contains(Limit::Tokens60s));
    }

    #[test]
    fn a_tier_in_shadow_mode_enforces_nothing() {
        let l = Limits { tokens_10s: Some(1), concurrency: Some(1), mode: LimitMode::Shadow, ..Limits::unlimited() };
        let (enforced, shadow) = l.split_shadow();
        assert_eq!((enforced.tokens_10s, enforced.concurrency), (None, None));
        assert_eq!(shadow.map(|s| (s.tokens_10s, s.concurrency)), Some((Some(1), Some(1))));
        assert_eq!(enforced.shadowed(), LimitSet::all());
    }

    #[test]
    fn nothing_shadowed_splits_into_the_limits_alone() {
        let l = Limits { tokens_10s: Some(1), ..Limits::unlimited() };
        assert_eq!(l.clone().split_shadow(), (l, None));
    }
}
