//! From the plan's Terraform steps to runnable phases: which configuration,
//! which workspace, and which earlier workspaces' outputs each receives.

use super::inputs;
use super::outputs::Outputs;
use super::runner::PhaseSpec;
use crate::manifest::{Manifest, TerraformPhase};
use crate::plan::{Phase, Plan};
use std::collections::BTreeMap;
use std::path::Path;

/// A Terraform step of the plan, before the outputs it needs are known.
pub struct TfStep<'m> {
    pub step_id: String,
    pub phase: Phase,
    pub service: Option<String>,
    pub workspace: String,
    pub config: &'m TerraformPhase,
    /// Workspaces whose outputs this phase receives as `upstream_outputs`.
    pub upstream: Vec<String>,
}

/// The Terraform steps of `plan`, in plan order. `tf:infra` receives nothing;
/// `tf:auth-core` the infra outputs; a service's infra phase those two plus
/// the infra phases of the applications it depends on; its config phase all
/// of that plus its own infra outputs. A core service's phases run before
/// `tf:auth-core` and so receive no auth-core outputs.
pub fn steps<'m>(m: &'m Manifest, plan: &Plan) -> Vec<TfStep<'m>> {
    let mut out = Vec::new();
    for step in &plan.steps {
        let (config, upstream): (&TerraformPhase, Vec<String>) =
            match (step.phase, step.service.as_deref()) {
                (Phase::TfInfra, _) => (&m.terraform.infra, vec![]),
                (Phase::TfAuthCore, _) => (&m.terraform.auth_core, vec!["infra".into()]),
                (Phase::TfServiceInfra, Some(name)) | (Phase::TfServiceConfig, Some(name)) => {
                    let Some(s) = m.service(name) else { continue };
                    // A core service's Terraform runs before tf:auth-core.
                    let mut up = if s.is_core() {
                        vec!["infra".to_string()]
                    } else {
                        vec!["infra".to_string(), "auth-core".to_string()]
                    };
                    let mut deps: Vec<&String> = s
                        .depends_on
                        .iter()
                        .filter(|d| m.service(d).is_some_and(|d| !d.is_core()))
                        .collect();
                    deps.sort();
                    up.extend(deps.into_iter().map(|d| format!("{d}-infra")));
                    if step.phase == Phase::TfServiceConfig {
                        up.push(format!("{name}-infra"));
                        (&s.terraform.config, up)
                    } else {
                        (&s.terraform.infra, up)
                    }
                }
                _ => continue,
            };
        out.push(TfStep {
            step_id: step.id.clone(),
            phase: step.phase,
            service: step.service.clone(),
            workspace: step.workspace.clone().unwrap_or_default(),
            config,
            upstream,
        });
    }
    out
}

impl<'m> TfStep<'m> {
    /// A runnable phase, with the outputs known so far (`known`, by workspace).
    pub fn spec(
        &self,
        m: &'m Manifest,
        base_dir: &Path,
        known: &BTreeMap<String, Outputs>,
    ) -> PhaseSpec<'m> {
        PhaseSpec {
            phase: self.phase,
            service: self.service.clone(),
            workspace: self.workspace.clone(),
            config: self.config,
            base_dir: base_dir.to_path_buf(),
            tree_root: super::stack::tree_root(m),
            derived: inputs::derived(m, self.service.as_deref()),
            secrets: crate::secrets::sops::Context::of(m),
            upstream: self
                .upstream
                .iter()
                .filter_map(|ws| known.get(ws).map(|o| (ws.clone(), o.clone())))
                .collect(),
        }
    }
}
