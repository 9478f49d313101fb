//! `nixmox apply`: the whole plan through the engine, or with
//! `--terraform-only` just its Terraform phases.

use super::common::{self, CliError};
use super::{ApplyArgs, Cli};
use crate::plan;
use crate::terraform::stack;
use crate::terraform::Status;
use std::io::IsTerminal;
use std::process::ExitCode;

pub fn run(cli: &Cli, args: &ApplyArgs) -> Result<ExitCode, CliError> {
    let v = common::load(cli)?;
    let m = &v.manifest;
    let plan = plan::build_selected(m, &args.select.selection())?;
    if args.dry_run {
        common::emit(&plan::render::human(m, &plan))?;
        return Ok(ExitCode::SUCCESS);
    }
    if !args.terraform_only {
        return full(cli, m, &plan, args);
    }
    let tf = stack::terraform_for(m).map_err(CliError::Message)?;
    let json = args.json;
    // The Terraform phases alone take the stack's lock too, and are recorded as a run.
    let store = std::sync::Mutex::new(common::open_store(cli, m)?);
    let (run, _) = crate::engine::record::start(
        &store,
        "apply --terraform-only",
        std::time::Duration::from_secs(args.lock_timeout),
    )
    .map_err(CliError::Message)?;
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
    if let Ok(mut st) = store.lock() {
        let _ = st.finish_run(run, if result.is_ok() { "ok" } else { "failed" });
        let _ = st.release_lock();
    }
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
                    m.work_dir().join("outputs.json").display()
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

/// The whole plan through the engine.
fn full(
    cli: &Cli,
    m: &crate::manifest::Manifest,
    plan: &plan::Plan,
    args: &ApplyArgs,
) -> Result<ExitCode, CliError> {
    use crate::engine::{self, ApplyOptions};
    use crate::nixos::deploy::Goal;
    let goal = Goal::parse(&args.goal).unwrap_or(Goal::Switch);
    let json = args.json;
    if !args.yes
        && !json
        && std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal()
        && !confirm(m, plan)?
    {
        return Err(CliError::Message(
            "apply cancelled: nothing was changed".into(),
        ));
    }
    let view = crate::report::progress::View::choose(json);
    let emit = |e: engine::Event| view.event(&e);
    let store = std::sync::Mutex::new(common::open_store(cli, m)?);
    let (run, resumed) = engine::record::start(
        &store,
        "apply",
        std::time::Duration::from_secs(args.lock_timeout),
    )
    .map_err(CliError::Message)?;
    for r in &resumed {
        let at = r
            .in_flight
            .as_deref()
            .map(|s| format!(" during {s}"))
            .unwrap_or_default();
        if json {
            common::emit(&format!(
                "{}\n",
                serde_json::json!({"event": "resume", "interrupted_run": r.run, "in_flight": r.in_flight})
            ))?;
        } else {
            eprintln!("nixmox: run {} was interrupted{at}; every step is re-checked and only what is not done yet is done", r.run);
        }
    }
    let parse = |v: &[String]| {
        v.iter()
            .filter_map(|p| crate::plan::Phase::parse(p))
            .collect::<Vec<_>>()
    };
    let opts = ApplyOptions {
        phases: parse(&args.phase),
        skip: parse(&args.skip_phase),
        force: plan.forced.iter().cloned().collect(),
        ..ApplyOptions::new(args.parallel as usize, goal)
    };
    let runs_dir = m.work_dir().join("runs");
    let summary = engine::record::apply(m, plan, &opts, &store, run, &runs_dir, &emit);
    view.finish();
    let summary = summary.map_err(CliError::Message)?;
    if json {
        common::emit(&format!(
            "{}\n",
            serde_json::json!({"event": "summary", "ok": summary.ok, "services": summary.services, "failures": summary.failures})
        ))?;
    } else {
        let mut out = String::from("\nSummary:\n");
        for (name, what) in &summary.services {
            out.push_str(&format!(
                "  {name:<16} {}\n",
                what.lines().next().unwrap_or_default()
            ));
        }
        for f in &summary.failures {
            out.push_str(&format!("\nfailure: {f}\n"));
        }
        common::emit(&out)?;
    }
    Ok(if summary.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// On a terminal: what would change — the online plan's summary, the same
/// `plan` shows — and the user's answer. Nothing to change: no question.
fn confirm(m: &crate::manifest::Manifest, plan: &plan::Plan) -> Result<bool, CliError> {
    use std::io::{BufRead, Write};
    let p = crate::engine::preview::preview(m, plan, true).map_err(CliError::Message)?;
    if !p.changes() {
        return Ok(true);
    }
    eprintln!("nixmox apply would change:");
    eprint!(
        "{}",
        crate::report::preview::human(&p, &m.source.display().to_string(), true)
    );
    eprint!("Apply these changes? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES"))
}
