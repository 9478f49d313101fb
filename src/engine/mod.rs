//! The engine: runs the plan's steps with the contract's semantics. Phases in
//! order; the core one host at a time behind its health gate (any failure
//! halts); then applications in dependency order, independent ones side by
//! side (bounded by `parallel`); a failed application is rolled back by the
//! NixOS executor, its dependents are skipped, independent ones finish, and
//! the run ends non-zero.
//!
//! [`record`] wraps a run with the state store: the run lock, the journal,
//! interrupted runs, last good systems and outputs. Resuming after a kill
//! relies on every step being idempotent and cheap to re-check: a Terraform
//! plan with no changes applies nothing, a host already on its system is
//! not switched again.

mod core;
mod env;
mod event;
mod host;
mod lookahead;
pub mod preview;
pub mod record;
mod run;
mod schedule;
mod service;
mod switching;

pub use event::{Event, StepStatus};
pub use run::{apply, ApplyOptions, Summary};
