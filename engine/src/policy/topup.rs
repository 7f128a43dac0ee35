//! Budget top-ups: an operator raises a tenant's budget for the current period only, without
//! touching what was spent. The policy entry names the period (`2026-12-04` for the day budget,
//! `2026-12` for the month budget), so a top-up lapses by itself when its period ends and every
//! Envoy agrees on when, with no clock of control's in the decision.

use crate::budget::{civil_date, day_of, days_from_civil, month_of, Budget};
use crate::strict::{field_error, PolicyError};
use serde::{Deserialize, Serialize};

/// The largest top-up of the cost budget, as for the budget itself.
const MAX_COST: f64 = 1e12;

/// What one budget was raised by, for one period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopUp {
    /// `YYYY-MM-DD` (UTC day) for `budget_tokens_day`, `YYYY-MM` (UTC month) for `budget_cost_month`.
    pub period: String,
    /// Added to the budget, in its unit: tokens, or the currency of `prices`.
    pub amount: f64,
}

/// A tenant entry's top-ups, by budget.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopUps {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens_day: Option<TopUp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_cost_month: Option<TopUp>,
}

/// A top-up as admission uses it: the number of its period (see [`period_number`]) and the
/// amount in the budget's unit (tokens, or cost in millionths).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Raise {
    period: u32,
    units: u64,
}

/// The top-ups admission applies, by budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActiveTopUps {
    tokens_day: Option<Raise>,
    cost_month: Option<Raise>,
}

impl ActiveTopUps {
    /// What `budget` is raised by at `now_s` (0 outside the top-up's period).
    pub fn raise(&self, budget: Budget, now_s: u64) -> u64 {
        let raise = match budget {
            Budget::TokensDay => self.tokens_day,
            Budget::CostMonth => self.cost_month,
        };
        raise.filter(|r| r.period == period_number(budget, now_s)).map_or(0, |r| r.units)
    }
}

/// The number of `budget`'s period at `now_s`: the UTC day or month, as budgets roll.
pub fn period_number(budget: Budget, now_s: u64) -> u32 {
    match budget {
        Budget::TokensDay => day_of(now_s),
        Budget::CostMonth => month_of(now_s),
    }
}

/// `budget`'s period at `now_s` as a top-up names it.
pub fn period_label(budget: Budget, now_s: u64) -> String {
    let (y, m, d) = civil_date(i64::from(day_of(now_s)));
    match budget {
        Budget::TokensDay => format!("{y:04}-{m:02}-{d:02}"),
        Budget::CostMonth => format!("{y:04}-{m:02}"),
    }
}

