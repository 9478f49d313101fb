//! `nixmox lab up | down | status`: the lab's network, CA and keys, its hosts
//! (through the lab manifest's own `tf:infra` Terraform module), and their
//! systems.

use super::host::{self, HostStatus};
use super::net::{self, ip};
use super::{lab_dir, require_root, LabConfig, LabError};
use crate::manifest::Manifest;
use crate::plan::{self, Phase};
use crate::terraform::stack;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;

/// The lab's network as the manifest states it.
pub fn config_for(m: &Manifest) -> Result<LabConfig, LabError> {
    let net = m
        .network
        .network_cidr
        .ok_or_else(|| LabError::new("the lab needs network.network_cidr in the manifest"))?;
    let (ipnet::IpNet::V4(v4), Some(IpAddr::V4(gateway))) = (net, m.network.gateway) else {
        return Err(LabError::new(
            "the lab needs an IPv4 network.network_cidr and network.gateway (the bridge's address)",
        ));
    };
    if !(8..=30).contains(&v4.prefix_len()) {
        return Err(LabError::new(format!(
            "network_cidr {v4}: the lab takes a prefix from /8 to /30"
        )));
    }
    Ok(LabConfig {
        dir: lab_dir(),
        bridge: net::BRIDGE.into(),
        gateway,
        prefix: v4.prefix_len(),
        subnet: v4.to_string(),
    })
}

/// The enabled hosts of the manifest with their IPv4 addresses.
pub fn hosts(m: &Manifest) -> Result<BTreeMap<String, Ipv4Addr>, LabError> {
    let mut out = BTreeMap::new();
    for s in m.enabled() {
        match s.host.ip {
            Some(IpAddr::V4(v4)) => {
                out.insert(s.name.clone(), v4);
            }
            _ => {
                return Err(LabError::new(format!(
                    "service {} needs an IPv4 address for the lab",
                    s.name
                )))
            }
        }
    }
    Ok(out)
}

/// The network, CA and SSH key: everything hosts stand on. Idempotent.
pub fn base_up(cfg: &LabConfig) -> Result<(), LabError> {
    require_root()?;
    // First of all: no lab address may ever follow the default route.
    ip(&net::unreachable_route(&cfg.subnet))?;
    if !net::link_exists(&cfg.bridge) {
        ip(&net::add_bridge())?;
    }
    ip(&net::bridge_address(cfg.gateway, cfg.prefix))?;
    ip(&net::link_up(&cfg.bridge))?;
    for sub in ["ca", "ssh", "hosts"] {
        std::fs::create_dir_all(cfg.dir.join(sub)).map_err(|e| {
            LabError::new(format!(
                "cannot create {}: {e}",
                cfg.dir.join(sub).display()
            ))
        })?;
    }
    let ca_key = cfg.dir.join("ca/ca.key");
    let ca_crt = cfg.dir.join("ca/ca.crt");
    if !ca_crt.exists() || !ca_key.exists() {
        let args: Vec<String> = [
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=nixmox lab CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            ca_key.display().to_string(),
            "-out".into(),
            ca_crt.display().to_string(),
        ])
        .collect();
        net::run("openssl", &args)?;
    }
    let key = cfg.ssh_key();
    if !key.exists() {
        net::ssh_keygen(&key, "nixmox-lab")?;
    }
    let public = std::fs::read_to_string(key.with_extension("pub"))
        .map_err(|e| LabError::new(format!("cannot read the lab's public key: {e}")))?;
    std::fs::write(cfg.dir.join("ssh/authorized_keys"), public)
        .map_err(|e| LabError::new(e.to_string()))?;
    let text = serde_json::to_string_pretty(cfg).map_err(|e| LabError::new(e.to_string()))?;
    std::fs::write(LabConfig::file(&cfg.dir), text).map_err(|e| LabError::new(e.to_string()))?;
    Ok(())
}

/// Runs the manifest's Terraform phases whose step ids satisfy `pick`, with the lab's environment.
fn terraform(
    m: &Manifest,
    cfg: &LabConfig,
    pick: impl Fn(Phase) -> bool,
    destroy: bool,
) -> Result<(), LabError> {
    let full = plan::build(m, &[]).map_err(|e| LabError::new(e.to_string()))?;
    let mut tf = stack::terraform_for(m).map_err(LabError::new)?;
    tf.env
        .push(("NIXMOX_LAB_DIR".into(), cfg.dir.display().to_string()));
    let base = m.dir();
    let mut known = BTreeMap::new();
    let steps: Vec<_> = crate::terraform::phases::steps(m, &full)
        .into_iter()
        .filter(|s| pick(s.phase))
        .collect();
    if destroy {
        for step in steps.iter().rev() {
            tf.destroy_phase(&step.spec(m, &base, &known))
                .map_err(|e| LabError::new(e.to_string()))?;
        }
        return Ok(());
    }
    for step in steps {
        let result = tf
            .apply_phase(&step.spec(m, &base, &known))
            .map_err(|e| LabError::new(e.to_string()))?;
        known.insert(step.workspace.clone(), result.outputs);
    }
    Ok(())
}

