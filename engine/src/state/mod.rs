//! A tenant's state as it is kept in Envoy shared data: the tenant record (`tenant.rs`), its
//! sliding windows (`window.rs`), its entry in the table of states (`entry.rs`), the fixed set of buckets that table is
//! kept in (`bucket.rs`) and the
//! byte codec they are written with (`codec.rs`).

pub mod bucket;
pub(crate) mod codec;
pub mod entry;
pub mod outputs;
mod tenant;
pub mod window;

pub use tenant::{MinuteRing, TenantState};
