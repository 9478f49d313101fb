//! The online plan: everything `apply` would do, found by asking the
//! questions a run's look ahead asks — a plan per Terraform workspace, one
//! evaluation of every system, one look at each host, one read of each
//! service's databases — and changing nothing: hosts and state are only
//! read. A host whose system would change is compared closure to closure
//! (the new system is built here, as `apply` would build it; nothing is
//! copied). A host that cannot be reached is unknown, never "unchanged".

use super::env;
use crate::manifest::{Database, DbMode, Manifest, Service};
use crate::nixos::closure::{self, ClosureDiff};
use crate::nixos::database::{self, Pending};
use crate::nixos::deploy::{self, AgeKey};
use crate::nixos::{build, evaluation, glance, targets};
use crate::plan::Plan;
use crate::terraform::phases::{self, TfStep};
use crate::terraform::stack::{self, PhasePlan, PlannedPhase};
use crate::terraform::Outputs;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Everything `apply` would do, by executor.
#[derive(Debug, Serialize)]
pub struct Preview {
    pub terraform: Vec<PlannedPhase>,
    /// One entry per host of the plan, in plan order (empty with `--terraform-only`).
    pub nixos: Vec<HostPreview>,
    /// One entry per native-migration database entry of the plan's applications.
    pub databases: Vec<DbPreview>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Unchanged,
    Changes,
    /// The host (or database server) could not be asked: counted as a change.
    Unknown,
}

/// What would happen to one host.
#[derive(Debug, Serialize)]
pub struct HostPreview {
    pub service: String,
    pub host: Option<String>,
    pub address: Option<String>,
    pub state: State,
    /// The system the host runs now; `None` on a fresh host or when unknown.
    pub current: Option<String>,
    /// The system it would run.
    pub wanted: Option<String>,
    /// How the closure changes, when the system does.
    pub closure: Option<ClosureDiff>,
    pub env: Secret,
    pub age_key: Secret,
    /// Whether its probes pass now; `None` when not asked.
    pub healthy: Option<bool>,
    /// What changes, or why it is unknown, in words.
    pub reasons: Vec<String>,
}

/// A secret a host is given, by hash only (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Secret {
    /// The host is given none.
    None,
    Unchanged {
        hash: String,
    },
    Changes {
        before: Option<String>,
        after: String,
    },
    /// Made from outputs of workspaces that change first: known only then.
    After {
        workspaces: Vec<String>,
    },
}

impl Secret {
    fn changes(&self) -> bool {
        matches!(self, Secret::Changes { .. } | Secret::After { .. })
    }
}

