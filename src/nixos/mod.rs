//! The NixOS executor: build systems with Nix, and deploy them to hosts over
//! SSH with health gates and rollback.

pub mod activate;
pub mod build;
pub mod closure;
pub mod confirm;
pub mod database;
pub mod deploy;
pub mod evaluation;
pub mod glance;
pub mod guard;
pub mod health;
pub mod remote;
pub mod remote_build;
pub mod ssh;
pub mod ssh_control;
pub mod ssh_mux;
pub mod targets;
