//! The policy: what control serves and every worker enforces. `document.rs` is the whole
//! document and how a tenant's limits are found in it; `limits.rs` declares every limit once;
//! `operator.rs` holds what operators force; `tiers.rs` the shipped tiers; `prices.rs` costs;
//! `shadow.rs` the limits judged without refusing; `topup.rs` budgets raised for one period.

mod document;
mod limits;
mod operator;
pub(crate) mod overridable;
mod prices;
mod scopes;
mod shadow;
mod tiers;
mod topup;

pub use crate::ids::{is_valid_tenant_id, MAX_TENANT_LEN};
pub use crate::strict::PolicyError;
pub use document::{to_json, Policy};
pub use limits::{
    BreakerOverride, BreakerSettings, Limits, ModelLimits, TenantPolicy, MAX_MODEL_PATTERNS, MAX_THRESHOLD,
};
pub use operator::{Forced, ForcedBreaker, Operator};
pub use prices::Price;
pub use scopes::{is_valid_scope_name, scope_label, scope_state_name, ScopeDef, MAX_SCOPES};
pub use shadow::{Limit, LimitMode, LimitSet};
pub use tiers::default_tiers;
pub use topup::{period_label, TopUp, TopUps};
