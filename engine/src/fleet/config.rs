//! The singleton's fleet sync settings: `{"singleton": {"fleet": {...}}}`.

use crate::strict::{field_error, PolicyError};
use serde::{Deserialize, Serialize};

fn default_path() -> String {
    "/v1/fleet/sync".to_string()
}
fn default_interval_ms() -> u64 {
    250
}
fn default_fallback_after_ms() -> u64 {
    1000
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// Control's sync endpoint (on the control cluster).
    #[serde(default = "default_path")]
    pub path: String,
    /// How often this Envoy trades usage with the rest of the fleet: the staleness, and so the
    /// overshoot bound, of every fleet-wide limit.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// How many Envoys share the limits: without fleet counts, each enforces 1/N of every window
    /// and of the concurrency cap. Required, since only the operator knows it.
    pub expected_envoys: u32,
    /// No successful sync for this long and the Envoy falls back to its local share.
    #[serde(default = "default_fallback_after_ms")]
    pub fallback_after_ms: u64,
}

impl FleetConfig {
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !self.path.starts_with('/') {
            return Err(field_error("path", "must start with '/'"));
        }
        if !(50..=5000).contains(&self.interval_ms) {
            return Err(field_error("interval_ms", "must be between 50 and 5000"));
        }
        if !(1..=10_000).contains(&self.expected_envoys) {
            return Err(field_error("expected_envoys", "must be between 1 and 10000"));
        }
        if self.fallback_after_ms < self.interval_ms || self.fallback_after_ms > 60_000 {
            return Err(field_error("fallback_after_ms", "must be at least interval_ms and at most 60000"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<FleetConfig, PolicyError> {
        let c: FleetConfig = crate::strict::parse_json(json.as_bytes())?;
        c.validate().map(|()| c)
    }

    #[test]
    fn only_the_number_of_envoys_must_be_given() {
        let c = parse(r#"{"expected_envoys": 3}"#).unwrap();
        assert_eq!((c.path.as_str(), c.interval_ms, c.fallback_after_ms), ("/v1/fleet/sync", 250, 1000));
        assert!(parse("{}").is_err(), "the share needs the fleet's size");
    }

    #[test]
    fn cadences_out_of_range_are_refused_by_name() {
        assert_eq!(parse(r#"{"expected_envoys": 3, "interval_ms": 10}"#).unwrap_err().field, "interval_ms");
        let early = parse(r#"{"expected_envoys": 3, "interval_ms": 500, "fallback_after_ms": 200}"#);
        assert_eq!(early.unwrap_err().field, "fallback_after_ms");
        assert_eq!(parse(r#"{"expected_envoys": 0}"#).unwrap_err().field, "expected_envoys");
        assert_eq!(parse(r#"{"expected_envoys": 2, "path": "x"}"#).unwrap_err().field, "path");
    }
}
