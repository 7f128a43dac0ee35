//! The `fusebox-control` command line, by job: `args.rs` declares it, `serve.rs` runs the
//! service, `local.rs` the offline helpers, `remote.rs` the operator commands.

pub(crate) mod args;
pub(crate) mod local;
pub(crate) mod remote;
pub(crate) mod serve;
