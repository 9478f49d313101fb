//! `nixmox plan`: the deployment plan, and (online) what Terraform would change.

use super::common::{self, CliError};
use super::{Cli, PlanArgs};
use crate::plan;
use crate::terraform::stack::{self, PhasePlan};
use std::fmt::Write;
use std::process::ExitCode;

pub fn run(cli: &Cli, args: &PlanArgs) -> Result<ExitCode, CliError> {
    let v = common::load(cli)?;
    let m = &v.manifest;
    let plan = plan::build(m, &args.only)?;
    if args.offline {
        let text = if args.json {
            common::to_json(&plan::render::json(m, &plan))?
        } else {
            plan::render::human(m, &plan)
        };
        common::emit(&text)?;
        return Ok(ExitCode::SUCCESS);
    }
    let tf = stack::terraform_for(m).map_err(CliError::Message)?;
    let phases = stack::plan_all(m, &plan, &tf).map_err(|e| CliError::Message(e.to_string()))?;
    let pending = phases.iter().any(|p| p.pending_changes());
    if args.json {
        #[derive(serde::Serialize)]
        struct Online<'a> {
            version: u32,
            manifest: String,
            changes: bool,
            terraform: &'a [stack::PlannedPhase],
            nixos: &'static str,
        }
        common::emit(&common::to_json(&Online {
            version: plan::render::PLAN_JSON_VERSION,
            manifest: m.source.display().to_string(),
            changes: pending,
            terraform: &phases,
            nixos: "not checked: the NixOS executor is not available yet",
        })?)?;
    } else {
        let mut out = String::new();
        let width = phases
            .iter()
            .map(|p| p.workspace.len())
            .max()
            .unwrap_or(0)
            .max(9);
        let _ = writeln!(out, "Terraform phases of {}:", m.source.display());
        for p in &phases {
            let what = match &p.plan {
                PhasePlan::NoModules => "no modules".to_string(),
                PhasePlan::Pending { waits_on } => format!(
                    "pending: its inputs wait on {} (not applied, or changing)",
                    waits_on.join(", ")
                ),
                PhasePlan::Planned { changes } if changes.any() || !changes.drift.is_empty() => {
                    changes.short()
                }
                PhasePlan::Planned { .. } => "no changes".to_string(),
            };
            let _ = writeln!(
                out,
                "  {:<18} {:<width$}  {what}",
                p.phase.id(),
                p.workspace
            );
        }
        let _ = writeln!(
            out,
            "NixOS phases: not checked (the NixOS executor is not available yet)."
        );
        let _ = writeln!(
            out,
            "{}",
            if pending {
                "Changes pending."
            } else {
                "No changes."
            }
        );
        common::emit(&out)?;
    }
    Ok(if pending {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
