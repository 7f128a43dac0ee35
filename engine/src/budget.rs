//! Budgets, separate from the breaker: tokens per UTC day and cost per UTC calendar month.
//! An exhausted budget refuses requests until it resets; nothing trips or cools down.

use crate::state::codec::{take_u32, take_u64};
use serde::{Deserialize, Serialize};

const DAY_S: u64 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Budget {
    #[serde(rename = "budget_tokens_day")]
    TokensDay,
    #[serde(rename = "budget_cost_month")]
    CostMonth,
}

impl Budget {
    pub fn as_str(self) -> &'static str {
        match self {
            Budget::TokensDay => "budget_tokens_day",
            Budget::CostMonth => "budget_cost_month",
        }
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic Gregorian (Hinnant's algorithm).
pub fn civil_date(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn civil_from_days(days: i64) -> (i64, i64) {
    let (y, m, _) = civil_date(days);
    (y, m)
}

/// (year, month 1-12, day 1-31) to days since 1970-01-01.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days(now_s: u64) -> i64 {
    i64::try_from(now_s / DAY_S).unwrap_or(i64::MAX / 2)
}

/// A number that identifies the UTC month of `now_s`.
pub fn month_of(now_s: u64) -> u32 {
    let (y, m) = civil_from_days(days(now_s));
    u32::try_from(y * 12 + m - 1).unwrap_or(0)
}

pub fn day_of(now_s: u64) -> u32 {
    u32::try_from(now_s / DAY_S).unwrap_or(u32::MAX)
}

/// Seconds until the budget's period resets (next UTC midnight or first of the next month).
pub fn seconds_to_reset(budget: Budget, now_s: u64) -> u64 {
    match budget {
        Budget::TokensDay => DAY_S - now_s % DAY_S,
        Budget::CostMonth => {
            let (y, m) = civil_from_days(days(now_s));
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            let next = u64::try_from(days_from_civil(ny, nm, 1)).unwrap_or(0) * DAY_S;
            next.saturating_sub(now_s).max(1)
        }
    }
}

/// Usage counted against the budgets, for the current day and month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetState {
    pub day: u32,
    pub tokens_day: u64,
    pub month: u32,
    /// Cost in millionths of the price table's currency.
    pub cost_month_micros: u64,
}

impl BudgetState {
    /// Starts a new day or month when the clock has moved into one.
    pub fn roll(&mut self, now_s: u64) {
        let (day, month) = (day_of(now_s), month_of(now_s));
        if day != self.day {
            self.day = day;
            self.tokens_day = 0;
        }
        if month != self.month {
            self.month = month;
            self.cost_month_micros = 0;
        }
    }

    pub fn add(&mut self, now_s: u64, tokens: u64, cost_micros: u64) {
        self.roll(now_s);
        self.tokens_day = self.tokens_day.saturating_add(tokens);
        self.cost_month_micros = self.cost_month_micros.saturating_add(cost_micros);
    }

    /// Byte length of [`BudgetState::encode`].
    pub(crate) const ENCODED_LEN: usize = 24;

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.day.to_le_bytes());
        out.extend_from_slice(&self.tokens_day.to_le_bytes());
        out.extend_from_slice(&self.month.to_le_bytes());
        out.extend_from_slice(&self.cost_month_micros.to_le_bytes());
    }

    pub(crate) fn decode(input: &mut &[u8]) -> Option<BudgetState> {
        Some(BudgetState {
            day: take_u32(input)?,
            tokens_day: take_u64(input)?,
            month: take_u32(input)?,
            cost_month_micros: take_u64(input)?,
        })
    }

    /// The same in a few bytes (varints), for a state kept as its budget alone.
    pub(crate) fn encode_compact(&self, out: &mut Vec<u8>) {
        for v in [u64::from(self.day), self.tokens_day, u64::from(self.month), self.cost_month_micros] {
            crate::state::codec::put_varint(out, v);
        }
    }

    pub(crate) fn decode_compact(input: &mut &[u8]) -> Option<BudgetState> {
        use crate::state::codec::take_varint;
        Some(BudgetState {
            day: u32::try_from(take_varint(input)?).ok()?,
            tokens_day: take_varint(input)?,
            month: u32::try_from(take_varint(input)?).ok()?,
            cost_month_micros: take_varint(input)?,
        })
    }

    /// Used amount of a budget at `now_s` (tokens, or cost in micros).
    pub fn used(&self, budget: Budget, now_s: u64) -> u64 {
        match budget {
            Budget::TokensDay if self.day == day_of(now_s) => self.tokens_day,
            Budget::CostMonth if self.month == month_of(now_s) => self.cost_month_micros,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-23T10:00:00Z
    const NOW: u64 = 1_795_428_000;

    #[test]
    fn calendar_conversions_agree_with_known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1));
        assert_eq!(days_from_civil(2026, 12, 1) * 86_400, 1_796_083_200);
        assert_eq!(civil_from_days(days(NOW)), (2026, 11));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2));
    }

    #[test]
    fn resets_are_at_utc_midnight_and_the_first_of_next_month() {
        assert_eq!(seconds_to_reset(Budget::TokensDay, NOW), 14 * 3600);
        assert_eq!(seconds_to_reset(Budget::CostMonth, NOW), 1_796_083_200 - NOW);
        // December rolls into January.
        let dec_31 = days_from_civil(2026, 12, 31) as u64 * 86_400;
        assert_eq!(seconds_to_reset(Budget::CostMonth, dec_31), 86_400);
    }

    #[test]
    fn usage_rolls_over_with_the_period() {
        let mut b = BudgetState::default();
        b.add(NOW, 500, 2_000);
        assert_eq!((b.used(Budget::TokensDay, NOW), b.used(Budget::CostMonth, NOW)), (500, 2_000));
        let tomorrow = NOW + 86_400;
        assert_eq!(b.used(Budget::TokensDay, tomorrow), 0);
        assert_eq!(b.used(Budget::CostMonth, tomorrow), 2_000);
        b.add(tomorrow, 7, 1);
        assert_eq!((b.tokens_day, b.cost_month_micros), (7, 2_001));
        let next_month = NOW + 10 * 86_400;
        assert_eq!(b.used(Budget::CostMonth, next_month), 0);
    }
}