/// Brings the lab up: base, hosts (the manifest's `tf:infra`), and unless
/// `systems` is false, the whole stack through the engine: every host's
/// system activated in plan order behind its health gate, `tf:auth-core`
/// registering the OIDC clients between core and applications.
pub fn up(m: &Manifest, systems: bool, say: &mut dyn FnMut(&str)) -> Result<(), LabError> {
    let cfg = config_for(m)?;
    let hosts = hosts(m)?;
    // The engine reaches the hosts with the lab's key, wherever the lab
    // lives; connections kept from an earlier lab at the same addresses
    // lead to hosts that are gone.
    use_lab_key(&cfg);
    crate::nixos::targets::close_kept(m, m.enabled());
    base_up(&cfg)?;
    say(&format!(
        "network {} on {} (gateway {}), CA and SSH key in {}",
        cfg.subnet,
        cfg.bridge,
        cfg.gateway,
        cfg.dir.display()
    ));
    if m.terraform.infra.is_empty() {
        for (name, addr) in &hosts {
            host::up(&cfg, name, *addr)?;
        }
    } else {
        terraform(m, &cfg, |p| p == Phase::TfInfra, false)?;
    }
    for (name, addr) in &hosts {
        if !host::ssh_answers(*addr, std::time::Duration::from_secs(2)) {
            return Err(LabError::new(format!(
                "host {name} ({addr}) does not answer on port 22 after tf:infra"
            )));
        }
    }
    say(&format!(
        "{} hosts up: {}",
        hosts.len(),
        hosts.keys().cloned().collect::<Vec<_>>().join(", ")
    ));
    if !systems {
        return Ok(());
    }
    std::env::set_var("NIXMOX_LAB_DIR", &cfg.dir);
    if std::env::var_os("NIXMOX_CA_FILE").is_none() {
        std::env::set_var("NIXMOX_CA_FILE", cfg.dir.join("ca/ca.crt"));
    }
    let plan = plan::build(m, &[]).map_err(|e| LabError::new(e.to_string()))?;
    let opts = crate::engine::ApplyOptions::new(4, crate::nixos::deploy::Goal::Switch);
    let report = |e: crate::engine::Event| {
        if matches!(
            e.status,
            crate::engine::StepStatus::Changed | crate::engine::StepStatus::Failed
        ) {
            eprintln!(
                "lab: {} {:?}{}",
                e.step,
                e.status,
                if e.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", e.detail)
                }
            );
        }
    };
    let summary = crate::engine::apply(m, &plan, &opts, &report).map_err(LabError::new)?;
    if !summary.ok {
        return Err(LabError::new(format!(
            "the stack did not come up: {}",
            summary.failures.join("; ")
        )));
    }
    say("every system is active and healthy");
    Ok(())
}

/// Takes everything down: hosts (through `tf:infra` when it has modules, and
/// directly for anything left), the bridge, the route, the lab directory.
pub fn down(m: &Manifest, say: &mut dyn FnMut(&str)) -> Result<(), LabError> {
    require_root()?;
    let cfg = LabConfig::load(&lab_dir()).or_else(|_| config_for(m))?;
    use_lab_key(&cfg);
    crate::nixos::targets::close_kept(m, m.enabled());
    if !m.terraform.infra.is_empty() && LabConfig::file(&cfg.dir).exists() {
        if let Err(e) = terraform(
            m,
            &cfg,
            |p| matches!(p, Phase::TfInfra | Phase::TfAuthCore),
            true,
        ) {
            say(&format!(
                "Terraform destroy did not finish ({e}); removing hosts directly"
            ));
        }
    }
    for (name, addr) in hosts(m)? {
        host::down(&cfg, &name, addr)?;
    }
    if net::link_exists(&cfg.bridge) {
        ip(&net::delete_link(&cfg.bridge))?;
    }
    let _ = ip(&net::delete_unreachable_route(&cfg.subnet));
    if cfg.dir.exists() {
        std::fs::remove_dir_all(&cfg.dir)
            .map_err(|e| LabError::new(format!("cannot remove {}: {e}", cfg.dir.display())))?;
    }
    // /var/lib/lab is the mount point of every lab host's state: removing it
    // would detach the mounts of any host still running (another lab, a
    // self-test), so it goes only when no lab namespace is left.
    let lab_namespaces = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten().any(|e| {
                e.file_name().to_string_lossy().starts_with("nixmox-")
                    || e.file_name().to_string_lossy().starts_with("nmx")
            })
        })
        .unwrap_or(false);
    if !lab_namespaces {
        let _ = std::fs::remove_dir(Path::new("/var/lib/lab"));
    }
    // The Terraform state of the lab's phases described hosts that are gone now.
    for ws in ["infra", "auth-core"] {
        let _ = std::fs::remove_dir_all(m.work_dir().join("terraform").join(ws));
    }
    say("lab down: hosts, namespaces, bridge, route and lab directory removed");
    Ok(())
}

/// The lab's hosts are reached with the lab's key and known hosts, unless
/// the environment names others.
fn use_lab_key(cfg: &LabConfig) {
    if std::env::var_os("NIXMOX_SSH_KEY").is_none() {
        std::env::set_var("NIXMOX_SSH_KEY", cfg.ssh_key());
        std::env::set_var("NIXMOX_SSH_KNOWN_HOSTS_FILE", cfg.known_hosts());
    }
}

#[derive(Debug, Serialize)]
pub struct LabStatus {
    pub up: bool,
    pub bridge: bool,
    pub route: bool,
    pub dir: String,
    pub hosts: Vec<HostStatus>,
}

pub fn status(m: &Manifest) -> Result<LabStatus, LabError> {
    let cfg = config_for(m)?;
    let route = Command::new("ip")
        .args(["route", "show", "type", "unreachable", &cfg.subnet])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    let hosts: Vec<HostStatus> = hosts(m)?
        .into_iter()
        .map(|(n, a)| host::status(&n, a))
        .collect();
    let bridge = net::link_exists(&cfg.bridge);
    Ok(LabStatus {
        up: bridge && route && hosts.iter().all(|h| h.namespace && h.ssh),
        bridge,
        route,
        dir: cfg.dir.display().to_string(),
        hosts,
    })
}
