//! `nixmox apply`: today, the Terraform phases of the plan (`--terraform-only`).

use super::common::{self, CliError};
use super::{ApplyArgs, Cli};
use crate::plan;
use crate::terraform::stack;
use crate::terraform::Status;
use std::process::ExitCode;

pub fn run(cli: &Cli, args: &ApplyArgs) -> Result<ExitCode, CliError> {
    if !args.terraform_only {
        return Err(CliError::Message(
            "apply: the NixOS, health and verify executors are not available in this version, so a full apply \
             cannot run; `nixmox apply --terraform-only` runs the Terraform phases in plan order"
                .into(),
        ));
    }
    let v = common::load(cli)?;
    let m = &v.manifest;
    let plan = plan::build(m, &args.only)?;
    let tf = stack::terraform_for(m).map_err(CliError::Message)?;
    let json = args.json;
    let result = stack::apply_all(m, &plan, &tf, |step, r| {
        let (status, detail) = match &r.status {
            Status::NoModules => ("skipped", "no modules".to_string()),
            Status::Unchanged => ("unchanged", "no changes".to_string()),
            Status::Applied { outputs_only: true } => (
                "applied",
                format!("outputs only: {}", r.changes.outputs.join(", ")),
            ),
            Status::Applied { .. } => ("applied", r.changes.short()),
        };
        let line = if json {
            serde_json::json!({
                "event": "phase",
                "step": step.step_id,
                "phase": step.phase.id(),
                "workspace": step.workspace,
                "status": status,
                "changes": r.changes,
                "targets_applied": r.targets_applied,
                "outputs": r.outputs.redacted(),
            })
            .to_string()
        } else {
            format!(
                "{:<18} {:<20} {status}: {detail}",
                step.phase.id(),
                step.workspace
            )
        };
        let _ = common::emit(&format!("{line}\n"));
        for note in &r.notes {
            eprintln!("note: {note}");
        }
    });
    match result {
        Ok(known) => {
            let applied = known.len();
            if json {
                common::emit(&format!(
                    "{}\n",
                    serde_json::json!({"event": "done", "status": "ok", "workspaces": applied})
                ))?;
            } else {
                common::emit(&format!(
                    "Terraform phases done ({applied} workspace(s) with modules); non-sensitive outputs in {}\n",
                    stack::state_dir(m).join("outputs.json").display()
                ))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if json {
                common::emit(&format!(
                    "{}\n",
                    serde_json::json!({"event": "done", "status": "failed", "error": e.to_string()})
                ))?;
            }
            Err(CliError::Message(e.to_string()))
        }
    }
}
