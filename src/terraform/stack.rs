//! All the Terraform phases of a stack together: the online plan (what each
//! workspace would change, what waits on unapplied outputs), applying them in
//! plan order with outputs flowing onward, and reading every workspace's outputs.

use super::command::{Locking, PlanMode};
use super::outputs::Outputs;
use super::phases::{self, TfStep};
use super::report::Changes;
use super::retry::{RetryPolicy, DEFAULT_TRANSIENT};
use super::runner::{PhaseResult, Status, Terraform, TfError};
use super::sinks;
use crate::manifest::Manifest;
use crate::plan::{Phase, Plan};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `terraform.root`: the directory whose tree a root module is copied with
/// (relative to the manifest's directory); the manifest's directory unless set.
pub fn tree_root(m: &Manifest) -> PathBuf {
    let base = m.dir();
    match &m.terraform.root {
        Some(root) => {
            let p = base.join(root);
            std::fs::canonicalize(&p).unwrap_or(p)
        }
        None => base,
    }
}

/// The Terraform runner the manifest asks for.
pub fn terraform_for(m: &Manifest) -> Result<Terraform, String> {
    let t = &m.terraform;
    let patterns: Vec<String> = match &t.retry.patterns {
        Some(p) => p.clone(),
        None => DEFAULT_TRANSIENT.iter().map(|s| s.to_string()).collect(),
    };
    let retry = RetryPolicy::new(
        t.retry.attempts,
        Duration::from_secs(t.retry.backoff_seconds),
        &patterns,
    )?;
    Ok(Terraform::new(
        &t.binary,
        m.work_dir().join("terraform"),
        Locking {
            lock_timeout_secs: t.lock_timeout,
        },
        retry,
    )
    .with_timeout(Duration::from_secs(t.timeout)))
}

