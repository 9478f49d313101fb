//! `nixmox plan`: the deployment plan; online (the default), everything
//! `apply` would do — Terraform changes and what is downstream of them, each
//! host's system and closure, env files and age keys by hash, migrations —
//! with exit status 2 when anything would change.

use super::common::{self, CliError};
use super::{Cli, PlanArgs};
use crate::engine::preview;
use crate::plan;
use std::process::ExitCode;

/// The version of the online `plan --json` shape (see docs/plan-json.md).
pub const ONLINE_PLAN_JSON_VERSION: u32 = 2;

pub fn run(cli: &Cli, args: &PlanArgs) -> Result<ExitCode, CliError> {
    let v = common::load(cli)?;
    let m = &v.manifest;
    let plan = plan::build_selected(m, &args.select.selection())?;
    if args.offline {
        let text = if args.json {
            common::to_json(&plan::render::json(m, &plan))?
        } else {
            plan::render::human(m, &plan)
        };
        common::emit(&text)?;
        return Ok(ExitCode::SUCCESS);
    }
    let p = preview::preview(m, &plan, !args.terraform_only).map_err(CliError::Message)?;
    let changes = p.changes();
    if args.json {
        #[derive(serde::Serialize)]
        struct Online<'a> {
            version: u32,
            manifest: String,
            /// `full`, or `terraform-only` (no host was contacted).
            scope: &'static str,
            changes: bool,
            /// What `--on` selected, and how the applications would roll out.
            #[serde(skip_serializing_if = "Option::is_none")]
            selection: Option<&'a plan::Chosen>,
            #[serde(skip_serializing_if = "Option::is_none")]
            rolling: Option<&'a plan::Rolling>,
            #[serde(flatten)]
            preview: &'a preview::Preview,
        }
        common::emit(&common::to_json(&Online {
            version: ONLINE_PLAN_JSON_VERSION,
            manifest: m.source.display().to_string(),
            scope: if args.terraform_only {
                "terraform-only"
            } else {
                "full"
            },
            changes,
            selection: plan.selection.as_ref(),
            rolling: plan.rolling.as_ref(),
            preview: &p,
        })?)?;
    } else {
        let mut text = crate::report::preview::human(&p, &m.source.display().to_string(), false);
        if args.terraform_only {
            text.push_str("(Terraform only: no host was contacted.)\n");
        }
        if let Some(c) = &plan.selection {
            text.push_str(&format!(
                "Selected (--on {}): {}; with what they need: {}\n",
                c.selectors.join(","),
                c.chosen.join(", "),
                if c.pulled_in.is_empty() {
                    "nothing more".to_string()
                } else {
                    c.pulled_in.join(", ")
                }
            ));
        }
        if let Some(r) = &plan.rolling {
            text.push_str(&format!("Rolling: {}\n", r.describe()));
        }
        common::emit(&text)?;
    }
    Ok(if changes {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
