//! Counting across a fleet of Envoys without a per-request hop.
//!
//! Each Envoy counts locally, exactly as it does alone. Every sync interval its singleton sends
//! control the local usage of each state key it has seen recently ([`FleetUsage`], absolute
//! values, so a retried sync counts once) and gets back the sum of every *other* Envoy's usage
//! of the same keys, which it writes beside the local state (`TenantState::fleet`). Admission
//! then judges local plus fleet. The only error is staleness: what other Envoys admitted that
//! has not reached this one yet, so a tenant can overshoot a window by at most the traffic the
//! rest of the fleet admits in two sync intervals (one to report, one to hear) plus two round
//! trips to control (see `docs/FLEET.md`).
//!
//! Windows are summed bucket by bucket on absolute time, so Envoys need clocks within a second
//! of each other (NTP). Gauges (requests in flight, tokens reserved by them) are true only
//! while their owner keeps syncing: they count for [`GAUGE_TTL_MS`] after the sync that
//! reported them, so the in-flight slots of an Envoy killed with `-9` expire by themselves.

mod active;
mod aggregate;
mod config;
mod health;
mod run;
mod share;
mod usage;
pub mod wire;

pub use active::{ActiveKeys, ACTIVE_FOR_MS};
pub use aggregate::{others, Entry, Others};
pub use config::FleetConfig;
pub use health::{Counting, SyncHealth};
pub use run::{parse_run_name, run_name, RunPart, RunUsage};
pub use share::local_share;
pub use usage::{FleetUsage, GAUGE_TTL_MS, RETAIN_WINDOWS_MS};
