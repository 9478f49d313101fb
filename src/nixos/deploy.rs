//! Deploying one host the way nixos-rebuild `--target-host` and deploy-rs do:
//! compare, copy, set the profile, activate (detached, so a dropped SSH
//! connection cannot stop it), pass the health gate, and roll back to the
//! previous generation when the gate fails.

// Deploy errors carry the host, the goal, the activation log and the
// rollback report; they are made once per failed deploy, so their size costs nothing.
#![allow(clippy::result_large_err)]

use super::activate::activate;
use super::build::{self, NixError, NixSettings};
use super::health::{self, GateError};
use super::remote;
use super::ssh::{self, SshError, SshTarget};
use crate::manifest::Health;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    Switch,
    Boot,
    Test,
    DryActivate,
}

impl Goal {
    pub fn as_str(self) -> &'static str {
        match self {
            Goal::Switch => "switch",
            Goal::Boot => "boot",
            Goal::Test => "test",
            Goal::DryActivate => "dry-activate",
        }
    }

    pub fn parse(text: &str) -> Option<Goal> {
        [Goal::Switch, Goal::Boot, Goal::Test, Goal::DryActivate]
            .into_iter()
            .find(|g| g.as_str() == text)
    }

    /// Goals that make the system the boot default.
    fn sets_profile(self) -> bool {
        matches!(self, Goal::Switch | Goal::Boot)
    }

    /// Goals after which the new system runs (and so must be healthy).
    fn runs(self) -> bool {
        matches!(self, Goal::Switch | Goal::Test)
    }
}

pub struct DeployRequest<'a> {
    pub target: &'a SshTarget,
    pub nix: &'a NixSettings,
    /// The built system's store path.
    pub system: &'a str,
    pub goal: Goal,
    /// `KEY=VALUE` lines for `/run/nixmox/env` (0600, tmpfs), secrets included; never logged.
    pub env: Option<&'a str>,
    /// The age key the host decrypts its SOPS secrets with (`nixos.age_key_file`).
    pub age_key: Option<&'a AgeKey>,
    pub health: &'a Health,
    pub ports: &'a [u16],
    /// Bound on one activation.
    pub activation_timeout: Duration,
    pub rollback: bool,
    /// Activate even when the host already runs the system (`--force`).
    pub force: bool,
    /// Seconds the host's guard waits for nixmox's confirmation before it
    /// rolls back by itself (`nixos.confirm_timeout`); 0: no guard.
    pub confirm_timeout: u64,
    /// The system was built on the host, or a builder sent it there: no copy from here.
    pub closure_on_target: bool,
    /// What a look at the host saw earlier in this run, while it still holds
    /// (nothing in the run has changed the host since): the deploy starts
    /// from it instead of looking again. A look that found a guard waiting
    /// is not taken: the deploy looks and settles it itself.
    pub seen: Option<&'a super::glance::Glance>,
    /// Told once the host's activation has ended, whatever its result: what
    /// made way for it may go on while its health gate runs.
    pub switched: Option<&'a (dyn Fn() + Sync)>,
}

/// An age private key and where it goes on every host. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AgeKey {
    pub bytes: Vec<u8>,
    /// An absolute path on the host (`nixos.age_key_target`).
    pub target: String,
}

impl std::fmt::Debug for AgeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AgeKey(<redacted> -> {})", self.target)
    }
}

impl AgeKey {
    /// The manifest's hosts' key: `nixos.age_key_file`, or the SOPS value
    /// `nixos.age_key` names; `None` when it names neither.
    pub fn of_manifest(m: &crate::manifest::Manifest) -> Result<Option<AgeKey>, String> {
        let target = &m.nixos.age_key_target;
        if let Some(file) = &m.nixos.age_key_file {
            return AgeKey::read(file, &m.dir(), target).map(Some);
        }
        let Some(r) = &m.nixos.age_key_sops else {
            return Ok(None);
        };
        let key =
            crate::secrets::sops::resolve(m, r).map_err(|e| format!("nixos.age_key ({r}): {e}"))?;
        let mut text = key.text();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Ok(Some(AgeKey {
            bytes: text.into_bytes(),
            target: target.clone(),
        }))
    }

