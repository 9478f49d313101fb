//! `nixmox outputs`: every workspace's Terraform outputs, secrets redacted
//! unless `--show-sensitive` is given.

use super::common::{self, CliError};
use super::{Cli, OutputsArgs};
use crate::plan;
use crate::terraform::outputs::REDACTED;
use crate::terraform::stack;
use serde_json::{json, Map, Value};
use std::fmt::Write;
use std::process::ExitCode;

pub fn run(cli: &Cli, args: &OutputsArgs) -> Result<ExitCode, CliError> {
    let v = common::load(cli)?;
    let m = &v.manifest;
    let plan = plan::build(m, &[])?;
    let tf = stack::terraform_for(m).map_err(CliError::Message)?;
    let all = stack::outputs_all(m, &plan, &tf).map_err(|e| CliError::Message(e.to_string()))?;
    let shown = |o: &crate::terraform::Output| -> Value {
        if o.sensitive && !args.show_sensitive {
            Value::String(REDACTED.into())
        } else {
            o.value.clone()
        }
    };
    if args.json {
        let mut workspaces = Map::new();
        for (ws, outputs) in &all {
            let entries: Map<String, Value> = outputs
                .0
                .iter()
                .map(|(k, o)| {
                    (
                        k.clone(),
                        json!({"value": shown(o), "sensitive": o.sensitive}),
                    )
                })
                .collect();
            workspaces.insert(ws.clone(), Value::Object(entries));
        }
        common::emit(&common::to_json(&json!({ "workspaces": workspaces }))?)?;
    } else if all.is_empty() {
        common::emit("No Terraform workspace has been applied yet.\n")?;
    } else {
        let mut out = String::new();
        for (ws, outputs) in &all {
            let _ = writeln!(out, "{ws}:");
            if outputs.is_empty() {
                let _ = writeln!(out, "  (no outputs)");
            }
            for (name, o) in &outputs.0 {
                let value = match shown(o) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                let _ = writeln!(out, "  {name} = {value}");
            }
        }
        common::emit(&out)?;
    }
    Ok(ExitCode::SUCCESS)
}
