//! fusebox-engine: the pure core of fusebox.
//!
//! Nothing here talks to Envoy, does I/O or reads a clock: time is always an argument.
//! That keeps every policy decision unit-testable natively and fuzzable.

pub mod admission;
pub mod api_shape;
pub mod breaker;
pub mod budget;
pub mod bytes;
pub mod config;
pub mod event;
pub mod event_bounds;
pub mod fleet;
pub mod identity;
pub mod ids;
pub mod json;
pub mod metric;
pub mod path;
pub mod policy;
pub mod reply;
pub mod request;
pub mod run;
pub mod state;
pub mod strict;
pub mod telemetry;
#[cfg(test)]
mod testkit;
pub mod usage;
