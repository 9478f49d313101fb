//! `/metrics` in Prometheus' text format, for the Prometheus the stack
//! itself runs: runs and their outcomes, the last finished run's step
//! durations, each service's liveness and drift (as of the last status),
//! and the run lock.

use super::app::App;
use super::auth::may_read;
use super::error::ApiResult;
use super::read::split_step;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

/// A label value, escaped as the format asks.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Response> {
    may_read(&app, &headers)?;
    let (runs, last_steps, lock) = app
        .store(|s| {
            let runs = s.runs(crate::state::MAX_RUNS)?;
            let last = runs.iter().find(|r| r.status != "running").map(|r| r.id);
            let steps = match last {
                Some(id) => s.journal_of(id)?,
                None => Vec::new(),
            };
            Ok((runs, steps, s.lock_holder()?))
        })
        .await?;
    let mut out = String::new();
    let mut counts: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for r in &runs {
        *counts.entry((&r.command, &r.status)).or_default() += 1;
    }
    let _ = writeln!(out, "# HELP nixmox_runs_total Runs recorded in the state store (the last {}), by command and outcome.", crate::state::MAX_RUNS);
    let _ = writeln!(out, "# TYPE nixmox_runs_total counter");
    for ((command, status), n) in &counts {
        let _ = writeln!(
            out,
            "nixmox_runs_total{{command=\"{}\",status=\"{}\"}} {n}",
            label(command),
            label(status)
        );
    }
    let running = runs.iter().filter(|r| r.status == "running").count();
    let _ = writeln!(out, "# HELP nixmox_run_running Runs under way.\n# TYPE nixmox_run_running gauge\nnixmox_run_running {running}");
    if let Some(r) = runs.first() {
        let _ = writeln!(out, "# HELP nixmox_last_run_timestamp_seconds When the newest run started.\n# TYPE nixmox_last_run_timestamp_seconds gauge\nnixmox_last_run_timestamp_seconds {}", r.started);
    }
    let _ = writeln!(out, "# HELP nixmox_step_duration_seconds Each step of the last finished run.\n# TYPE nixmox_step_duration_seconds gauge");
    for s in super::read::steps_of(&last_steps) {
        if let (Some(step), Some(secs)) = (s["step"].as_str(), s["seconds"].as_f64()) {
            let (phase, _) = split_step(step);
            let _ = writeln!(
                out,
                "nixmox_step_duration_seconds{{step=\"{}\",phase=\"{}\"}} {secs}",
                label(step),
                label(&phase)
            );
        }
    }
    let status = app.status.lock().map(|c| c.clone()).unwrap_or_default();
    if let Some(services) = status.value.as_ref().and_then(|v| v["services"].as_array()) {
        let _ = writeln!(out, "# HELP nixmox_service_up Whether the service answered its liveness probe at the last status.\n# TYPE nixmox_service_up gauge");
        for s in services {
            let name = label(s["service"].as_str().unwrap_or_default());
            let _ = writeln!(
                out,
                "nixmox_service_up{{service=\"{name}\"}} {}",
                u8::from(s["live"] == true)
            );
        }
        let _ = writeln!(out, "# HELP nixmox_service_drifted Whether the host no longer runs the service's last good system.\n# TYPE nixmox_service_drifted gauge");
        for s in services {
            let name = label(s["service"].as_str().unwrap_or_default());
            let _ = writeln!(
                out,
                "nixmox_service_drifted{{service=\"{name}\"}} {}",
                u8::from(s["drifted"] == true)
            );
        }
    }
    if let Some(at) = status.at {
        let _ = writeln!(out, "# HELP nixmox_status_timestamp_seconds When the service figures were taken.\n# TYPE nixmox_status_timestamp_seconds gauge\nnixmox_status_timestamp_seconds {at}");
    }
    let _ = writeln!(out, "# HELP nixmox_lock_held Whether a run holds the stack's lock.\n# TYPE nixmox_lock_held gauge\nnixmox_lock_held {}", u8::from(lock.is_some()));
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
