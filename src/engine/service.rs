//! One application of a run: its phases in order (its own Terraform, its
//! host, its health gate, its config Terraform, verify), its databases,
//! and putting its Terraform back when it fails.

use super::event::StepStatus;
use super::run::{Ctx, TfSnapshot};
use crate::manifest::Service;
use crate::nixos::{health, targets};
use crate::plan::Phase;
use crate::terraform::phases::TfStep;
use std::time::Instant;

impl Ctx<'_> {
    /// Phase 4 for one application: infra, deploy + gate, config, verify.
    /// `Ok(true)` when any of its steps changed something.
    pub(super) fn service(&self, s: &Service) -> Result<bool, String> {
        let mut any = false;
        let mut activated = false;
        // `--batch`: a place among the hosts switching, from the deploy to the end of its gate.
        let mut slot: Option<super::schedule::Slot> = None;
        for phase in Phase::APPLICATION {
            let Some(step) = self.step(&format!("{}:{}", phase.id(), s.name)) else {
                continue;
            };
            // Health goes with the deploy it guards.
            let selected = if phase == Phase::Health {
                self.runs(Phase::NixServiceConfig)
            } else {
                self.runs(phase)
            };
            if !selected {
                self.not_selected(step);
                continue;
            }
            if let (Phase::NixServiceConfig, Some(places)) = (phase, &self.switching) {
                slot.replace(places.take());
            }
            let started = Instant::now();
            self.event(step, StepStatus::Started, String::new(), started);
            let result = match phase {
                Phase::TfServiceInfra => self
                    .databases(s)
                    .and_then(|(n, detail)| self.terraform(step).map(|c| (c || n > 0, detail))),
                Phase::TfServiceConfig => self.terraform(step).map(|c| (c, String::new())),
                Phase::NixServiceConfig => self.build_one(s).and_then(|system| {
                    self.deploy(s, &system, false)
                        .map(|c| (c, self.with_guard_notes(s, system)))
                }),
                Phase::Health => Ok((false, "passed with the deploy".into())),
                Phase::Verify => self.verify(s).map(|detail| (false, detail)),
                _ => Ok((false, String::new())),
            };
            match result {
                Ok((changed, detail)) => {
                    any |= changed;
                    activated |= changed && phase == Phase::NixServiceConfig;
                    let status = StepStatus::done(changed);
                    self.event(step, status, detail, started);
                    if phase == Phase::Health {
                        drop(slot.take());
                    }
                }
                Err(e) => {
                    let e = if phase == Phase::NixServiceConfig {
                        self.with_guard_notes(s, e)
                    } else {
                        e
                    };
                    // A failure after the host was switched rolls the host back too.
                    let mut e = if activated
                        && phase != Phase::NixServiceConfig
                        && self.m.options.enable_rollback
                    {
                        format!("{e}\n{}", self.roll_back(s))
                    } else {
                        e
                    };
                    if self.m.options.enable_rollback {
                        for line in self.roll_back_terraform(s) {
                            e.push('\n');
                            e.push_str(&line);
                        }
                    }
                    self.event(step, StepStatus::Failed, e.clone(), started);
                    return Err(format!("{}: {e}", step.id));
                }
            }
        }
        self.remember_terraform(s);
        Ok(any)
    }

    /// The Terraform steps of one service that have modules, in plan order.
    pub(super) fn service_tf_steps(&self, s: &Service) -> Vec<&TfStep<'_>> {
        let mut steps: Vec<&TfStep> = self
            .tf_steps
            .values()
            .filter(|t| t.service.as_deref() == Some(s.name.as_str()) && !t.config.is_empty())
            .collect();
        steps.sort_by_key(|t| t.phase);
        steps
    }

    /// After a service verified: its workspaces' configuration is its last good one.
    pub(super) fn remember_terraform(&self, s: &Service) {
        for step in self.service_tf_steps(s) {
            let Some((files, links, run)) =
                crate::terraform::workdir::snapshot(&self.tf.workdir(&step.workspace))
            else {
                continue;
            };
            let snap = TfSnapshot {
                files,
                links,
                run,
                variables: step.config.variables.clone(),
            };
            if let (Ok(json), Ok(mut good)) = (serde_json::to_string(&snap), self.tf_good.lock()) {
                good.insert(step.workspace.clone(), json);
            }
        }
    }

    /// A failed service's workspaces that changed in this run go back to their
    /// last good configuration, unless that would delete or replace anything.
    pub(super) fn roll_back_terraform(&self, s: &Service) -> Vec<String> {
        let changed = self
            .tf_changed
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        let mut out = Vec::new();
        for step in self.service_tf_steps(s).into_iter().rev() {
            let ws = &step.workspace;
            if !changed.contains(ws) {
                continue;
            }
            let Some(snap) = self
                .last_good_tf
                .get(ws)
                .and_then(|j| serde_json::from_str::<TfSnapshot>(j).ok())
            else {
                out.push(format!(
                    "terraform {ws}: no last good configuration to roll back to (first deploy)"
                ));
                continue;
            };
            let result = (|| -> Result<String, String> {
                let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                crate::terraform::workdir::restore(dir.path(), &snap.files, &snap.links)?;
                // The root module in its tree, or the single files as they were.
                let modules = if snap.run.is_empty() {
                    snap.files
                        .keys()
                        .map(|f| dir.path().join(f).display().to_string())
                        .collect()
                } else {
                    vec![dir.path().join(&snap.run).display().to_string()]
                };
                let cfg = crate::manifest::TerraformPhase {
                    modules,
                    variables: snap.variables.clone(),
                    targets: vec![],
                    apply_order: vec![],
                };
                let known = self.known.lock().map(|k| k.clone()).unwrap_or_default();
                let base = self.m.dir();
                let mut spec = step.spec(self.m, &base, &known);
                spec.config = &cfg;
                spec.tree_root = dir.path().to_path_buf();
                let preview = self
                    .tf
                    .plan_phase(&spec, crate::terraform::command::PlanMode::Normal)
                    .map_err(|e| e.to_string())?
                    .unwrap_or_default();
                if preview.destroy + preview.replace > 0 {
                    return Ok(format!(
                        "terraform {ws}: not rolled back: going back would delete or replace {} resource(s), and a rollback never destroys without being asked",
                        preview.destroy + preview.replace
                    ));
                }
                self.tf.apply_phase(&spec).map_err(|e| e.to_string())?;
                Ok(format!(
                    "terraform {ws}: rolled back to its last good configuration ({})",
                    preview.short()
                ))
            })();
            out.push(result.unwrap_or_else(|e| format!("terraform {ws}: rollback failed: {e}")));
        }
        out
    }

    /// The native-migration databases of a service: role, databases, migrations.
    pub(super) fn databases(&self, s: &Service) -> Result<(usize, String), String> {
        let native: Vec<_> = s
            .databases
            .iter()
            .filter(|d| d.mode == Some(crate::manifest::DbMode::NativeMigration))
            .collect();
        if native.is_empty() {
            return Ok((0, String::new()));
        }
        if self.look.databases_in_place(&s.name) {
            return Ok((0, "databases in place, 0 migration(s) applied".into()));
        }
        let pg = self
            .m
            .service("postgresql")
            .ok_or("no postgresql service")?;
        let target = targets::target(self.m, pg, &self.control)?;
        let base = self.m.dir();
        let mut applied = 0;
        for db in native {
            applied += crate::nixos::database::ensure(&target, &self.m.nixos.psql, &base, db)?;
        }
        Ok((
            applied,
            format!("databases ensured, {applied} migration(s) applied"),
        ))
    }

    /// Phase 4d: health (liveness, readiness) and the end-to-end checks.
    pub(super) fn verify(&self, s: &Service) -> Result<String, String> {
        // The run's first look covered the probes and the checks while nothing changed.
        if self.look.host(&s.name).is_some_and(|g| g.healthy) {
            if let Some(detail) = self.look.verified(&s.name) {
                return Ok(detail);
            }
        }
        let target = targets::target(self.m, s, &self.control)?;
        for probe in [&s.health.readiness, &s.health.liveness]
            .into_iter()
            .flatten()
        {
            health::wait("verify", probe, &s.health, &target).map_err(|e| e.to_string())?;
        }
        let known = self.known.lock().map(|k| k.clone()).unwrap_or_default();
        let ctx = crate::verify::Context::new(self.m, &known);
        let checks = crate::verify::service(self.m, s, &ctx);
        crate::verify::verdict(&checks)
    }
}
