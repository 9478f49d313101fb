//! `nixmox status` (the last run, step by step) and `nixmox unlock`.

use super::common::{self, CliError};
use super::{Cli, StatusArgs};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::process::ExitCode;

pub fn run(cli: &Cli, args: &StatusArgs) -> Result<ExitCode, CliError> {
    let v = common::load(cli)?;
    let mut store = common::open_store(cli, &v.manifest)?;
    let err = |e: crate::state::StateError| CliError::Message(e.to_string());
    let Some(last) = store.last_run().map_err(err)? else {
        common::emit("No run recorded yet for this stack.\n")?;
        return Ok(ExitCode::SUCCESS);
    };
    let journal = store.journal_of(last.id).map_err(err)?;
    // The final word on each step, in the order steps first appeared.
    let mut order: Vec<String> = Vec::new();
    let mut fin: BTreeMap<String, (String, String)> = BTreeMap::new();
    for e in &journal {
        if !fin.contains_key(&e.step) {
            order.push(e.step.clone());
        }
        fin.insert(e.step.clone(), (e.status.clone(), e.detail.clone()));
    }
    if args.json {
        let steps: Vec<_> = order
            .iter()
            .map(|s| serde_json::json!({"step": s, "status": fin[s].0, "detail": fin[s].1}))
            .collect();
        common::emit(&common::to_json(
            &serde_json::json!({"run": last, "steps": steps, "store": store.name()}),
        )?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    let took = last
        .finished
        .map(|f| format!(", took {:.1} s", f - last.started))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "Last run: #{} `nixmox {}` {}{took} (pid {} on {}; store {})",
        last.id,
        last.command,
        last.status,
        last.pid,
        last.host,
        store.name()
    );
    for step in &order {
        let (status, detail) = &fin[step];
        let detail = detail.lines().next().unwrap_or_default();
        let _ = writeln!(out, "  {step:<32} {status:<10} {detail}");
    }
    common::emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

pub fn unlock(cli: &Cli) -> Result<ExitCode, CliError> {
    let v = common::load(cli)?;
    let mut store = common::open_store(cli, &v.manifest)?;
    match store
        .force_unlock()
        .map_err(|e| CliError::Message(e.to_string()))?
    {
        Some(h) => common::emit(&format!("removed the lock of {}\n", h.describe()))?,
        None => common::emit("the stack was not locked\n")?,
    }
    Ok(ExitCode::SUCCESS)
}