/// What would happen to one database entry of a service.
#[derive(Debug, Serialize)]
pub struct DbPreview {
    pub service: String,
    pub database: String,
    pub state: State,
    #[serde(flatten)]
    pub pending: Pending,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Preview {
    /// True when `apply` would change something, or something could not be known.
    pub fn changes(&self) -> bool {
        self.terraform.iter().any(PlannedPhase::pending_changes)
            || self.nixos.iter().any(|h| h.state != State::Unchanged)
            || self.databases.iter().any(|d| d.state != State::Unchanged)
    }
}

/// Asks everything at once and waits for every answer. `hosts`: false for a
/// Terraform-only plan, which contacts no host.
pub fn preview(m: &Manifest, plan: &Plan, hosts: bool) -> Result<Preview, String> {
    let tf = stack::terraform_for(m)?;
    let control = crate::nixos::ssh_control::Control::for_run(m)?;
    let services: Vec<&Service> = if hosts {
        plan.core
            .iter()
            .chain(plan.waves.iter().flatten())
            .filter_map(|n| m.service(n))
            .collect()
    } else {
        Vec::new()
    };
    let apps: BTreeSet<&str> = plan.waves.iter().flatten().map(String::as_str).collect();
    let nix = targets::nix_settings(m);
    let result = std::thread::scope(|scope| {
        let terraform = scope.spawn(|| stack::plan_all(m, plan, &tf).map_err(|e| e.to_string()));
        let evaluated = scope.spawn(|| {
            let attributes: Vec<(String, String)> = services
                .iter()
                .map(|s| (s.name.clone(), targets::attribute(s)))
                .collect();
            if attributes.is_empty() {
                return BTreeMap::new();
            }
            evaluation::evaluate_map(&nix, Some(&m.work_dir()), &attributes)
        });
        let looks: Vec<_> = services
            .iter()
            .map(|s| {
                let control = &control;
                scope.spawn(move || {
                    let t = targets::target(m, s, control)?;
                    glance::glance(&t, &s.health, &s.ports)
                })
            })
            .collect();
        let dbs: Vec<_> = services
            .iter()
            .filter(|s| apps.contains(s.name.as_str()))
            .flat_map(|s| {
                s.databases
                    .iter()
                    .filter(|d| d.mode == Some(DbMode::NativeMigration))
                    .map(move |d| (s, d))
            })
            .map(|(s, d)| {
                let control = &control;
                scope.spawn(move || {
                    let survey = m
                        .service("postgresql")
                        .ok_or_else(|| "the manifest has no postgresql service".to_string())
                        .and_then(|pg| targets::target(m, pg, control))
                        .and_then(|t| database::survey(&t, &m.nixos.psql, &m.dir(), d));
                    db_preview(s, d, survey)
                })
            })
            .collect();
        let evaluated = evaluated.join().unwrap_or_default();
        let seen: Vec<Result<glance::Glance, String>> = looks
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("the look at the host failed".into()))
            })
            .collect();
        // Hosts whose system would change: built and compared side by side.
        let systems: Vec<_> = services
            .iter()
            .zip(&seen)
            .map(|(s, look)| {
                let look = look.clone();
                let evaluated = evaluated.get(&s.name).cloned();
                let control = &control;
                let nix = &nix;
                scope.spawn(move || system(m, nix, s, &look, evaluated, control))
            })
            .collect();
        let systems: Vec<Result<SystemLook, String>> = systems
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("building the system failed".into()))
            })
            .collect();
        let databases: Vec<DbPreview> = dbs.into_iter().filter_map(|h| h.join().ok()).collect();
        let terraform = terraform
            .join()
            .unwrap_or_else(|_| Err("the Terraform plan failed".into()))?;
        Ok::<_, String>((terraform, seen, systems, databases))
    });
    control.end();
    let (terraform, seen, systems, databases) = result?;
    let held = held_outputs(m, plan, &tf, &terraform)?;
    let moving = moving_workspaces(&terraform);
    let tf_steps: HashMap<String, TfStep> = phases::steps(m, plan)
        .into_iter()
        .map(|s| (s.step_id.clone(), s))
        .collect();
    let age_key = AgeKey::of_manifest(m)?;
    let mut nixos = Vec::new();
    for ((s, look), system) in services.iter().zip(seen).zip(systems) {
        let system = system?;
        nixos.push(host_preview(
            s,
            look,
            system,
            plan.forced.contains(&s.name),
            SecretsWanted {
                env_workspaces: env::workspaces(&tf_steps, s),
                env: env::file(m, &tf_steps, s, &held)?,
                age_key: age_key.as_ref(),
                moving: &moving,
            },
        ));
    }
    Ok(Preview {
        terraform,
        nixos,
        databases,
    })
}

/// A host's system: the one it would get, and how its closure differs.
struct SystemLook {
    wanted: Option<String>,
    closure: Option<ClosureDiff>,
}

/// The wanted system of `s` (evaluated, or built when it differs from what
/// the host runs) and, when it differs, the closure diff. A host not seen
/// is not built for.
fn system(
    m: &Manifest,
    nix: &build::NixSettings,
    s: &Service,
    look: &Result<glance::Glance, String>,
    evaluated: Option<build::Evaluated>,
    control: &crate::nixos::ssh_control::Control,
) -> Result<SystemLook, String> {
    let out = evaluated.as_ref().map(|e| e.out.clone());
    // A host not seen is not built for: what it runs is unknown.
    let Ok(g) = look else {
        return Ok(SystemLook {
            wanted: out,
            closure: None,
        });
    };
    let current = g.current.clone();
    if !current.is_empty() && out.as_deref() == Some(current.as_str()) {
        return Ok(SystemLook {
            wanted: out,
            closure: None,
        });
    }
    let inst = build::installable(&nix.flake, &targets::attribute(s));
    let wanted = build::build_system(nix, &inst, evaluated.as_ref())
        .map_err(|e| format!("building the system of {}: {e}", s.name))?;
    if wanted == current {
        return Ok(SystemLook {
            wanted: Some(wanted),
            closure: None,
        });
    }
    let after = closure::local(&wanted)?;
    let before = if current.is_empty() {
        Vec::new()
    } else {
        closure::local(&current).or_else(|_| {
            let t = targets::target(m, s, control)?;
            closure::on_host(&t, &current)
        })?
    };
    Ok(SystemLook {
        wanted: Some(wanted),
        closure: Some(closure::diff(&before, &after)),
    })
}

/// What a host should be given, to compare with what it was given.
struct SecretsWanted<'a> {
    env_workspaces: BTreeSet<String>,
    env: Option<String>,
    age_key: Option<&'a AgeKey>,
    moving: &'a BTreeSet<String>,
}

fn secret(before: Option<&str>, after: Option<&str>) -> Secret {
    match (before, after) {
        (_, None) => Secret::None,
        (Some(b), Some(a)) if a == b => Secret::Unchanged { hash: a.into() },
        (b, Some(a)) => Secret::Changes {
            before: b.map(str::to_string),
            after: a.into(),
        },
    }
}

