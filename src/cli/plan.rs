//! `nixmox plan`: the deployment plan.

use super::common::{self, CliError};
use super::{Cli, PlanArgs};
use crate::plan;
use std::process::ExitCode;

pub fn run(cli: &Cli, args: &PlanArgs) -> Result<ExitCode, CliError> {
    if !args.offline {
        return Err(CliError::Message(
            "plan: asking Terraform and the hosts what would change is not available in this version; \
             run `nixmox plan --offline` for the phase and step plan built from the manifest alone"
                .into(),
        ));
    }
    let v = common::load(cli)?;
    let plan = plan::build(&v.manifest, &args.only)?;
    let text = if args.json {
        common::to_json(&plan::render::json(&v.manifest, &plan))?
    } else {
        plan::render::human(&v.manifest, &plan)
    };
    common::emit(&text)?;
    Ok(ExitCode::SUCCESS)
}