/// What the online plan found for one Terraform phase.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PhasePlan {
    NoModules,
    /// Its inputs wait on workspaces never applied yet: never mocked.
    Pending {
        waits_on: Vec<String>,
    },
    /// Its inputs are outputs of workspaces whose outputs change (or may):
    /// it is planned again once those are applied, never shown as "no changes".
    Replan {
        after: Vec<String>,
    },
    Planned {
        changes: Changes,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedPhase {
    pub step: String,
    pub phase: Phase,
    pub workspace: String,
    #[serde(flatten)]
    pub plan: PhasePlan,
}

impl PlannedPhase {
    /// True when an apply would do something here (or cannot be known yet).
    pub fn pending_changes(&self) -> bool {
        match &self.plan {
            PhasePlan::NoModules => false,
            PhasePlan::Pending { .. } | PhasePlan::Replan { .. } => true,
            PhasePlan::Planned { changes } => changes.any(),
        }
    }
}

/// Plans every Terraform phase whose inputs are known. A workspace whose
/// upstream was never applied is pending; one whose upstream's outputs
/// change (or may: it is itself pending or re-planned) is re-planned after
/// it; only the rest are planned now, with the outputs their upstream holds.
pub fn plan_all(m: &Manifest, plan: &Plan, tf: &Terraform) -> Result<Vec<PlannedPhase>, TfError> {
    plan_all_in(m, plan, tf, PlanMode::Normal)
}

/// [`plan_all`] in another mode: `RefreshOnly` finds what drifted outside
/// Terraform and nothing else.
pub fn plan_all_in(
    m: &Manifest,
    plan: &Plan,
    tf: &Terraform,
    mode: PlanMode,
) -> Result<Vec<PlannedPhase>, TfError> {
    let steps = phases::steps(m, plan);
    let with_modules: BTreeSet<&str> = steps
        .iter()
        .filter(|s| !s.config.is_empty())
        .map(|s| s.workspace.as_str())
        .collect();
    let base = m.dir();
    // Workspaces whose outputs are not known to stay as they are.
    let mut moving: BTreeSet<String> = BTreeSet::new();
    let mut known: BTreeMap<String, Outputs> = BTreeMap::new();
    let mut out = Vec::new();
    for step in &steps {
        let upstream: Vec<&String> = step
            .upstream
            .iter()
            .filter(|ws| with_modules.contains(ws.as_str()))
            .collect();
        let planned = if step.config.is_empty() {
            PhasePlan::NoModules
        } else {
            let unapplied: Vec<String> = upstream
                .iter()
                .filter(|ws| !tf.has_state(ws))
                .map(|ws| ws.to_string())
                .collect();
            let after: Vec<String> = upstream
                .iter()
                .filter(|ws| moving.contains(ws.as_str()))
                .map(|ws| ws.to_string())
                .collect();
            if !unapplied.is_empty() {
                moving.insert(step.workspace.clone());
                PhasePlan::Pending {
                    waits_on: unapplied,
                }
            } else if !after.is_empty() {
                moving.insert(step.workspace.clone());
                PhasePlan::Replan { after }
            } else {
                for ws in &upstream {
                    if !known.contains_key(ws.as_str()) {
                        known.insert(ws.to_string(), tf.outputs(step.phase, ws)?);
                    }
                }
                let spec = step.spec(m, &base, &known);
                let changes = tf.plan_phase(&spec, mode)?.unwrap_or_default();
                // Drift alone moves nothing downstream: each workspace's
                // drift is its own (a refresh-only plan reports only that).
                if mode == PlanMode::Normal
                    && (!changes.outputs.is_empty() || !tf.has_state(&step.workspace))
                {
                    moving.insert(step.workspace.clone());
                }
                PhasePlan::Planned { changes }
            }
        };
        out.push(PlannedPhase {
            step: step.step_id.clone(),
            phase: step.phase,
            workspace: step.workspace.clone(),
            plan: planned,
        });
    }
    Ok(out)
}

impl PlannedPhase {
    /// What the phase would do, in a few words.
    pub fn describe(&self) -> String {
        match &self.plan {
            PhasePlan::NoModules => "no modules".to_string(),
            PhasePlan::Pending { waits_on } => format!(
                "pending: its inputs wait on {}, not applied yet",
                waits_on.join(", ")
            ),
            PhasePlan::Replan { after } => format!(
                "re-planned after {} (whose outputs change)",
                after.join(", ")
            ),
            PhasePlan::Planned { changes } if changes.any() || !changes.drift.is_empty() => {
                changes.short()
            }
            PhasePlan::Planned { .. } => "no changes".to_string(),
        }
    }
}

/// Applies every Terraform phase in plan order, each receiving the outputs of
/// those before it. `each` hears about every phase as it finishes. Stops at
/// the first failure. Afterwards the non-sensitive outputs are written to
/// `<state dir>/outputs.json` and, when the manifest names one, every output
/// to its SOPS file.
pub fn apply_all(
    m: &Manifest,
    plan: &Plan,
    tf: &Terraform,
    mut each: impl FnMut(&TfStep, &PhaseResult),
) -> Result<BTreeMap<String, Outputs>, ApplyError> {
    let base = m.dir();
    let mut known: BTreeMap<String, Outputs> = BTreeMap::new();
    for step in phases::steps(m, plan) {
        let spec = step.spec(m, &base, &known);
        let result = tf
            .apply_phase(&spec)
            .map_err(|e| ApplyError::Terraform(Box::new(e)))?;
        each(&step, &result);
        if result.status != Status::NoModules {
            known.insert(step.workspace.clone(), result.outputs);
        }
    }
    write_sinks(m, &known)?;
    Ok(known)
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Terraform(Box<TfError>),
    #[error("writing the outputs: {0}")]
    Sink(String),
}

/// The JSON file of non-sensitive outputs, and the SOPS file if configured.
pub fn write_sinks(m: &Manifest, known: &BTreeMap<String, Outputs>) -> Result<(), ApplyError> {
    let json_path = m.work_dir().join("outputs.json");
    let text = serde_json::to_string_pretty(&sinks::public_json(known))
        .map_err(|e| ApplyError::Sink(e.to_string()))?;
    crate::files::write_atomic(&json_path, text.as_bytes(), 0o644).map_err(ApplyError::Sink)?;
    if let Some(file) = m
        .secrets
        .sops_file
        .as_ref()
        .filter(|_| m.secrets.write_outputs)
    {
        let values = sinks::sops_values(known);
        let age_key = m.secrets.age_key_file.as_ref().map(|k| m.dir().join(k));
        crate::secrets::sops::write(&m.dir(), Path::new(file), age_key, &values)
            .map_err(ApplyError::Sink)?;
    }
    Ok(())
}

/// The outputs of every Terraform workspace of the plan that has run.
pub fn outputs_all(
    m: &Manifest,
    plan: &Plan,
    tf: &Terraform,
) -> Result<BTreeMap<String, Outputs>, TfError> {
    let mut out = BTreeMap::new();
    for step in phases::steps(m, plan) {
        if !step.config.is_empty() && tf.has_state(&step.workspace) {
            out.insert(
                step.workspace.clone(),
                tf.held_outputs(step.phase, &step.workspace)?,
            );
        }
    }
    Ok(out)
}
