//! `nixmox destroy` (reverse order, confirmed) and `nixmox rollback <svc>`.

use super::common::{self, CliError};
use super::{Cli, DestroyArgs, RollbackArgs};
use crate::engine::record;
use crate::nixos::{deploy, targets};
use crate::plan::{self, Phase};
use crate::terraform::{phases, stack};
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

pub fn run(cli: &Cli, args: &DestroyArgs) -> Result<ExitCode, CliError> {
    let v = common::load(cli)?;
    let m = &v.manifest;
    let full = plan::build(m, &[])?;
    if !args.only.is_empty() {
        crate::graph::select(m, &args.only)?;
    }
    // Dependents first: the reverse of the plan, services' config before their infra.
    let steps: Vec<_> = phases::steps(m, &full)
        .into_iter()
        .rev()
        .filter(|s| !s.config.is_empty())
        .filter(|s| {
            args.only.is_empty() || s.service.as_ref().is_some_and(|n| args.only.contains(n))
        })
        .collect();
    if steps.is_empty() {
        common::emit("Nothing to destroy: no Terraform workspace with modules is selected.\n")?;
        return Ok(ExitCode::SUCCESS);
    }
    let list: Vec<String> = steps.iter().map(|s| s.workspace.clone()).collect();
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::Message(format!(
                "destroy would remove everything in the workspaces {}; it needs --yes when not run from a terminal",
                list.join(", ")
            )));
        }
        eprint!("This destroys every resource of the workspaces {} (in that order), stateful ones included.\nType 'destroy' to go on: ", list.join(", "));
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if answer.trim() != "destroy" {
            return Err(CliError::Message(
                "destroy cancelled: nothing was changed".into(),
            ));
        }
    }
    let store = std::sync::Mutex::new(common::open_store(cli, m)?);
    let (run, _) = record::start(&store, "destroy", Duration::from_secs(args.lock_timeout))
        .map_err(CliError::Message)?;
    let tf = stack::terraform_for(m).map_err(CliError::Message)?;
    let base = m.dir();
    let known = stack::outputs_all(m, &full, &tf).map_err(|e| CliError::Message(e.to_string()))?;
    let mut failed = None;
    for step in &steps {
        let spec = step.spec(m, &base, &known);
        let result = tf.destroy_phase(&spec);
        let (status, detail) = match &result {
            Ok(c) => ("changed", format!("{} destroyed", c.destroy)),
            Err(e) => ("failed", e.to_string()),
        };
        if let Ok(mut s) = store.lock() {
            let _ = s.journal(run, &format!("destroy:{}", step.workspace), status, &detail);
        }
        common::emit(&format!(
            "{:<18} {:<20} {}\n",
            step.phase.id(),
            step.workspace,
            detail.lines().next().unwrap_or_default()
        ))?;
        if result.is_err() {
            failed = Some(detail);
            break;
        }
    }
    if let Ok(mut s) = store.lock() {
        let _ = s.finish_run(run, if failed.is_some() { "failed" } else { "ok" });
        let _ = s.release_lock();
    }
    match failed {
        Some(e) => Err(CliError::Message(e)),
        None => Ok(ExitCode::SUCCESS),
    }
}

pub fn rollback(cli: &Cli, args: &RollbackArgs) -> Result<ExitCode, CliError> {
    let v = common::load(cli)?;
    let m = &v.manifest;
    let Some(s) = m.service(&args.service).filter(|s| s.enabled) else {
        return Err(CliError::Message(format!(
            "rollback: no enabled service named {}",
            args.service
        )));
    };
    let store = std::sync::Mutex::new(common::open_store(cli, m)?);
    let (run, _) = record::start(&store, "rollback", Duration::ZERO).map_err(CliError::Message)?;
    let control = crate::nixos::ssh::control_dir();
    let target = targets::target(m, s, control.clone()).map_err(CliError::Message)?;
    let result = deploy::roll_back_by_hand(
        &target,
        &s.health,
        &s.ports,
        Duration::from_secs(m.nixos.activation_timeout),
    );
    let _ = std::fs::remove_dir_all(&control);
    if let Ok(mut st) = store.lock() {
        let (status, detail) = match &result {
            Ok(p) => ("changed", p.clone()),
            Err(e) => ("failed", e.to_string()),
        };
        let _ = st.journal(
            run,
            &format!("{}:{}", Phase::NixServiceConfig.id(), s.name),
            status,
            &detail,
        );
        let _ = st.finish_run(run, if result.is_ok() { "ok" } else { "failed" });
        let _ = st.release_lock();
    }
    let path = result.map_err(|e| CliError::Message(e.to_string()))?;
    common::emit(&format!(
        "{}: back on the previous generation {path}, and healthy\n",
        s.name
    ))?;
    Ok(ExitCode::SUCCESS)
}