    /// Reads `nixos.age_key_file` (relative paths from the manifest's directory).
    pub fn read(file: &str, base: &std::path::Path, target: &str) -> Result<AgeKey, String> {
        let path = base.join(file);
        let bytes = std::fs::read(&path).map_err(|e| {
            format!(
                "nixos.age_key_file {}: cannot read it: {e}; point it at the age key hosts decrypt their SOPS secrets with",
                path.display()
            )
        })?;
        Ok(AgeKey {
            bytes,
            target: target.to_string(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The host already runs this system (and its environment is current).
    Unchanged,
    Activated {
        from: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    Nix(#[from] NixError),
    #[error("host {host}: switch-to-configuration {goal} of {system} failed (exit {status}):\n{log}{rollback}")]
    Activation {
        host: String,
        goal: &'static str,
        system: String,
        status: String,
        log: String,
        rollback: String,
    },
    #[error("{gate}{rollback}")]
    Health { gate: GateError, rollback: String },
    /// The host's guard decided: it rolled itself back (or had nothing to go back to).
    #[error("host {host} {what}")]
    SelfRollback { host: String, what: String },
}

pub(super) fn remote(
    t: &SshTarget,
    cmd: &str,
    limit: Duration,
) -> Result<ssh::RemoteOutput, DeployError> {
    Ok(ssh::run(t, cmd, None, limit)?)
}

pub(super) fn host(t: &SshTarget) -> String {
    format!("{} ({})", t.name, t.address)
}

/// Hashes of the secrets a host was given — `env=<hex>` for its environment
/// file, `age=<hex>` for its age key (and where that went) — kept beside the
/// environment file, so an unchanged host can tell without anything secret
/// leaving it, and a plan can say which of the two would change. Empty when
/// the host is given neither.
pub fn secrets_hash(env: Option<&str>, age_key: Option<&AgeKey>) -> String {
    use sha2::{Digest, Sha256};
    let hex = |h: Sha256| -> String {
        h.finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let mut parts = Vec::new();
    if let Some(env) = env {
        let mut h = Sha256::new();
        h.update(env.as_bytes());
        parts.push(format!("env={}", hex(h)));
    }
    if let Some(k) = age_key {
        let mut h = Sha256::new();
        h.update(k.target.as_bytes());
        h.update(b"\0");
        h.update(&k.bytes);
        parts.push(format!("age={}", hex(h)));
    }
    parts.join(" ")
}

/// One part (`env` or `age`) of a hash [`secrets_hash`] made; `None` when
/// the host was not given that secret (or recorded its hash in another form).
pub fn hash_part<'a>(recorded: &'a str, part: &str) -> Option<&'a str> {
    recorded
        .split_whitespace()
        .find_map(|p| p.strip_prefix(part)?.strip_prefix('='))
}

pub fn deploy(r: &DeployRequest) -> Result<Outcome, DeployError> {
    let t = r.target;
    let quick = Duration::from_secs(30);
    let (current, seen_hash) = match r.seen.filter(|g| g.pending.is_empty()) {
        Some(g) => (g.current.clone(), g.env_hash.clone()),
        None => look(t, quick)?,
    };
    let wanted = secrets_hash(r.env, r.age_key);
    let env_changed = !wanted.is_empty() && seen_hash != wanted;
    if r.goal.runs() && current == r.system && !env_changed && !r.force {
        return Ok(Outcome::Unchanged);
    }
    // A host already running the system has its closure: only the environment changed.
    if current != r.system && !r.closure_on_target {
        build::copy(r.nix, t, r.system)?;
    }
    // A secret the host holds already (its recorded hash says so) is not
    // sent again; `--force` sends everything, for a host repaired by hand.
    let moved = |part: &str| r.force || hash_part(&seen_hash, part) != hash_part(&wanted, part);
    if let Some(env) = r.env.filter(|_| moved("env")) {
        upload(t, "env", env.as_bytes())?;
    }
    if let Some(key) = r.age_key.filter(|_| moved("age")) {
        upload_to(t, &key.target, &key.bytes)?;
    }
    if !wanted.is_empty() && (r.force || seen_hash != wanted) {
        upload(t, "env.hash", wanted.as_bytes())?;
    }
    let profile = remote(t, &remote::profile_state(), quick)?.stdout;
    let mut lines = profile.lines();
    let generation = lines.next().and_then(remote::generation_of);
    let previous = lines.next().unwrap_or_default().trim().to_string();
    let previous = (!previous.is_empty() && previous != r.system).then_some(previous);
    if r.goal.sets_profile() {
        let out = remote(t, &remote::set_profile(r.system), quick)?;
        if !out.ok() {
            return Err(DeployError::Activation {
                host: host(t),
                goal: r.goal.as_str(),
                system: r.system.into(),
                status: out.code.map(|c| c.to_string()).unwrap_or_default(),
                log: format!("nix-env --set failed: {}", out.stderr.trim()),
                rollback: String::new(),
            });
        }
    }
    // A switch that replaces a system runs under the host's guard: it rolls
    // back by itself unless nixmox confirms after the health gate. `test`
    // and `dry-activate` leave the boot default alone, `boot` runs nothing
    // now, and a first deploy has nothing to go back to: no guard.
    let guarded = match (&previous, r.goal, r.confirm_timeout) {
        (Some(prev), Goal::Switch, timeout) if timeout > 0 => Some(super::activate::Guarded {
            previous: prev,
            generation,
            timeout,
        }),
        _ => None,
    };
    let act = super::activate::run(t, r.system, r.goal, r.activation_timeout, guarded);
    if let Some(tell) = r.switched {
        tell();
    }
    // How long to keep asking a guarded host that does not answer: its guard
    // decides meanwhile, and a host that rolled back answers again.
    let patience = Duration::from_secs(r.confirm_timeout) + super::activate::SILENCE_LIMIT;
    let settle = r.activation_timeout + Duration::from_secs(10);
    let lost_at = |silence: Duration| {
        if silence >= Duration::from_secs(r.confirm_timeout.saturating_sub(1).max(1)) {
            "nixmox lost it at activation"
        } else {
            "nixmox's confirmation came too late"
        }
    };
    if let Err(e) = act.result {
        // nixmox handles a failed activation itself once the guard stands down.
        if let (Some(dir), false) = (&act.guard, act.lost) {
            match super::confirm::claim(t, dir, super::guard::Claim::TakeOver, patience) {
                Some(super::guard::Decided::Won) => {}
                Some(d) => {
                    return Err(super::confirm::guard_decided(
                        t,
                        dir,
                        &d,
                        r.confirm_timeout,
                        settle,
                        lost_at(act.silence),
                    ))
                }
                None => return Err(e),
            }
        }
        if act.lost {
            return Err(e);
        }
        let rollback = if r.rollback && r.goal.sets_profile() {
            roll_back(r, previous.as_deref(), generation)
        } else {
            String::new()
        };
        return Err(match e {
            DeployError::Activation {
                host,
                goal,
                system,
                status,
                log,
                ..
            } => DeployError::Activation {
                host,
                goal,
                system,
                status,
                log,
                rollback,
            },
            other => other,
        });
    }
    if r.goal.runs() {
        let (gate, missed) = match &act.guard {
            Some(dir) => super::confirm::gate_in_touch(t, dir, r.confirm_timeout, || {
                health::gate(r.health, r.ports, t)
            }),
            None => (health::gate(r.health, r.ports, t), false),
        };
        // Then the one claim that decides: confirmed when the gate passed,
        // nixmox's own rollback when it failed; the guard may have won.
        if let Some(dir) = &act.guard {
            let what = if gate.is_ok() {
                super::guard::Claim::Confirm
            } else {
                super::guard::Claim::TakeOver
            };
            let at = if missed {
                "nixmox lost it during its health gate"
            } else {
                lost_at(act.silence)
            };
            // A confirmation travels over a connection of its own: it must
            // prove the host can still be reached, and a system that broke
            // sshd leaves the connection opened before it working.
            let via = if gate.is_ok() { t.fresh() } else { t.clone() };
            match super::confirm::claim(&via, dir, what, patience) {
                Some(super::guard::Decided::Won) => {}
                Some(d) => {
                    let e = super::confirm::guard_decided(t, dir, &d, r.confirm_timeout, settle, at);
                    return Err(match gate {
                        Err(gate) => DeployError::Health {
                            gate,
                            rollback: format!("\n{e}"),
                        },
                        Ok(()) => e,
                    });
                }
                None => {
                    return Err(DeployError::SelfRollback {
                        host: host(t),
                        what: format!(
                            "stopped answering before nixmox could confirm its new system: its guard rolls it back to its previous generation within {} s of the last contact; the next `nixmox apply` reports what happened",
                            r.confirm_timeout
                        ),
                    })
                }
            }
        }
        if let Err(gate) = gate {
            let rollback = if r.rollback {
                roll_back(r, previous.as_deref(), generation)
            } else {
                "\nrollback is disabled (enable_rollback = false): the host stays on the failed system".into()
            };
            return Err(DeployError::Health { gate, rollback });
        }
    }
    Ok(Outcome::Activated {
        from: (!current.is_empty()).then_some(current),
    })
}

/// The running system and the secrets hash, in one round trip (the glance
/// without probes); an answer that cannot be read counts as a fresh host.
/// Guards a killed run left waiting are settled first: nixmox is here again
/// and decides. One that already rolled its host back has changed what
/// runs there, so the host is looked at again.
fn look(t: &SshTarget, quick: Duration) -> Result<(String, String), DeployError> {
    let mut answer = remote(t, &super::glance::script(&[], 1), quick)?;
    let pending = super::glance::parse(&answer.stdout, 0)
        .map(|g| g.pending)
        .unwrap_or_default();
    if !pending.is_empty() {
        for id in &pending {
            let dir = format!("{}/{id}", remote::RUN_DIR);
            super::confirm::claim(t, &dir, super::guard::Claim::TakeOver, quick);
        }
        answer = remote(t, &super::glance::script(&[], 1), quick)?;
    }
    Ok(super::glance::parse(&answer.stdout, 0)
        .map(|g| (g.current, g.env_hash))
        .unwrap_or_default())
}

fn upload(t: &SshTarget, name: &str, bytes: &[u8]) -> Result<(), DeployError> {
    send(
        t,
        &remote::write_secret_file(name),
        &format!("/run/nixmox/{name}"),
        bytes,
    )
}

/// Writes a secret to `path` on the host (0600, atomically).
fn upload_to(t: &SshTarget, path: &str, bytes: &[u8]) -> Result<(), DeployError> {
    send(t, &remote::write_secret_file_at(path), path, bytes)
}

fn send(t: &SshTarget, cmd: &str, path: &str, bytes: &[u8]) -> Result<(), DeployError> {
    let out = ssh::run(t, cmd, Some(bytes), Duration::from_secs(30))?;
    if out.ok() {
        Ok(())
    } else {
        // Never echo the content: it holds secrets.
        Err(DeployError::Activation {
            host: host(t),
            goal: "upload",
            system: path.to_string(),
            status: out.code.map(|c| c.to_string()).unwrap_or_default(),
            log: out.stderr.trim().to_string(),
            rollback: String::new(),
        })
    }
}

/// Back to the previous generation, and its health checked again; the text says what happened.
fn roll_back(r: &DeployRequest, previous: Option<&str>, generation: Option<u64>) -> String {
    let t = r.target;
    let Some(previous) = previous else {
        return "\nno rollback: this was the host's first deploy, there is no previous generation"
            .into();
    };
    let step = || -> Result<(), DeployError> {
        // To the generation that pointed at `previous` before this deploy.
        let back = match generation {
            Some(n) => remote::switch_generation(n),
            None => remote::rollback_profile(),
        };
        let out = remote(t, &back, Duration::from_secs(30))?;
        if !out.ok() {
            return Err(DeployError::Activation {
                host: host(t),
                goal: "rollback",
                system: previous.into(),
                status: out.code.map(|c| c.to_string()).unwrap_or_default(),
                log: out.stderr.trim().into(),
                rollback: String::new(),
            });
        }
        activate(t, previous, Goal::Switch, r.activation_timeout)?;
        health::gate(r.health, r.ports, t).map_err(|gate| DeployError::Health {
            gate,
            rollback: String::new(),
        })
    };
    match step() {
        Ok(()) => format!(
            "\nrolled back: host {} is on the previous generation {previous} again, and healthy",
            host(t)
        ),
        Err(e) => format!("\nrollback to {previous} failed too: {e}"),
    }
}

/// The number of system generations on the host.
pub fn generations(t: &SshTarget) -> Result<usize, DeployError> {
    let out = remote(t, &remote::generation_count(), Duration::from_secs(30))?;
    Ok(out.stdout.trim().parse().unwrap_or(0))
}

/// `nixmox rollback <svc>`: the host's profile back one generation, that
/// system activated and its health checked; returns the system it is on now.
pub fn roll_back_by_hand(
    t: &SshTarget,
    h: &Health,
    ports: &[u16],
    limit: Duration,
) -> Result<String, DeployError> {
    let quick = Duration::from_secs(30);
    let before = remote(t, &remote::profile_target(), quick)?
        .stdout
        .trim()
        .to_string();
    let out = remote(t, &remote::rollback_profile(), quick)?;
    if !out.ok() {
        return Err(DeployError::Activation {
            host: host(t),
            goal: "rollback",
            system: before,
            status: out.code.map(|c| c.to_string()).unwrap_or_default(),
            log: format!("{} (there may be no earlier generation)", out.stderr.trim()),
            rollback: String::new(),
        });
    }
    let previous = remote(t, &remote::profile_target(), quick)?
        .stdout
        .trim()
        .to_string();
    activate(t, &previous, Goal::Switch, limit)?;
    health::gate(h, ports, t).map_err(|gate| DeployError::Health {
        gate,
        rollback: String::new(),
    })?;
    Ok(previous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_hash_names_its_parts_and_hides_the_values() {
        let key = AgeKey {
            bytes: b"AGE-SECRET-KEY-1XYZ".to_vec(),
            target: "/var/lib/sops/age.key".into(),
        };
        assert_eq!(secrets_hash(None, None), "");
        let both = secrets_hash(Some("TOKEN=s3cret\n"), Some(&key));
        let env = hash_part(&both, "env").expect("env part");
        let age = hash_part(&both, "age").expect("age part");
        assert_eq!((env.len(), age.len()), (32, 32));
        assert_eq!(both, format!("env={env} age={age}"));
        assert!(!both.contains("s3cret") && !both.contains("XYZ"));
        // Each part moves with its own secret only.
        let other_env = secrets_hash(Some("TOKEN=other\n"), Some(&key));
        assert_ne!(hash_part(&other_env, "env"), Some(env));
        assert_eq!(hash_part(&other_env, "age"), Some(age));
        let moved = AgeKey {
            target: "/etc/age.key".into(),
            ..key.clone()
        };
        assert_ne!(
            hash_part(&secrets_hash(None, Some(&moved)), "age"),
            Some(age)
        );
        assert_eq!(hash_part("0123abcd", "env"), None);
        assert_eq!(hash_part(&secrets_hash(None, Some(&key)), "env"), None);
    }
}
