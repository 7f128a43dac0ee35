//! What an operator sets on a tenant's breaker: the kill switch, a breaker held closed, and
//! the epoch that tells every worker a reset happened.

use serde::{Deserialize, Serialize};

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