fn host_preview(
    s: &Service,
    look: Result<glance::Glance, String>,
    system: SystemLook,
    forced: bool,
    want: SecretsWanted,
) -> HostPreview {
    let mut p = HostPreview {
        service: s.name.clone(),
        host: s.host.hostname.clone(),
        address: s.host.ip.map(|ip| ip.to_string()),
        state: State::Unknown,
        current: None,
        wanted: system.wanted.clone(),
        closure: system.closure,
        env: Secret::None,
        age_key: Secret::None,
        healthy: None,
        reasons: Vec::new(),
    };
    let g = match look {
        Ok(g) => g,
        Err(e) => {
            p.reasons.push(format!("host not reachable: {e}"));
            return p;
        }
    };
    let wanted_hash = deploy::secrets_hash(want.env.as_deref(), want.age_key);
    let after: Vec<String> = want
        .env_workspaces
        .iter()
        .filter(|ws| want.moving.contains(*ws))
        .cloned()
        .collect();
    p.env = if !after.is_empty() {
        Secret::After { workspaces: after }
    } else {
        secret(
            deploy::hash_part(&g.env_hash, "env"),
            deploy::hash_part(&wanted_hash, "env"),
        )
    };
    p.age_key = secret(
        deploy::hash_part(&g.env_hash, "age"),
        deploy::hash_part(&wanted_hash, "age"),
    );
    p.current = (!g.current.is_empty()).then(|| g.current.clone());
    p.healthy = Some(g.healthy);
    match (&p.current, &p.wanted) {
        (None, _) => p.reasons.push("first deploy".into()),
        (Some(c), Some(w)) if c != w => p.reasons.push("new system".into()),
        _ => {}
    }
    match &p.env {
        Secret::Changes { .. } => p.reasons.push("env file changes".into()),
        Secret::After { workspaces } => p.reasons.push(format!(
            "env file made again after {} (whose outputs change)",
            workspaces.join(", ")
        )),
        _ => {}
    }
    if p.age_key.changes() {
        p.reasons.push("age key changes".into());
    }
    for r in &g.records {
        p.reasons
            .push(format!("{} (apply reports it)", r.describe()));
    }
    if !g.pending.is_empty() {
        p.reasons
            .push("a deploy of a killed run waits for confirmation: apply decides it".into());
    }
    if p.reasons.is_empty() && !g.healthy {
        p.reasons
            .push("unhealthy now: it would be activated again".into());
    }
    if p.reasons.is_empty() && forced {
        p.reasons.push("current, activated again (--force)".into());
    }
    p.state = if p.reasons.is_empty() {
        State::Unchanged
    } else {
        State::Changes
    };
    p
}

fn db_preview(s: &Service, d: &Database, survey: Result<Pending, String>) -> DbPreview {
    let (state, pending, reason) = match survey {
        Ok(p) if p.is_empty() => (State::Unchanged, p, None),
        Ok(p) => (State::Changes, p, None),
        Err(e) => (State::Unknown, Pending::default(), Some(e)),
    };
    DbPreview {
        service: s.name.clone(),
        database: d.name.clone(),
        state,
        pending,
        reason,
    }
}

/// Workspaces whose outputs are not known to stay as they are.
fn moving_workspaces(terraform: &[PlannedPhase]) -> BTreeSet<String> {
    terraform
        .iter()
        .filter(|p| match &p.plan {
            PhasePlan::Pending { .. } | PhasePlan::Replan { .. } => true,
            PhasePlan::Planned { changes } => !changes.outputs.is_empty(),
            PhasePlan::NoModules => false,
        })
        .map(|p| p.workspace.clone())
        .collect()
}

/// The outputs every workspace with modules holds now (read once the plans are done).
fn held_outputs(
    m: &Manifest,
    plan: &Plan,
    tf: &crate::terraform::Terraform,
    terraform: &[PlannedPhase],
) -> Result<BTreeMap<String, Outputs>, String> {
    let with_modules: BTreeSet<&str> = terraform
        .iter()
        .filter(|p| !matches!(p.plan, PhasePlan::NoModules))
        .map(|p| p.workspace.as_str())
        .collect();
    let mut out = BTreeMap::new();
    for step in phases::steps(m, plan) {
        if with_modules.contains(step.workspace.as_str()) && tf.has_state(&step.workspace) {
            let o = tf
                .held_outputs(step.phase, &step.workspace)
                .map_err(|e| e.to_string())?;
            out.insert(step.workspace.clone(), o);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_hash() {
        assert_eq!(secret(None, None), Secret::None);
        assert_eq!(secret(Some("a"), None), Secret::None);
        assert_eq!(
            secret(Some("a"), Some("a")),
            Secret::Unchanged { hash: "a".into() }
        );
        assert_eq!(
            secret(Some("a"), Some("b")),
            Secret::Changes {
                before: Some("a".into()),
                after: "b".into()
            }
        );
        assert_eq!(
            secret(None, Some("b")),
            Secret::Changes {
                before: None,
                after: "b".into()
            }
        );
    }
}