/// The period number of a label, if it is a real day (or month) in `budget`'s format.
fn parse_period(budget: Budget, label: &str) -> Option<u32> {
    let parts: Vec<&str> = label.split('-').collect();
    let num =
        |s: &str, len: usize| (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?;
    match (budget, parts.as_slice()) {
        (Budget::TokensDay, [y, m, d]) => {
            let (y, m, d): (i64, i64, i64) = (num(y, 4)?, num(m, 2)?, num(d, 2)?);
            let days = days_from_civil(y, m, d);
            // Only a date that round-trips is real (no 2026-02-30).
            (y >= 1970 && civil_date(days) == (y, m, d)).then(|| u32::try_from(days).ok())?
        }
        (Budget::CostMonth, [y, m]) => {
            let (y, m): (i64, i64) = (num(y, 4)?, num(m, 2)?);
            (y >= 1970 && (1..=12).contains(&m)).then(|| u32::try_from(y * 12 + m - 1).ok())?
        }
        _ => None,
    }
}

impl TopUp {
    fn active(&self, budget: Budget, at: &str) -> Result<Raise, PolicyError> {
        let period = parse_period(budget, &self.period).ok_or_else(|| {
            let format = if budget == Budget::TokensDay { "YYYY-MM-DD" } else { "YYYY-MM" };
            field_error(format!("{at}.period"), format!("must be a UTC {format}"))
        })?;
        let units = match budget {
            Budget::TokensDay if self.amount >= 1.0 && self.amount.fract() == 0.0 && self.amount <= 1e15 => {
                self.amount as u64
            }
            Budget::CostMonth if self.amount > 0.0 && self.amount <= MAX_COST => (self.amount * 1e6).round() as u64,
            Budget::TokensDay => {
                return Err(field_error(format!("{at}.amount"), "must be a whole number of tokens, at least 1"))
            }
            Budget::CostMonth => {
                return Err(field_error(format!("{at}.amount"), "must be greater than 0 and at most 1e12"))
            }
        };
        Ok(Raise { period, units })
    }
}

impl TopUps {
    pub fn get(&self, budget: Budget) -> Option<&TopUp> {
        match budget {
            Budget::TokensDay => self.budget_tokens_day.as_ref(),
            Budget::CostMonth => self.budget_cost_month.as_ref(),
        }
    }

    pub fn clear(&mut self, budget: Budget) {
        match budget {
            Budget::TokensDay => self.budget_tokens_day = None,
            Budget::CostMonth => self.budget_cost_month = None,
        }
    }

    pub fn set(&mut self, budget: Budget, topup: TopUp) {
        match budget {
            Budget::TokensDay => self.budget_tokens_day = Some(topup),
            Budget::CostMonth => self.budget_cost_month = Some(topup),
        }
    }

    /// The top-ups as admission applies them; an unusable one is an error naming its field
    /// (under `at`, the entry's `topup`).
    pub(crate) fn active(&self, at: &str) -> Result<ActiveTopUps, PolicyError> {
        let one = |budget: Budget| {
            self.get(budget).map(|t| t.active(budget, &format!("{at}.{}", budget.as_str()))).transpose()
        };
        Ok(ActiveTopUps { tokens_day: one(Budget::TokensDay)?, cost_month: one(Budget::CostMonth)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-04T12:00:00Z.
    const NOW_S: u64 = 1_796_385_600;

    fn topups(json: &str) -> Result<ActiveTopUps, PolicyError> {
        serde_json::from_str::<TopUps>(json).unwrap().active("topup")
    }

    #[test]
    fn a_top_up_raises_its_budget_in_its_own_period_only() {
        assert_eq!(period_label(Budget::TokensDay, NOW_S), "2026-12-04");
        assert_eq!(period_label(Budget::CostMonth, NOW_S), "2026-12");
        let t = topups(
            r#"{"budget_tokens_day": {"period": "2026-12-04", "amount": 5000},
                "budget_cost_month": {"period": "2026-12", "amount": 2.5}}"#,
        )
        .unwrap();
        assert_eq!(t.raise(Budget::TokensDay, NOW_S), 5000);
        assert_eq!(t.raise(Budget::CostMonth, NOW_S), 2_500_000);
        assert_eq!(t.raise(Budget::TokensDay, NOW_S + 86_400), 0, "the next day starts from the tier's budget");
        assert_eq!(t.raise(Budget::CostMonth, NOW_S + 86_400), 2_500_000, "the month is the same");
        assert_eq!(t.raise(Budget::CostMonth, NOW_S + 31 * 86_400), 0);
    }

    #[test]
    fn a_period_must_be_a_real_day_or_month_in_the_budgets_format() {
        for (json, field) in [
            (r#"{"budget_tokens_day": {"period": "2026-02-30", "amount": 1}}"#, "topup.budget_tokens_day.period"),
            (r#"{"budget_tokens_day": {"period": "2026-12", "amount": 1}}"#, "topup.budget_tokens_day.period"),
            (r#"{"budget_cost_month": {"period": "2026-13", "amount": 1}}"#, "topup.budget_cost_month.period"),
            (r#"{"budget_cost_month": {"period": "26-12", "amount": 1}}"#, "topup.budget_cost_month.period"),
            (r#"{"budget_tokens_day": {"period": "2026-12-04", "amount": 0.5}}"#, "topup.budget_tokens_day.amount"),
            (r#"{"budget_cost_month": {"period": "2026-12", "amount": -1}}"#, "topup.budget_cost_month.amount"),
        ] {
            assert_eq!(topups(json).unwrap_err().field, field, "{json}");
        }
    }
}
