//! nixmox: the control plane for a self-hosted NixOS stack.
//!
//! Layers, each depending only on those before it:
//! [`manifest`] (read, model, validate) → [`graph`] (order, selection) →
//! [`plan`] (phases and steps, pure data) → [`report`] (what people and programs see).

pub mod bounded;
pub mod cli;
pub mod engine;
pub mod files;
pub mod graph;
pub mod lab;
pub mod manifest;
pub mod nixos;
pub mod plan;
pub mod process;
pub mod report;
pub mod secrets;
pub mod serve;
pub mod state;
pub mod synth;
pub mod terraform;
pub mod verify;
