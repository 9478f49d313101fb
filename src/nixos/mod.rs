//! The NixOS executor: build systems with Nix, and deploy them to hosts over
//! SSH with health gates and rollback.

pub mod build;
pub mod closure;
pub mod database;
pub mod deploy;
pub mod glance;
pub mod health;
pub mod remote;
pub mod ssh;
pub mod targets;
