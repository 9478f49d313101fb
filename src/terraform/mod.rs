//! The Terraform executor: every Terraform phase of the contract (`tf:infra`,
//! `tf:auth-core`, `tf:service-infra`, `tf:service-config`) over the real CLI,
//! each in its own workspace and working directory.

pub mod command;
pub mod hcl;
pub mod inputs;
pub mod outputs;
pub mod phases;
pub mod report;
pub mod retry;
pub mod runner;
pub mod sinks;
pub mod stack;
pub mod tree;
pub mod workdir;

pub use outputs::{Output, Outputs};
pub use report::Changes;
pub use runner::{PhaseResult, PhaseSpec, Status, Terraform, TfError};
