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
    // The selected services themselves: destroying one never takes what it depends on.
    let only = crate::graph::resolve(m, "--on", &args.only)?;
    // Dependents first: the reverse of the plan, services' config before their infra.
    let steps: Vec<_> = phases::steps(m, &full)
        .into_iter()
        .rev()
        .filter(|s| !s.config.is_empty())
        .filter(|s| args.only.is_empty() || s.service.as_ref().is_some_and(|n| only.contains(n)))
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
    // The hosts of the destroyed workspaces are gone or going: their kept
    // connections would only stall the next run.
    crate::nixos::targets::close_kept(
        m,
        m.enabled()
            .filter(|s| args.only.is_empty() || only.contains(&s.name)),
    );
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
    let names = match &args.service {
        Some(name) => {
            crate::graph::named(m, "rollback", name)?;
            vec![name.clone()]
        }
        None => crate::graph::resolve(m, "--on", &args.on)?,
    };
    let store = std::sync::Mutex::new(common::open_store(cli, m)?);
    let (run, _) = record::start(&store, "rollback", Duration::ZERO).map_err(CliError::Message)?;
    let control = crate::nixos::ssh_control::Control::for_run(m).map_err(CliError::Message)?;
    // One host after another: a rollback is a repair, watched host by host.
    let mut failed = Vec::new();
    for name in &names {
        let Some(s) = m.service(name) else { continue };
        let result = targets::target(m, s, &control)
            .map_err(|e| e.to_string())
            .and_then(|target| {
                deploy::roll_back_by_hand(
                    &target,
                    &s.health,
                    &s.ports,
                    Duration::from_secs(m.nixos.activation_timeout),
                )
                .map_err(|e| e.to_string())
            });
        if let Ok(mut st) = store.lock() {
            let (status, detail) = match &result {
                Ok(p) => ("changed", p.clone()),
                Err(e) => ("failed", e.clone()),
            };
            let _ = st.journal(
                run,
                &format!("{}:{}", Phase::NixServiceConfig.id(), s.name),
                status,
                &detail,
            );
        }
        match result {
            Ok(path) => common::emit(&format!(
                "{}: back on the previous generation {path}, and healthy\n",
                s.name
            ))?,
            Err(e) => {
                common::print_error(&CliError::Message(format!("rollback of {}: {e}", s.name)));
                failed.push(s.name.clone());
            }
        }
    }
    control.end();
    if let Ok(mut st) = store.lock() {
        let _ = st.finish_run(run, if failed.is_empty() { "ok" } else { "failed" });
        let _ = st.release_lock();
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(CliError::Message(format!(
            "rollback failed on {} of {} host(s): {}",
            failed.len(),
            names.len(),
            failed.join(", ")
        )))
    }
}
