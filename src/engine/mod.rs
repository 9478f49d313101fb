//! The engine: runs the plan's steps with the contract's semantics. Phases in
//! order; the core one host at a time behind its health gate (any failure
//! halts); then applications in dependency order, independent ones side by
//! side (bounded by `parallel`); a failed application is rolled back by the
//! NixOS executor, its dependents are skipped, independent ones finish, and
//! the run ends non-zero.
//!
//! Not yet here (see the engine issue): the state store, the step journal and
//! resume, the run lock, and Terraform rollback to last good inputs.

mod event;
mod run;

pub use event::{Event, StepStatus};
pub use run::{apply, ApplyOptions, Summary};
