//! Shadow mode: a limit (or a whole tier) that is judged on every request but refuses nobody.
//! A would-be refusal is counted and reported under the reason the limit would have refused
//! with, so an operator can roll a limit out, watch whom it would stop, and then enforce it.
//!
//! Admission judges with the enforced part of the limits (`Limits::split_shadow`); the
//! shadowed thresholds are checked read-only beside it. Usage is counted the same either way,
//! so flipping a limit to `enforce` refuses at once when the tenant is already over it.

use super::overridable::Unset;
use crate::budget::Budget;
use crate::metric::Metric;
use crate::run::RunLimit;
use serde::{Deserialize, Serialize};

/// Whether a tier's (or tenant's) limits refuse: `shadow` shadows every limit it holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitMode {
    #[default]
    Enforce,
    Shadow,
}

/// Every limit that can be shadowed, by its policy field name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    #[serde(rename = "tokens_10s")]
    Tokens10s,
    #[serde(rename = "tokens_60s")]
    Tokens60s,
    #[serde(rename = "requests_10s")]
    Requests10s,
    #[serde(rename = "tool_calls_60s")]
    ToolCalls60s,
    ErrorRatio,
    Concurrency,
    BudgetTokensDay,
    BudgetCostMonth,
    RunSteps,
    RunDepth,
    RunDurationS,
    RunTokens,
}

impl Limit {
    pub const ALL: [Limit; 12] = [
        Limit::Tokens10s,
        Limit::Tokens60s,
        Limit::Requests10s,
        Limit::ToolCalls60s,
        Limit::ErrorRatio,
        Limit::Concurrency,
        Limit::BudgetTokensDay,
        Limit::BudgetCostMonth,
        Limit::RunSteps,
        Limit::RunDepth,
        Limit::RunDurationS,
        Limit::RunTokens,
    ];

    pub fn of_metric(metric: Metric) -> Limit {
        match metric {
            Metric::Tokens10s => Limit::Tokens10s,
            Metric::Tokens60s => Limit::Tokens60s,
            Metric::Requests10s => Limit::Requests10s,
            Metric::ToolCalls60s => Limit::ToolCalls60s,
            Metric::ErrorRatio => Limit::ErrorRatio,
            Metric::Concurrency => Limit::Concurrency,
        }
    }

    pub fn of_budget(budget: Budget) -> Limit {
        match budget {
            Budget::TokensDay => Limit::BudgetTokensDay,
            Budget::CostMonth => Limit::BudgetCostMonth,
        }
    }

    /// The run limit, for a limit on agent runs (the run's capacity is never shadowed).
    pub fn of_run(limit: RunLimit) -> Option<Limit> {
        match limit {
            RunLimit::Steps => Some(Limit::RunSteps),
            RunLimit::Depth => Some(Limit::RunDepth),
            RunLimit::Duration => Some(Limit::RunDurationS),
            RunLimit::Tokens => Some(Limit::RunTokens),
            RunLimit::Capacity => None,
        }
    }

    /// The reason an enforced refusal by this limit carries (`x-fusebox-reason`), so shadowed
    /// and enforced refusals are counted under the same label.
    pub fn reason(self) -> &'static str {
        match self {
            Limit::Tokens10s => Metric::Tokens10s.as_str(),
            Limit::Tokens60s => Metric::Tokens60s.as_str(),
            Limit::Requests10s => Metric::Requests10s.as_str(),
            Limit::ToolCalls60s => Metric::ToolCalls60s.as_str(),
            Limit::ErrorRatio => Metric::ErrorRatio.as_str(),
            Limit::Concurrency => Metric::Concurrency.as_str(),
            Limit::BudgetTokensDay => Budget::TokensDay.as_str(),
            Limit::BudgetCostMonth => Budget::CostMonth.as_str(),
            Limit::RunSteps => RunLimit::Steps.as_str(),
            Limit::RunDepth => RunLimit::Depth.as_str(),
            Limit::RunDurationS => RunLimit::Duration.as_str(),
            Limit::RunTokens => RunLimit::Tokens.as_str(),
        }
    }

    pub(crate) fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of limits, written in a policy as a list of their names (`["tokens_60s"]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitSet(u16);

impl LimitSet {
    pub const EMPTY: LimitSet = LimitSet(0);

    pub fn all() -> LimitSet {
        Limit::ALL.into_iter().collect()
    }

    pub fn contains(self, limit: Limit) -> bool {
        self.0 & limit.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Limit> {
        Limit::ALL.into_iter().filter(move |l| self.contains(*l))
    }
}

impl FromIterator<Limit> for LimitSet {
    fn from_iter<I: IntoIterator<Item = Limit>>(iter: I) -> Self {
        LimitSet(iter.into_iter().fold(0, |bits, l| bits | l.bit()))
    }
}

impl Unset for LimitMode {
    fn is_unset(&self) -> bool {
        *self == LimitMode::Enforce
    }
}

impl Unset for LimitSet {
    fn is_unset(&self) -> bool {
        self.is_empty()
    }
}

impl Serialize for LimitSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for LimitSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<Limit>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shadow_list_parses_from_limit_names_and_refuses_others() {
        let set: LimitSet = serde_json::from_str(r#"["tokens_60s", "budget_cost_month", "tokens_60s"]"#).unwrap();
        assert_eq!(set.iter().collect::<Vec<_>>(), [Limit::Tokens60s, Limit::BudgetCostMonth]);
        assert_eq!(serde_json::to_string(&set).unwrap(), r#"["tokens_60s","budget_cost_month"]"#);
        let err = serde_json::from_str::<LimitSet>(r#"["tokens_6s"]"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant `tokens_6s`"), "{err}");
    }

    #[test]
    fn every_shadowed_reason_is_the_enforced_refusals_reason() {
        let reasons: Vec<&str> = Limit::ALL.iter().map(|l| l.reason()).collect();
        assert!(reasons.contains(&"run_duration") && reasons.contains(&"budget_tokens_day"));
        for m in Metric::ALL {
            assert_eq!(Limit::of_metric(m).reason(), m.as_str());
        }
    }
}
