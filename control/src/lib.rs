//! fusebox-control: the control plane. It stores the policy (tiers, tenant overrides,
//! identity keys, operator holds) in SQLite, serves it to the filters, records the usage and
//! breaker events they send, and keeps a hash-chained audit log of every change and trip.

pub mod access;
pub mod api;
pub mod audit;
pub mod client;
pub mod dashboard;
pub mod db;
pub mod error;
pub mod fleet;
pub mod ingest;
pub mod policy_anchor;
pub mod policy_ops;
pub mod prometheus;
pub mod report;
pub mod series;
pub mod timefmt;
pub mod tls;
pub mod topups;

pub use api::{app, AppState, Config};
