//! A run with its record: the run lock, the journal written before and after
//! every step, interrupted runs found and reported, and afterwards each
//! service's last good system and the outputs (sensitive ones by name only).

use super::event::{Event, StepStatus};
use super::run::{ApplyOptions, Summary};
use crate::manifest::Manifest;
use crate::plan::Plan;
use crate::state::{Holder, StateError, Store, StoredOutput};
use std::sync::Mutex;
use std::time::Duration;

/// Holds the lock for as long as it lives, and gives it back however the run ends.
struct LockGuard<'a>(&'a Mutex<Box<dyn Store>>);

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.lock() {
            let _ = s.release_lock();
        }
    }
}

/// What a run found before it started.
#[derive(Debug, Clone)]
pub struct Resumed {
    pub run: i64,
    /// The last step it had started and not finished, if any.
    pub in_flight: Option<String>,
}

fn store_err(e: StateError) -> String {
    e.to_string()
}

/// Takes the lock (waiting up to `lock_wait`), marks runs of processes that
/// are gone as interrupted, and returns them for the caller to report.
pub fn start(
    store: &Mutex<Box<dyn Store>>,
    command: &str,
    lock_wait: Duration,
) -> Result<(i64, Vec<Resumed>), String> {
    let mut s = store
        .lock()
        .map_err(|_| "the state store is unusable (a thread panicked)".to_string())?;
    s.acquire_lock(&Holder::me(command), lock_wait)
        .map_err(store_err)?;
    let mut resumed = Vec::new();
    for run in s.interrupted_runs().map_err(store_err)? {
        let journal = s.journal_of(run.id).map_err(store_err)?;
        // The last step that started and has no later entry of its own.
        let in_flight = journal.iter().rev().find_map(|e| {
            let later = journal
                .iter()
                .filter(|x| x.step == e.step && x.at >= e.at)
                .count();
            (e.status == "started" && later == 1).then(|| e.step.clone())
        });
        s.mark_run(run.id, "interrupted").map_err(store_err)?;
        resumed.push(Resumed {
            run: run.id,
            in_flight,
        });
    }
    let id = s.begin_run(command).map_err(store_err)?;
    Ok((id, resumed))
}

/// Runs the engine with everything recorded in `store`. `emit` still sees every event.
///
/// Every event is also kept in `<runs_dir>/<run>/events.jsonl`, the summary
/// in `summary.json` and the tools' own output in `terraform.log` and
/// `ssh.log` beside them (none ever holds a secret value).
pub fn apply(
    m: &Manifest,
    plan: &Plan,
    opts: &ApplyOptions,
    store: &Mutex<Box<dyn Store>>,
    run: i64,
    runs_dir: &std::path::Path,
    emit: &(dyn Fn(Event) + Sync),
) -> Result<Summary, String> {
    let _lock = LockGuard(store);
    // Each workspace's last good configuration, kept as a last_good entry
    // named `workspace:<name>`, and each host's last good system.
    let mut opts_with_history = opts.clone();
    if let Ok(mut s) = store.lock() {
        for step in crate::terraform::phases::steps(m, plan) {
            if let Ok(Some(lg)) = s.last_good(&format!("workspace:{}", step.workspace)) {
                opts_with_history
                    .last_good_tf
                    .insert(step.workspace.clone(), lg.inputs);
            }
        }
        for svc in m.enabled() {
            if let Ok(Some(lg)) = s.last_good(&svc.name) {
                opts_with_history
                    .last_good_systems
                    .insert(svc.name.clone(), lg.system);
            }
        }
    }
    let opts = &opts_with_history;
    let dir = runs_dir.join(run.to_string());
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create the run log {}: {e}", dir.display()))?;
    let log = Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("events.jsonl"))
            .map_err(|e| format!("cannot write the run log in {}: {e}", dir.display()))?,
    );
    let journal_failed = Mutex::new(None::<String>);
    let recorded = |e: Event| {
        if let Ok(mut s) = store.lock() {
            let status = serde_json::to_value(e.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            if let Err(err) = s.journal(run, &e.step, &status, &e.detail) {
                if let Ok(mut f) = journal_failed.lock() {
                    f.get_or_insert(err.to_string());
                }
            }
            if e.phase == "health" || e.phase == "verify" {
                if let Some(service) = &e.service {
                    if e.status != StepStatus::Started {
                        let _ = s.record_health(
                            run,
                            service,
                            &e.phase,
                            e.status != StepStatus::Failed && e.status != StepStatus::Skipped,
                            &e.detail,
                        );
                    }
                }
            }
        }
        if let (Ok(mut f), Ok(line)) = (log.lock(), serde_json::to_string(&e)) {
            use std::io::Write;
            let _ = writeln!(f, "{line}");
        }
        emit(e);
    };
    crate::report::runlog::start(dir.clone());
    let result = super::run::apply(m, plan, opts, &recorded);
    crate::report::runlog::stop();
    if let Ok(summary) = &result {
        if let Ok(text) = serde_json::to_string_pretty(summary) {
            let _ = std::fs::write(dir.join("summary.json"), text);
        }
    }
    let mut s = store
        .lock()
        .map_err(|_| "the state store is unusable".to_string())?;
    match &result {
        Ok(summary) => {
            for (ws, snapshot) in &summary.tf_good {
                s.set_last_good(&format!("workspace:{ws}"), "", snapshot)
                    .map_err(store_err)?;
            }
            for (service, system) in &summary.systems {
                if summary
                    .services
                    .get(service)
                    .is_some_and(|v| !v.starts_with("failed"))
                {
                    s.set_last_good(service, system, "").map_err(store_err)?;
                }
            }
            for (ws, outputs) in &summary.outputs {
                for (name, o) in &outputs.0 {
                    let value = (!o.sensitive).then(|| o.value.to_string());
                    s.record_output(
                        run,
                        &StoredOutput {
                            workspace: ws.clone(),
                            name: name.clone(),
                            sensitive: o.sensitive,
                            value,
                        },
                    )
                    .map_err(store_err)?;
                }
            }
            s.finish_run(run, if summary.ok { "ok" } else { "failed" })
                .map_err(store_err)?;
        }
        Err(_) => s.finish_run(run, "failed").map_err(store_err)?,
    }
    if let Some(e) = journal_failed.lock().ok().and_then(|f| f.clone()) {
        return Err(format!(
            "the run finished but its journal could not be written: {e}"
        ));
    }
    result
}
