//! The HTTP API (docs/CONFIGURATION.md, "fusebox-control"). Handlers are thin: authorization,
//! parsing, then the blocking database work on tokio's blocking pool. `router.rs` lists the
//! routes; `reads.rs`, `writes.rs` and `events.rs` hold the handlers; `auth.rs` and
//! `idempotency.rs` what the handlers share; `state.rs` the service's state.

mod auth;
mod events;
mod fleet;
mod idempotency;
mod reads;
mod router;
mod state;
mod writes;

pub use router::app;
pub use state::{AppState, Config, Inner};
