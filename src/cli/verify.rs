//! `nixmox verify`: the end-to-end checks, as a table or JSON.

use super::common::{self, CliError};
use super::{Cli, VerifyArgs};
use crate::plan;
use crate::terraform::stack;
use crate::verify;
use std::fmt::Write;
use std::process::ExitCode;

pub fn run(cli: &Cli, args: &VerifyArgs) -> Result<ExitCode, CliError> {
    let v = common::load(cli)?;
    let m = &v.manifest;
    let p = plan::build(m, &args.on.only)?;
    let tf = stack::terraform_for(m).map_err(CliError::Message)?;
    let outputs = stack::outputs_all(m, &p, &tf).map_err(|e| CliError::Message(e.to_string()))?;
    let ctx = verify::Context::new(m, &outputs);
    let services: Vec<String> = p
        .core
        .iter()
        .chain(p.waves.iter().flatten())
        .cloned()
        .collect();
    let checks = verify::all(m, &services, &ctx);
    let failed = checks.iter().filter(|c| c.failed()).count();
    let skipped = checks.iter().filter(|c| c.skipped).count();
    let ok = failed == 0;
    if args.json {
        common::emit(&common::to_json(
            &serde_json::json!({"ok": ok, "passed": checks.len() - failed - skipped, "failed": failed, "skipped": skipped, "checks": checks}),
        )?)?;
    } else {
        let mut out = String::new();
        for c in &checks {
            let mark = if c.ok {
                "ok  "
            } else if c.skipped {
                "SKIP"
            } else {
                "FAIL"
            };
            let _ = writeln!(
                out,
                "{mark} {:<12} {:<22} {}{}",
                c.service,
                c.check,
                c.target,
                if c.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", c.reason)
                }
            );
        }
        let _ = writeln!(
            out,
            "{} checks: {} passed, {failed} failed, {skipped} not run",
            checks.len(),
            checks.len() - failed - skipped
        );
        common::emit(&out)?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
