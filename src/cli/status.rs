//! `nixmox status`: the last run step by step, each service's liveness and
//! whether its host still runs the last good system, and Terraform drift.
//! Exit 0 all good, 2 drift or degraded, 1 failure.

use super::common::{self, CliError};
use super::{Cli, StatusArgs};
use crate::manifest::{Health, Service};
use crate::nixos::ssh::SshTarget;
use crate::nixos::targets;
use crate::nixos::{health, ssh};
use crate::plan;
use crate::terraform::stack::{self, PhasePlan};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Serialize)]
struct ServiceStatus {
    service: String,
    live: bool,
    liveness: String,
    system: Option<String>,
    last_good: Option<String>,
    drifted: bool,
    /// The host's records of rolling itself back that no apply reported yet.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rolled_back: Vec<String>,
}

pub fn run(cli: &Cli, args: &StatusArgs) -> Result<ExitCode, CliError> {
    let v = common::load(cli)?;
    let m = &v.manifest;
    let mut store = common::open_store(cli, m)?;
    let err = |e: crate::state::StateError| CliError::Message(e.to_string());
    let last = store.last_run().map_err(err)?;
    let journal = match &last {
        Some(r) => store.journal_of(r.id).map_err(err)?,
        None => Vec::new(),
    };
    let mut order: Vec<String> = Vec::new();
    let mut fin: BTreeMap<String, (String, String)> = BTreeMap::new();
    for e in &journal {
        if !fin.contains_key(&e.step) {
            order.push(e.step.clone());
        }
        fin.insert(e.step.clone(), (e.status.clone(), e.detail.clone()));
    }

    // Liveness and the running system, one quick look per host, hosts side
    // by side; the Terraform drift plans at the same time.
    let p = plan::build(m, &args.only)?;
    let control = crate::nixos::ssh_control::Control::for_run(m).map_err(CliError::Message)?;
    let mut chosen = Vec::new();
    for name in p.core.iter().chain(p.waves.iter().flatten()) {
        let Some(s) = m.service(name) else { continue };
        let last_good = store.last_good(name).map_err(err)?.map(|l| l.system);
        let t = targets::target(m, s, &control).map_err(CliError::Message)?;
        chosen.push((s, t, last_good));
    }
    let tf = stack::terraform_for(m).map_err(CliError::Message)?;
    // Terraform drift is the whole stack's, whatever --on selected.
    let whole = if args.only.is_empty() {
        None
    } else {
        Some(plan::build(m, &[])?)
    };
    let (services, phases) = std::thread::scope(|scope| {
        let looks = scope.spawn(|| {
            crate::bounded::map(
                &chosen,
                crate::bounded::HOSTS_AT_ONCE,
                |(s, t, last_good)| look(s, t, last_good.clone()),
            )
        });
        // What changed outside Terraform, from refresh-only plans (what
        // the manifest would change is `plan`'s to say).
        let phases = stack::plan_all_in(
            m,
            whole.as_ref().unwrap_or(&p),
            &tf,
            crate::terraform::command::PlanMode::RefreshOnly,
        );
        (looks.join(), phases)
    });
    control.end();
    let services = services.map_err(|_| {
        CliError::Message("status: looking at the hosts stopped with an internal error; nothing was changed, run it again".into())
    })?;
    let phases = phases.map_err(|e| CliError::Message(e.to_string()))?;
    let tf_drift: Vec<(String, String)> = phases
        .iter()
        .filter_map(|ph| match &ph.plan {
            PhasePlan::Planned { changes } if !changes.drift.is_empty() => Some((
                ph.workspace.clone(),
                format!("drift: {}", changes.drift.join("; ")),
            )),
            PhasePlan::Pending { .. } | PhasePlan::Replan { .. } => {
                Some((ph.workspace.clone(), ph.describe()))
            }
            _ => None,
        })
        .collect();

    let degraded = services
        .iter()
        .any(|s| !s.live || s.drifted || !s.rolled_back.is_empty())
        || !tf_drift.is_empty();
    if args.json {
        let steps: Vec<_> = order
            .iter()
            .map(|s| serde_json::json!({"step": s, "status": fin[s].0, "detail": fin[s].1}))
            .collect();
        let tf: BTreeMap<_, _> = tf_drift.iter().cloned().collect();
        common::emit(&common::to_json(&serde_json::json!({
            "ok": !degraded, "run": last, "steps": steps, "services": services, "terraform_drift": tf, "store": store.name()
        }))?)?;
    } else {
        let mut out = String::new();
        match &last {
            Some(r) => {
                let took = r
                    .finished
                    .map(|f| format!(", took {:.1} s", f - r.started))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "Last run: #{} `nixmox {}` {}{took} (pid {} on {}; store {})",
                    r.id,
                    r.command,
                    r.status,
                    r.pid,
                    r.host,
                    store.name()
                );
                for step in order.iter().filter(|s| fin[*s].0 == "failed") {
                    let _ = writeln!(
                        out,
                        "  failed: {step}: {}",
                        fin[step].1.lines().next().unwrap_or_default()
                    );
                }
            }
            None => {
                let _ = writeln!(out, "No run recorded yet for this stack.");
            }
        }
        let _ = writeln!(
            out,
            "\n{:<12} {:<6} {:<10} LIVENESS",
            "SERVICE", "LIVE", "SYSTEM"
        );
        for s in &services {
            let sys = match (&s.system, &s.last_good) {
                (None, _) => "none",
                (Some(_), None) => "unknown",
                (Some(_), Some(_)) if s.drifted => "drifted",
                _ => "last good",
            };
            let _ = writeln!(
                out,
                "{:<12} {:<6} {:<10} {}",
                s.service,
                if s.live { "yes" } else { "NO" },
                sys,
                s.liveness.lines().next().unwrap_or_default()
            );
        }
        for s in &services {
            for r in &s.rolled_back {
                let _ = writeln!(
                    out,
                    "host of {} {r}; the next apply reports it and deploys again",
                    s.service
                );
            }
        }
        for (ws, what) in &tf_drift {
            let _ = writeln!(out, "terraform {ws}: {what}");
        }
        let _ = writeln!(
            out,
            "{}",
            if degraded {
                "Degraded or drifted."
            } else {
                "All live, no drift."
            }
        );
        common::emit(&out)?;
    }
    Ok(if degraded {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// One host: its liveness probe (or SSH and its ports), and in one SSH
/// command the system it runs and what its guard did.
fn look(s: &Service, t: &SshTarget, last_good: Option<String>) -> ServiceStatus {
    let probe = s
        .health
        .liveness
        .clone()
        .or_else(|| s.health.readiness.clone());
    let quick = Health {
        retries: 1,
        timeout: s.health.timeout.min(10),
        interval: 1,
        ..s.health.clone()
    };
    let live = match &probe {
        Some(p) => health::wait("liveness", p, &quick, t)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        None => health::gate(
            &Health {
                startup: None,
                readiness: None,
                ..quick.clone()
            },
            &s.ports,
            t,
        )
        .map_err(|e| e.to_string()),
    };
    // The running system and what its guard did, in one look (no probes).
    let seen = ssh::run(
        t,
        &crate::nixos::glance::script(&[], 1),
        None,
        Duration::from_secs(10),
    )
    .ok()
    .and_then(|o| crate::nixos::glance::parse(&o.stdout, 0));
    let system = seen
        .as_ref()
        .map(|g| g.current.clone())
        .filter(|s| !s.is_empty());
    let rolled_back: Vec<String> = seen
        .map(|g| g.records.iter().map(|r| r.describe()).collect())
        .unwrap_or_default();
    let drifted = matches!((&system, &last_good), (Some(a), Some(b)) if a != b);
    ServiceStatus {
        service: s.name.clone(),
        live: live.is_ok(),
        liveness: match (&live, &probe) {
            (Ok(()), Some(p)) => format!("ok ({})", health::describe(p)),
            (Ok(()), None) => "ok (ssh and ports)".into(),
            (Err(e), _) => e.clone(),
        },
        system,
        last_good,
        drifted,
        rolled_back,
    }
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
