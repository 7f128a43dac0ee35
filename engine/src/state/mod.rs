//! A tenant's state as it is kept in Envoy shared data: the tenant record (`tenant.rs`), its
//! sliding windows (`window.rs`), the bounded table of slots it lives in (`slot.rs`) and the
//! byte codec they are written with (`codec.rs`).

pub(crate) mod codec;
pub mod outputs;
pub mod slot;
mod tenant;
pub mod window;

pub use tenant::{MinuteRing, TenantState};
