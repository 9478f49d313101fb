//! The lab: a whole stack on one machine. Each host is a network namespace on
//! a private bridge, with its own sshd and its own private view of
//! `/nix/var/nix/profiles`, `/run` and `/var/lib/lab` (a mount namespace), so
//! deploying to a lab host uses the very commands and paths of a real NixOS
//! host. The hosts stand in for Proxmox containers; the lab's `tf:infra`
//! module creates and destroys them through `nixmox lab host-up|host-down`.
//!
//! Containment does not depend on ordering: an unreachable route for the lab
//! subnet is installed before anything else, so even without the bridge no
//! packet to a lab address can leave the machine, and lab hosts have no route
//! but their own subnet.

pub mod host;
pub mod net;
pub mod secrets;
pub mod setup;

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The lab's shared directory: CA, SSH keys, per-host state.
pub fn lab_dir() -> PathBuf {
    std::env::var_os("NIXMOX_LAB_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/nixmox-lab"))
}

/// What `lab up` decided, for the commands that come after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabConfig {
    pub dir: PathBuf,
    pub bridge: String,
    pub gateway: Ipv4Addr,
    pub prefix: u8,
    pub subnet: String,
}

impl LabConfig {
    pub fn file(dir: &Path) -> PathBuf {
        dir.join("lab.json")
    }

    pub fn load(dir: &Path) -> Result<LabConfig, LabError> {
        let path = Self::file(dir);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            LabError::new(format!(
                "the lab is not up ({}: {e}); run `nixmox lab up` first",
                path.display()
            ))
        })?;
        serde_json::from_str(&text).map_err(|e| {
            LabError::new(format!(
                "{} is damaged: {e}; run `nixmox lab down` and `nixmox lab up`",
                path.display()
            ))
        })
    }

    pub fn ssh_key(&self) -> PathBuf {
        self.dir.join("ssh").join("id_ed25519")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("ssh").join("known_hosts")
    }

    pub fn host_dir(&self, name: &str) -> PathBuf {
        self.dir.join("hosts").join(name)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("lab: {0}")]
pub struct LabError(pub String);

impl LabError {
    pub fn new(message: impl Into<String>) -> Self {
        LabError(message.into())
    }
}

/// The lab changes namespaces, routes and mounts: only root may.
pub fn require_root() -> Result<(), LabError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or("");
    if uid == "0" {
        Ok(())
    } else {
        Err(LabError::new("the lab creates network namespaces, routes and mounts and needs root: run it with sudo (or as root)"))
    }
}
