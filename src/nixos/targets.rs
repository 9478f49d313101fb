//! From the manifest to SSH targets and Nix settings, with the environment
//! overrides tests and CI use (`NIXMOX_SSH_KEY`, `NIXMOX_SSH_KNOWN_HOSTS_FILE`).

use super::build::NixSettings;
use super::ssh::{KnownHosts, SshTarget};
use super::ssh_control::Control;
use crate::manifest::{Manifest, Service};
use std::path::PathBuf;
use std::time::Duration;

/// How to reach the service's host, or why it cannot be reached.
pub fn target(m: &Manifest, s: &Service, control: &Control) -> Result<SshTarget, String> {
    let address = s
        .host
        .ip
        .ok_or_else(|| format!("service {} has no ip", s.name))?;
    let ssh = &m.nixos.ssh;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let key = env("NIXMOX_SSH_KEY")
        .or_else(|| s.nixos.ssh_key.clone())
        .or_else(|| ssh.key.clone());
    let known_hosts_file =
        env("NIXMOX_SSH_KNOWN_HOSTS_FILE").or_else(|| ssh.known_hosts_file.clone());
    Ok(SshTarget {
        name: s.name.clone(),
        address,
        user: s.nixos.ssh_user.clone().unwrap_or_else(|| ssh.user.clone()),
        port: s.nixos.ssh_port.unwrap_or(ssh.port),
        key: key.map(PathBuf::from),
        known_hosts: KnownHosts::parse(&ssh.known_hosts).unwrap_or(KnownHosts::AcceptNew),
        known_hosts_file: known_hosts_file.map(PathBuf::from),
        connect_timeout: Duration::from_secs(ssh.connect_timeout),
        control_dir: control.dir.clone(),
        persist: control.persist,
    })
}

/// Where `s`'s system is built: `None` here, else the builder to reach
/// over SSH (the host itself for `target`, another service's host, or a
/// `[user@]address` with the stack's SSH settings).
pub fn builder(m: &Manifest, s: &Service, control: &Control) -> Result<Option<SshTarget>, String> {
    use crate::manifest::BuildHost;
    match s.nixos.build_host.as_ref().unwrap_or(&m.nixos.build_host) {
        BuildHost::Local => Ok(None),
        BuildHost::Target => target(m, s, control).map(Some),
        BuildHost::Service(name) => {
            let b = m
                .service(name)
                .ok_or_else(|| format!("build_host {name}: no such service"))?;
            target(m, b, control).map(Some)
        }
        BuildHost::Builder { user, address } => {
            let mut t = target(m, s, control)?;
            t.name = format!("builder {address}");
            t.address = *address;
            t.port = m.nixos.ssh.port;
            t.user = user.clone().unwrap_or_else(|| m.nixos.ssh.user.clone());
            Ok(Some(t))
        }
    }
}

/// The flake as Nix is given it (see `manifest::flake`).
pub fn nix_settings(m: &Manifest) -> NixSettings {
    NixSettings {
        flake: crate::manifest::flake::locate(m).nix_ref(),
        nix_config: m.nixos.nix_config.clone(),
    }
}

pub fn attribute(s: &Service) -> String {
    s.nixos
        .attribute
        .clone()
        .unwrap_or_else(|| super::build::default_attribute(&s.name))
}

/// Ends the connections kept for `services`' hosts (see
/// [`super::ssh_control`]): their hosts are going away, and a kept
/// connection to a host that is gone would stall the next run that
/// reaches its address until the connection's keep-alives give up.
pub fn close_kept<'a>(m: &Manifest, services: impl IntoIterator<Item = &'a Service>) {
    let Some(control) = Control::kept() else {
        return;
    };
    let kept: Vec<SshTarget> = services
        .into_iter()
        .filter_map(|s| target(m, s, &control).ok())
        .collect();
    Control::close(&kept);
}
