//! The metrics a tenant's breaker watches, with the stable names used in replies,
//! headers (`x-fusebox-reason`) and policy fields.

use serde::{Deserialize, Serialize};

/// A velocity metric with a threshold in the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Metric {
    #[serde(rename = "tokens_10s")]
    Tokens10s,
    #[serde(rename = "tokens_60s")]
    Tokens60s,
    #[serde(rename = "requests_10s")]
    Requests10s,
    #[serde(rename = "tool_calls_60s")]
    ToolCalls60s,
    /// Share of completed responses that were upstream errors (5xx, 429, error events), in percent.
    #[serde(rename = "error_ratio")]
    ErrorRatio,
    /// Requests in flight at once.
    #[serde(rename = "concurrency")]
    Concurrency,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::Tokens10s,
        Metric::Tokens60s,
        Metric::Requests10s,
        Metric::ToolCalls60s,
        Metric::ErrorRatio,
        Metric::Concurrency,
    ];

    /// Stable name used in headers, reply bodies and policy fields.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Tokens10s => "tokens_10s",
            Metric::Tokens60s => "tokens_60s",
            Metric::Requests10s => "requests_10s",
            Metric::ToolCalls60s => "tool_calls_60s",
            Metric::ErrorRatio => "error_ratio",
            Metric::Concurrency => "concurrency",
        }
    }

    /// Length of the sliding window in seconds (1 for concurrency, which is instantaneous).
    pub fn window_s(self) -> u64 {
        match self {
            Metric::Tokens10s | Metric::Requests10s => 10,
            Metric::Tokens60s | Metric::ToolCalls60s | Metric::ErrorRatio => 60,
            Metric::Concurrency => 1,
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Metric::Tokens10s => 1,
            Metric::Tokens60s => 2,
            Metric::Requests10s => 3,
            Metric::ToolCalls60s => 4,
            Metric::ErrorRatio => 5,
            Metric::Concurrency => 6,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.code() == code)
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_names_match_the_reply_names() {
        for m in Metric::ALL {
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
        }
    }

    #[test]
    fn metric_codes_round_trip() {
        for m in Metric::ALL {
            assert_eq!(Metric::from_code(m.code()), Some(m));
        }
        assert_eq!(Metric::from_code(0), None);
    }
}
