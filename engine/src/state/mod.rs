//! A tenant's state as it is kept in Envoy shared data: the tenant record (`tenant.rs`), its
//! sliding windows (`window.rs`) and the byte codec they are written with (`codec.rs`).

pub(crate) mod codec;
pub mod outputs;
mod tenant;
pub mod window;

pub use tenant::{MinuteRing, TenantState};
