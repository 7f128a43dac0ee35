//! The fleet sync on the wire (`POST /v1/fleet/sync`, JSON): an Envoy sends its own usage of
//! each key it has seen recently and gets back the rest of the fleet's. Windows travel as their
//! non-empty buckets, `[unix second the bucket starts, count]`, so an idle key costs a few bytes.

use super::{parse_run_name, FleetUsage, RunUsage};
use crate::budget::BudgetState;
use crate::ids::is_valid_tenant_id;
use serde::{Deserialize, Serialize};

/// Keys in one sync (an Envoy with more active keys syncs the most recent ones).
pub const MAX_KEYS: usize = 100_000;
/// Bucket times further than this from control's clock are refused (a wrong clock or a forgery
/// would otherwise hold a window open, or free it early).
pub const MAX_CLOCK_SKEW_S: u64 = 10;
const MAX_RESERVED: u64 = 1 << 40;
const MAX_BUDGET: u64 = 1 << 56;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireUsage {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<(u64, u32)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<(u64, u32)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<(u64, u32)>,
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub in_flight: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reserved_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub day: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tokens_day: u64,
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub month: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cost_month_micros: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero32(v: &u32) -> bool {
    *v == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyUsage {
    /// A tenant id, or `tenant#tier` for a route with a tier of its own.
    pub key: String,
    pub usage: WireUsage,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// The Envoy's node id (what its node token, if any, is bound to).
    pub node: String,
    /// This Envoy process, `<node>/<start>`: the owner of the usage it sends.
    pub instance: String,
    pub keys: Vec<KeyUsage>,
    /// This Envoy's part of each run tree it served recently.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunUsage>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncReply {
    /// For each key of the request, the usage of every other Envoy.
    pub keys: Vec<KeyUsage>,
    /// For each run of the request, every other Envoy's part of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunUsage>,
}

impl From<&FleetUsage> for WireUsage {
    fn from(u: &FleetUsage) -> WireUsage {
        WireUsage {
            tokens: u.tokens.entries().collect(),
            requests: u.requests.entries().collect(),
            tool_calls: u.tool_calls.entries().collect(),
            in_flight: u.in_flight,
            reserved_tokens: u.reserved_tokens,
            day: u.budget.day,
            tokens_day: u.budget.tokens_day,
            month: u.budget.month,
            cost_month_micros: u.budget.cost_month_micros,
        }
    }
}

impl WireUsage {
    /// No usage at all (an answer like this for a key that holds none needs no write).
    pub fn is_empty(&self) -> bool {
        *self == WireUsage::default()
    }

    /// The usage this describes, its gauges true at `as_of_ms`.
    pub fn to_usage(&self, as_of_ms: u64) -> FleetUsage {
        let mut u = FleetUsage {
            in_flight: self.in_flight,
            reserved_tokens: self.reserved_tokens,
            budget: BudgetState {
                day: self.day,
                tokens_day: self.tokens_day,
                month: self.month,
                cost_month_micros: self.cost_month_micros,
            },
            as_of_ms,
            ..FleetUsage::default()
        };
        self.tokens.iter().for_each(|&(at, n)| u.tokens.add_at(at, u64::from(n)));
        self.requests.iter().for_each(|&(at, n)| u.requests.add_at(at, u64::from(n)));
        self.tool_calls.iter().for_each(|&(at, n)| u.tool_calls.add_at(at, u64::from(n)));
        u
    }

    /// Refuses what no honest Envoy sends: buckets off control's clock (`now_s`), more buckets
    /// than a window has, counts past any plausible bound.
    pub fn validate(&self, now_s: u64) -> Result<(), String> {
        let oldest = now_s.saturating_sub(60 + MAX_CLOCK_SKEW_S);
        let newest = now_s.saturating_add(MAX_CLOCK_SKEW_S);
        for (name, buckets, most) in
            [("tokens", &self.tokens, 60), ("requests", &self.requests, 10), ("tool_calls", &self.tool_calls, 12)]
        {
            if buckets.len() > most {
                return Err(format!("{name}: at most {most} buckets"));
            }
            if let Some(&(at, _)) = buckets.iter().find(|&&(at, _)| at < oldest || at > newest) {
                return Err(format!("{name}: bucket at {at} is not within {MAX_CLOCK_SKEW_S} s of the last minute"));
            }
        }
        if self.reserved_tokens > MAX_RESERVED {
            return Err(format!("reserved_tokens: at most {MAX_RESERVED}"));
        }
        if self.tokens_day > MAX_BUDGET || self.cost_month_micros > MAX_BUDGET {
            return Err(format!("tokens_day and cost_month_micros: at most {MAX_BUDGET}"));
        }
        Ok(())
    }
}

/// One Envoy's usage as control stores it: what it sent, stamped with when it arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredUsage {
    pub as_of_ms: u64,
    pub usage: WireUsage,
}

/// A state key as a sync names it: a tenant id, optionally `#` and a route tier.
pub fn is_valid_key(key: &str) -> bool {
    match key.split_once('#') {
        None => is_valid_tenant_id(key),
        Some((tenant, tier)) => {
            is_valid_tenant_id(tenant)
                && !tier.is_empty()
                && tier.len() <= 32
                && tier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        }
    }
}

/// An instance name: printable, no spaces, bounded (it becomes a storage field name).
pub fn is_valid_instance(instance: &str) -> bool {
    !instance.is_empty()
        && instance.len() <= 200
        && instance.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

impl SyncRequest {
    /// Everything [`WireUsage::validate`] and `RunPart::validate` check, plus the names.
    pub fn validate(&self, now_s: u64) -> Result<(), String> {
        if !is_valid_instance(&self.instance) {
            return Err("instance: 1-200 printable characters".into());
        }
        if self.instance.strip_prefix(self.node.as_str()).and_then(|rest| rest.strip_prefix('/')).is_none() {
            return Err("instance: must start with the node id and '/'".into());
        }
        if self.keys.len() > MAX_KEYS || self.runs.len() > MAX_KEYS {
            return Err(format!("keys and runs: at most {MAX_KEYS} each per sync"));
        }
        for r in &self.runs {
            if parse_run_name(&r.run).is_none() {
                return Err(format!("runs: '{}' is not tenant/run-id", r.run.escape_debug()));
            }
            r.part.validate(now_s.saturating_mul(1000)).map_err(|e| format!("runs['{}'].part.{e}", r.run))?;
        }
        for k in &self.keys {
            if !is_valid_key(&k.key) {
                return Err(format!("keys: '{}' is not a tenant id or tenant#tier", k.key.escape_debug()));
            }
            k.usage.validate(now_s).map_err(|e| format!("keys['{}'].usage.{e}", k.key))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_428_000;

    #[test]
    fn usage_travels_as_its_non_empty_buckets_and_comes_back_whole() {
        let mut u = FleetUsage { in_flight: 2, reserved_tokens: 700, as_of_ms: NOW * 1000, ..Default::default() };
        u.tokens.add(NOW - 3, 40);
        u.tokens.add(NOW, 60);
        u.requests.add(NOW, 2);
        u.tool_calls.add(NOW, 1);
        u.budget.add(NOW, 100, 9);
        let wire = WireUsage::from(&u);
        assert_eq!(wire.tokens, vec![(NOW - 3, 40), (NOW, 60)]);
        let json = serde_json::to_string(&wire).expect("serializes");
        let back: WireUsage = serde_json::from_str(&json).expect("parses");
        assert_eq!(back.to_usage(NOW * 1000), u);
        assert_eq!(serde_json::to_string(&WireUsage::default()).expect("serializes"), "{}");
    }

    #[test]
    fn buckets_off_the_clock_and_implausible_counts_are_refused() {
        let ok = WireUsage { tokens: vec![(NOW - 65, 1), (NOW + 5, 1)], ..Default::default() };
        assert_eq!(ok.validate(NOW), Ok(()));
        let future = WireUsage { tokens: vec![(NOW + 3600, 1)], ..Default::default() };
        assert!(future.validate(NOW).unwrap_err().contains("tokens"));
        let old = WireUsage { requests: vec![(NOW - 600, 1)], ..Default::default() };
        assert!(old.validate(NOW).is_err());
        let many = WireUsage { requests: (0..11).map(|i| (NOW - i, 1)).collect(), ..Default::default() };
        assert!(many.validate(NOW).unwrap_err().contains("at most 10"));
        let reserved = WireUsage { reserved_tokens: u64::MAX, ..Default::default() };
        assert!(reserved.validate(NOW).is_err());
    }

    #[test]
    fn keys_are_tenant_ids_or_tenant_and_route_tier() {
        assert!(is_valid_key("acme"));
        assert!(is_valid_key("acme#batch"));
        assert!(!is_valid_key("acme#"));
        assert!(!is_valid_key("acme#a#b"));
        assert!(!is_valid_key("a b"));
        let req = SyncRequest {
            node: "envoy-1".into(),
            instance: "envoy-1/1795428000000".into(),
            keys: vec![KeyUsage { key: "evil\n".into(), usage: WireUsage::default() }],
            runs: vec![],
        };
        assert!(req.validate(NOW).unwrap_err().contains("evil"));
        assert!(!is_valid_instance("has space"));
        let other = SyncRequest { node: "envoy-2".into(), instance: "envoy-1/1".into(), keys: vec![], runs: vec![] };
        assert!(other.validate(NOW).unwrap_err().contains("node id"));
    }
}
