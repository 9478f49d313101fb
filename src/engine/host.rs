//! One host of a run: its environment file, building its system, deploying
//! it behind its health gate (or seeing that nothing needs doing), and
//! rolling it back by hand.

use super::run::Ctx;
use crate::manifest::Service;
use crate::nixos::build;
use crate::nixos::deploy::{self, DeployRequest, Outcome};
use crate::nixos::{glance, health, targets};
use std::time::Duration;

impl Ctx<'_> {
    /// The env file a service's host receives, from the outputs known now.
    /// The hash of the secrets `s`'s host would be given now (see
    /// [`deploy::secrets_hash`]).
    pub(super) fn inputs_hash(&self, s: &Service) -> String {
        match self.env_for(s) {
            Ok(env) => deploy::secrets_hash(env.as_deref(), self.age_key.as_ref()),
            // Matches no host's: the deploy that follows says what is wrong.
            Err(_) => "unreadable".into(),
        }
    }

    /// Notes what `s`'s host was left with: its system and secrets hash.
    pub(super) fn record_inputs(&self, s: &Service, system: &str) {
        let hash = self.inputs_hash(s);
        if let Ok(mut d) = self.deployed.lock() {
            d.insert(s.name.clone(), (system.to_string(), hash));
        }
    }

    /// A workspace not applied yet in this run counts with the outputs it
    /// held at the start: a core host deployed before `tf:auth-core` gets
    /// auth-core's outputs as they stand, so a re-run that changes nothing
    /// sends the same file, and `--phase` runs never strip values from it.
    pub(super) fn env_for(&self, s: &Service) -> Result<Option<String>, String> {
        let known = self.known.lock().map(|k| k.clone()).map_err(|_| {
            "the outputs known so far are unreadable (a worker panicked)".to_string()
        })?;
        let known = self.with_held(known, super::env::workspaces(&self.tf_steps, s));
        super::env::file(self.m, &self.tf_steps, s, &known)
    }

    /// Builds, deploys and gates one host; `Ok(changed)`.
    /// `looked`: the caller already took the one look of [`Self::current_and_healthy`] and it said no.
    pub(super) fn deploy(&self, s: &Service, system: &str, looked: bool) -> Result<bool, String> {
        // However this ends, the rest of the stack stops making way for it.
        let _ended = self.look.switching.on_end(&s.name);
        // The common case of a re-run: one look, nothing to do.
        if !looked && self.current_and_healthy(s, system) {
            if let Ok(mut systems) = self.systems.lock() {
                systems.insert(s.name.clone(), system.to_string());
            }
            self.record_inputs(s, system);
            return Ok(false);
        }
        let target = targets::target(self.m, s, &self.control)?;
        let seen = self.look.host(&s.name);
        // A host that rolled itself back while no nixmox watched (a killed
        // run) says so once, here; then it is deployed as usual.
        if seen.as_ref().is_none_or(|g| !g.records.is_empty()) {
            if let Ok(records) = crate::nixos::confirm::take_records(&target) {
                let notes: Vec<String> = records
                    .iter()
                    .map(|r| {
                        format!(
                            "host {} {} (no nixmox was watching)",
                            target.name,
                            r.describe()
                        )
                    })
                    .collect();
                if !notes.is_empty() {
                    if let Ok(mut n) = self.guard_notes.lock() {
                        n.entry(s.name.clone()).or_default().extend(notes);
                    }
                }
            }
        }
        let env = self.env_for(s)?;
        let switched = || self.look.switching.switched(&s.name);
        let req = DeployRequest {
            target: &target,
            nix: &self.nix,
            system,
            goal: self.goal,
            env: env.as_deref(),
            age_key: self.age_key.as_ref(),
            health: &s.health,
            ports: &s.ports,
            activation_timeout: Duration::from_secs(self.m.nixos.activation_timeout),
            rollback: self.m.options.enable_rollback,
            force: self.force.contains(&s.name),
            confirm_timeout: s
                .nixos
                .confirm_timeout
                .unwrap_or(self.m.nixos.confirm_timeout),
            closure_on_target: self
                .placed
                .lock()
                .is_ok_and(|p| p.get(&s.name).is_some_and(|path| path == system))
                || self.look.copied(&s.name, system),
            seen: seen.as_ref(),
            switched: Some(&switched),
        };
        let result = deploy::deploy(&req);
        if result.is_ok() {
            if let Ok(mut systems) = self.systems.lock() {
                systems.insert(s.name.clone(), system.to_string());
            }
            self.record_inputs(s, system);
        }
        match result {
            Ok(Outcome::Unchanged) => {
                // Unchanged still must be healthy before anything builds on it. A
                // current but unhealthy host (a daemon that died) is activated
                // again, as switch-to-configuration restarts what is down.
                // One quick look first: a healthy host answers at once.
                let quick = crate::manifest::Health {
                    retries: 1,
                    timeout: s.health.timeout.min(10),
                    ..s.health.clone()
                };
                if let Err(first) = health::gate(&quick, &s.ports, &target) {
                    crate::nixos::activate::activate(
                        &target,
                        system,
                        self.goal,
                        Duration::from_secs(self.m.nixos.activation_timeout),
                    )
                    .map_err(|e| format!("{first}; activating it again failed: {e}"))?;
                    health::gate(&s.health, &s.ports, &target)
                        .map_err(|e| format!("{e} (also after activating it again)"))?;
                    return Ok(true);
                }
                Ok(false)
            }
            Ok(Outcome::Activated { .. }) => Ok(true),
            Err(e) => Err(e.to_string()),
        }
    }

    /// True when the host runs `system` with the environment it would get now,
    /// and is healthy at a glance: the run's first look when it still holds,
    /// else one look now.
    pub(super) fn current_and_healthy(&self, s: &Service, system: &str) -> bool {
        if self.force.contains(&s.name) {
            return false;
        }
        let seen = match self.look.host(&s.name) {
            Some(g) => g,
            None => {
                let Ok(target) = targets::target(self.m, s, &self.control) else {
                    return false;
                };
                match glance::glance(&target, &s.health, &s.ports) {
                    Ok(g) => g,
                    Err(_) => return false,
                }
            }
        };
        seen.current == system
            && seen.env_hash == self.inputs_hash(s)
            && seen.healthy
            && seen.settled()
    }

    /// `detail` with what `s`'s host did by itself since the last run, taken
    /// (so said once).
    pub(super) fn with_guard_notes(&self, s: &Service, detail: String) -> String {
        let notes = self
            .guard_notes
            .lock()
            .ok()
            .and_then(|mut n| n.remove(&s.name))
            .unwrap_or_default();
        if notes.is_empty() {
            detail
        } else {
            format!("{detail}; {}", notes.join("; "))
        }
    }

    pub(super) fn build_one(&self, s: &Service) -> Result<String, String> {
        // Changed outputs may have changed what the flake evaluates to.
        let fresh = !self
            .outputs_changed
            .load(std::sync::atomic::Ordering::Relaxed);
        if fresh {
            if let Some(Ok(path)) = self.look.built(&s.name) {
                return Ok(path);
            }
        }
        let evaluated = if fresh {
            self.look.evaluation(&s.name)
        } else {
            None
        };
        self.build_system(s, evaluated.as_ref())
    }

    /// Builds `s`'s system where `build_host` says: here, on its host, or
    /// on a builder. A closure already on its host is remembered, so the
    /// deploy does not send it from here; where it was built is said with
    /// the deploy step.
    /// `evaluated`: what the run's evaluation gave for it, if that still holds.
    pub(super) fn build_system(
        &self,
        s: &Service,
        evaluated: Option<&build::Evaluated>,
    ) -> Result<String, String> {
        let inst = build::installable(&self.nix.flake, &targets::attribute(s));
        let failed = |e: String| format!("building the system of {}: {e}", s.name);
        let Some(builder) = targets::builder(self.m, s, &self.control).map_err(failed)? else {
            return build::build_system(&self.nix, &inst, evaluated)
                .map_err(|e| failed(e.to_string()));
        };
        let target = targets::target(self.m, s, &self.control).map_err(failed)?;
        let built =
            crate::nixos::remote_build::build_on(&self.nix, &inst, evaluated, &builder, &target)
                .map_err(|e| failed(e.to_string()))?;
        if let Ok(mut placed) = self.placed.lock() {
            if built.on_target {
                placed.insert(s.name.clone(), built.path.clone());
            } else {
                placed.remove(&s.name);
            }
        }
        if let Ok(mut n) = self.guard_notes.lock() {
            n.entry(s.name.clone()).or_default().push(built.note);
        }
        Ok(built.path)
    }

    pub(super) fn roll_back(&self, s: &Service) -> String {
        let result = targets::target(self.m, s, &self.control).and_then(|t| {
            deploy::roll_back_by_hand(
                &t,
                &s.health,
                &s.ports,
                Duration::from_secs(self.m.nixos.activation_timeout),
            )
            .map_err(|e| e.to_string())
        });
        match result {
            Ok(path) => {
                if let Ok(mut systems) = self.systems.lock() {
                    systems.insert(s.name.clone(), path.clone());
                }
                format!(
                    "rolled back: host {} is on the previous generation {path} again, and healthy",
                    s.name
                )
            }
            Err(e) => format!("rollback failed too: {e}"),
        }
    }
}
