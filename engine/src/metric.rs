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
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::Tokens10s, Metric::Tokens60s, Metric::Requests10s];

    /// Stable name used in headers, reply bodies and policy fields.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Tokens10s => "tokens_10s",
            Metric::Tokens60s => "tokens_60s",
            Metric::Requests10s => "requests_10s",
        }
    }

    /// Length of the sliding window in seconds.
    pub fn window_s(self) -> u64 {
        match self {
            Metric::Tokens10s | Metric::Requests10s => 10,
            Metric::Tokens60s => 60,
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Metric::Tokens10s => 1,
            Metric::Tokens60s => 2,
            Metric::Requests10s => 3,
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
