//! End-to-end harness: starts the real Envoy (with the real built `.wasm`), the real
//! `fusebox-control` and the mock LLM on free ports, and tears them down on drop.
//! Used by the end-to-end tests and by `make run` (`fusebox-dev`).
//!
//! Nothing here is optional: a missing Envoy binary or `.wasm` is an error with a clear
//! message, never a skipped test.

mod client;
mod fixtures;
mod foreground;
mod paths;
mod pki;
mod ports;
mod servers;
mod stack;

pub use client::{envoy_stat, Resp};
pub use fixtures::{
    demo_bootstrap_with, demo_policy, fleet_bootstrap, generous, now_s, observed, render, token, token_with,
    wait_until, with_control_cluster, DEMO_ADMIN_TOKEN, DEMO_AUDIENCE, DEMO_FILTER_TOKEN, DEMO_ISSUER, DEMO_SECRET,
};
pub use foreground::run_until_stopped;
pub use paths::{envoy_binary, on_path, sibling_binary, wasm_path, work_dir, workspace_root, WorkDir};
pub use pki::{CertFiles, Pki};
pub use ports::{free_port, Ports};
pub use servers::{Nginx, Postgres, Redis};
pub use stack::{Stack, StackOptions};
