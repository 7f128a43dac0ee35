//! Admission: the decision when a request arrives (`decision.rs`), the reservation once its
//! body is read (`body.rs`), the record a worker keeps of an admitted request until it settles
//! (`record.rs`), what it is charged (`charge.rs`), what shadowed limits would have refused
//! (`shadow.rs`), and read-only views of a tenant's standing (`status.rs`).

mod body;
mod charge;
mod decision;
mod record;
mod shadow;
mod status;
#[cfg(test)]
mod testkit;

pub use body::{reserve_body, BodyReservation, Clamp};
pub use charge::{BodyKind, Charge, Ending};
pub use decision::{
    admit, open_denial, output_allowance, settle, Allowed, Decision, Denied, DenyCause, Settlement, Warning,
    KILL_SWITCH_RETRY_S,
};
pub use record::{Admitted, InFlight, ReservationChange};
pub use shadow::shadow_refusal;
pub use status::{output_room, quotas, snapshot, BudgetStatus, MetricStatus, Quota, Snapshot};
