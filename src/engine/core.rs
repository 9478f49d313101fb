//! The core's hosts in a run: each deployed one at a time behind its gate,
//! once more after `tf:auth-core` when what it made reached them, and each
//! verified end to end. Any failure here halts the run.

use super::event::StepStatus;
use super::run::{Ctx, Summary};
use crate::manifest::Service;
use crate::plan::Phase;
use std::time::Instant;

/// One core host: nothing to do when it is `current` (its system, its
/// environment and healthy), else deployed behind its gate. `looked`: the
/// caller's look said it is not current (else `deploy` looks itself).
/// `Err` halts the run.
pub(super) fn core_deploy(
    ctx: &Ctx,
    summary: &mut Summary,
    s: &Service,
    system: &str,
    current: bool,
    looked: bool,
) -> Result<(), String> {
    if current {
        let now = Instant::now();
        for id in [format!("nix:core:{}", s.name), format!("health:{}", s.name)] {
            if let Some(step) = ctx.step(&id) {
                ctx.event(step, StepStatus::Started, String::new(), now);
                ctx.event(
                    step,
                    StepStatus::Unchanged,
                    if id.starts_with("nix") {
                        system.to_string()
                    } else {
                        "passed".into()
                    },
                    now,
                );
            }
        }
        if let Ok(mut sys) = ctx.systems.lock() {
            sys.insert(s.name.clone(), system.to_string());
        }
        ctx.record_inputs(s, system);
        summary.services.insert(s.name.clone(), "unchanged".into());
        return Ok(());
    }
    let Some(step) = ctx.step(&format!("nix:core:{}", s.name)) else {
        return Ok(());
    };
    let started = Instant::now();
    ctx.event(step, StepStatus::Started, String::new(), started);
    match ctx.deploy(s, system, looked) {
        Ok(c) => {
            let detail = ctx.with_guard_notes(s, system.to_string());
            ctx.event(step, StepStatus::done(c), detail, started);
            if let Some(gate) = ctx.step(&format!("health:{}", s.name)) {
                ctx.event(gate, StepStatus::Unchanged, "passed".into(), started);
            }
            summary.services.insert(
                s.name.clone(),
                if c { "deployed" } else { "unchanged" }.into(),
            );
            Ok(())
        }
        Err(e) => {
            let e = ctx.with_guard_notes(s, e);
            ctx.event(step, StepStatus::Failed, e.clone(), started);
            summary
                .services
                .insert(s.name.clone(), format!("failed: {e}"));
            Err(format!("nix:core:{}: {e}", s.name))
        }
    }
}

/// A core host's second round, after `tf:auth-core`: deployed again behind
/// its health gate when its inputs (its system, rebuilt if outputs changed,
/// and its env file, now with auth-core's outputs) differ from what it was
/// left with in this run; otherwise reported unchanged without asking it.
pub(super) fn core_again(ctx: &Ctx, summary: &mut Summary, s: &Service) -> Result<(), String> {
    let id = format!("nix:core:{}:again", s.name);
    let Some(step) = ctx.step(&id) else {
        return Ok(());
    };
    let gate = ctx.step(&format!("health:{}:again", s.name));
    if !ctx.runs(Phase::NixCore) {
        ctx.not_selected(step);
        if let Some(g) = gate {
            ctx.not_selected(g);
        }
        return Ok(());
    }
    let started = Instant::now();
    ctx.event(step, StepStatus::Started, String::new(), started);
    let failed = |e: String| {
        ctx.event(step, StepStatus::Failed, e.clone(), started);
        Err(format!("{id}: {e}"))
    };
    let system = match ctx.build_one(s) {
        Ok(p) => p,
        Err(e) => return failed(e),
    };
    let before = ctx
        .deployed
        .lock()
        .ok()
        .and_then(|d| d.get(&s.name).cloned());
    if before.is_some_and(|b| b == (system.clone(), ctx.inputs_hash(s))) {
        ctx.event(
            step,
            StepStatus::Unchanged,
            "inputs unchanged since its deploy".into(),
            started,
        );
        if let Some(g) = gate {
            ctx.event(
                g,
                StepStatus::Unchanged,
                "not deployed again".into(),
                started,
            );
        }
        return Ok(());
    }
    match ctx.deploy(s, &system, false) {
        Ok(changed) => {
            ctx.event(step, StepStatus::done(changed), system.clone(), started);
            if let Some(g) = gate {
                ctx.event(g, StepStatus::done(false), "passed".into(), started);
            }
            if changed {
                summary
                    .services
                    .insert(s.name.clone(), "deployed again after tf:auth-core".into());
            }
            Ok(())
        }
        Err(e) => {
            summary
                .services
                .insert(s.name.clone(), format!("failed: {e}"));
            failed(e)
        }
    }
}

/// A core service's end-to-end checks; a failure halts the run.
pub(super) fn core_verify(ctx: &Ctx, s: &Service) -> Result<(), String> {
    let Some(step) = ctx.step(&format!("verify:{}", s.name)) else {
        return Ok(());
    };
    if !ctx.runs(Phase::Verify) {
        ctx.not_selected(step);
        return Ok(());
    }
    let started = Instant::now();
    ctx.event(step, StepStatus::Started, String::new(), started);
    match ctx.verify(s) {
        Ok(detail) => {
            ctx.event(step, StepStatus::Unchanged, detail, started);
            Ok(())
        }
        Err(e) => {
            ctx.event(step, StepStatus::Failed, e.clone(), started);
            Err(format!("verify:{}: {e}", s.name))
        }
    }
}
