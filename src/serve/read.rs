//! The reads: the stack and its graph, each service as the store and the
//! last status saw it, the last plan, the runs with their steps, and a
//! run's logs.

use super::app::App;
use super::auth::may_read;
use super::error::{ApiError, ApiResult};
use crate::plan::Phase;
use crate::state::{JournalEntry, RunInfo};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A step id's phase and service: `nix:core:dns:again` → (`nix:core`, `dns`).
pub fn split_step(step: &str) -> (String, Option<String>) {
    let mut phases: Vec<&str> = Phase::ALL.iter().map(|p| p.id()).collect();
    phases.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in phases {
        if step == p {
            return (p.to_string(), None);
        }
        if let Some(rest) = step.strip_prefix(p).and_then(|r| r.strip_prefix(':')) {
            let service = rest.strip_suffix(":again").unwrap_or(rest);
            return (p.to_string(), Some(service.to_string()));
        }
    }
    let (phase, rest) = step.split_once(':').unwrap_or((step, ""));
    (
        phase.to_string(),
        (!rest.is_empty()).then(|| rest.to_string()),
    )
}

/// A run as the API shows it, with its step counts.
pub fn run_json(r: &RunInfo, journal: &[JournalEntry]) -> Value {
    let steps: BTreeSet<&str> = journal.iter().map(|e| e.step.as_str()).collect();
    let failed = journal.iter().filter(|e| e.status == "failed").count();
    counted_json(r, steps.len() as i64, failed as i64)
}

pub fn counted_json(r: &RunInfo, steps: i64, failed: i64) -> Value {
    json!({
        "id": r.id, "command": r.command, "status": r.status, "started": r.started,
        "finished": r.finished, "pid": r.pid, "host": r.host,
        "steps": steps, "failed": failed,
    })
}

/// A step as the journal tells it so far: started, finished, last status and detail.
type StepSoFar<'j> = (Option<f64>, Option<f64>, &'j str, &'j str);

/// The steps of a journal, in the order they started, each with its times.
pub fn steps_of(journal: &[JournalEntry]) -> Vec<Value> {
    let mut order: Vec<&str> = Vec::new();
    let mut seen: BTreeMap<&str, StepSoFar> = BTreeMap::new();
    for e in journal {
        let entry = seen.entry(&e.step).or_insert_with(|| {
            order.push(&e.step);
            (None, None, "", "")
        });
        if e.status == "started" {
            entry.0.get_or_insert(e.at);
        } else {
            entry.1 = Some(e.at);
        }
        entry.2 = &e.status;
        entry.3 = &e.detail;
    }
    order
        .into_iter()
        .map(|step| {
            let (started, finished, status, detail) = seen[step];
            let (phase, service) = split_step(step);
            json!({
                "step": step, "phase": phase, "service": service, "status": status,
                "detail": detail, "started": started, "finished": finished,
                "seconds": started.zip(finished).map(|(s, f)| ((f - s).max(0.0) * 1000.0).round() / 1000.0),
            })
        })
        .collect()
}

pub async fn stack(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    may_read(&app, &headers)?;
    let lock = app.store(|s| s.lock_holder()).await?;
    let status = app.status.lock().map(|c| c.clone()).unwrap_or_default();
    let m = &app.manifest;
    let all: BTreeSet<String> = m.enabled().map(|s| s.name.clone()).collect();
    let drift: Vec<Value> = status
        .value
        .as_ref()
        .and_then(|v| v["terraform_drift"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .map(|d| json!({"workspace": d[0], "detail": d[1]}))
        .collect();
    Ok(Json(json!({
        "manifest": app.manifest_path.display().to_string(),
        "domain": m.network.domain,
        "store": app.store(|s| Ok(s.name())).await?,
        "lock": lock,
        "status_at": status.at,
        "status_refreshing": status.running,
        "status_error": status.error,
        "terraform_drift": drift,
        "graph": crate::graph::render::json(m, &all, false),
    })))
}

pub async fn services(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    may_read(&app, &headers)?;
    let names: Vec<String> = app.manifest.enabled().map(|s| s.name.clone()).collect();
    // The store's view: last good systems, latest checks, and the last few
    // runs' deploy steps (bounded: five journals however long the history).
    let (last_good, health, recent) = app
        .store(move |s| {
            let mut good = BTreeMap::new();
            for n in &names {
                if let Some(l) = s.last_good(n)? {
                    good.insert(n.clone(), l);
                }
            }
            let health = s.latest_health()?;
            let mut recent = Vec::new();
            for r in s.runs(5)? {
                let j = s.journal_of(r.id)?;
                recent.push((r, j));
            }
            Ok((good, health, recent))
        })
        .await?;
    let status = app.status.lock().map(|c| c.clone()).unwrap_or_default();
    let seen: BTreeMap<String, &Value> = status
        .value
        .as_ref()
        .and_then(|v| v["services"].as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| Some((s["service"].as_str()?.to_string(), s)))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for s in app.manifest.enabled() {
        let st = seen.get(&s.name);
        let deploy = recent.iter().find_map(|(r, j)| {
            j.iter()
                .rev()
                .find(|e| {
                    e.status != "started" && {
                        let (phase, svc) = split_step(&e.step);
                        (phase == "nix:service-config" || phase == "nix:core")
                            && svc.as_deref() == Some(s.name.as_str())
                    }
                })
                .map(|e| json!({"run": r.id, "step": e.step, "status": e.status, "at": e.at}))
        });
        let verify: Vec<Value> = health
            .iter()
            .filter(|h| h.service == s.name)
            .map(|h| json!({"check": h.check, "ok": h.ok, "detail": h.detail, "at": h.at}))
            .collect();
        let good = last_good.get(&s.name);
        out.push(json!({
            "name": s.name,
            "core": s.kind == crate::manifest::ServiceKind::Core,
            "ip": s.host.ip.map(|ip| ip.to_string()),
            "hostname": s.host.hostname,
            "depends_on": s.depends_on,
            "tags": s.tags,
            "live": st.and_then(|v| v["live"].as_bool()),
            "liveness": st.and_then(|v| v["liveness"].as_str()),
            "system": st.and_then(|v| v["system"].as_str()),
            "last_good": good.map(|l| l.system.clone()),
            "last_good_at": good.map(|l| l.at),
            "drifted": st.and_then(|v| v["drifted"].as_bool()),
            "rolled_back": st.and_then(|v| v["rolled_back"].as_array().cloned()).unwrap_or_default(),
            "last_deploy": deploy,
            "verify": verify,
        }));
    }
    Ok(Json(json!({
        "services": out,
        "status_at": status.at,
        "status_refreshing": status.running,
    })))
}

pub async fn plan(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    may_read(&app, &headers)?;
    Ok(Json(plan_json(&app)))
}

pub fn plan_json(app: &App) -> Value {
    let c = app.plan.lock().map(|c| c.clone()).unwrap_or_default();
    json!({"running": c.running, "at": c.at, "exit": c.exit, "error": c.error, "plan": c.value})
}

#[derive(Deserialize)]
pub struct RunsQuery {
    limit: Option<String>,
}

pub async fn runs(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<RunsQuery>,
) -> ApiResult<Json<Value>> {
    may_read(&app, &headers)?;
    let limit = match q.limit.as_deref() {
        None => 50,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=crate::state::MAX_RUNS).contains(n))
            .ok_or_else(|| {
                ApiError::bad(format!(
                    "limit must be a whole number from 1 to {}",
                    crate::state::MAX_RUNS
                ))
            })?,
    };
    let runs: Vec<Value> = app
        .store(move |s| s.runs_counted(limit))
        .await?
        .iter()
        .map(|(r, steps, failed)| counted_json(r, *steps, *failed))
        .collect();
    Ok(Json(json!({ "runs": runs })))
}

/// A run id from the path: a positive whole number.
pub fn run_id(text: &str) -> ApiResult<i64> {
    text.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::bad(format!(
            "{:?} is not a run id (a positive whole number)",
            text.chars().take(40).collect::<String>()
        ))
    })
}

pub async fn run(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    may_read(&app, &headers)?;
    let id = run_id(&id)?;
    let (info, journal) = app
        .store(move |s| Ok((s.run_info(id)?, s.journal_of(id)?)))
        .await?;
    let info = info.ok_or_else(|| {
        ApiError::not_found(format!("there is no run {id} in this stack's store"))
    })?;
    Ok(Json(json!({
        "run": run_json(&info, &journal),
        "steps": steps_of(&journal),
    })))
}

/// The most of a log one answer carries (its end: where a run failed).
const LOG_LIMIT: u64 = 4 << 20;

pub async fn log(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((id, kind)): Path<(String, String)>,
) -> ApiResult<Response> {
    may_read(&app, &headers)?;
    let id = run_id(&id)?;
    let file = match kind.as_str() {
        "events" => "events.jsonl",
        "terraform" => "terraform.log",
        "ssh" => "ssh.log",
        _ => return Err(ApiError::bad("the log is one of events, terraform, ssh")),
    };
    let path = app.runs_dir.join(id.to_string()).join(file);
    let text = tokio::task::spawn_blocking(move || tail(&path, LOG_LIMIT))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no {kind} log of run {id} here: logs are kept on the machine that made the run, and only for its applies"
            ))
        })?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// The last `limit` bytes of a regular file, or `None`.
fn tail(path: &std::path::Path, limit: u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = crate::files::open_regular(path, u64::MAX, "a run log").ok()?;
    let len = f.metadata().ok()?.len();
    if len > limit {
        f.seek(SeekFrom::Start(len - limit)).ok()?;
    }
    let mut bytes = Vec::new();
    f.take(limit).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_split_into_phase_and_service() {
        let s = |x: &str| split_step(x);
        assert_eq!(s("tf:infra"), ("tf:infra".into(), None));
        assert_eq!(
            s("nix:core:dns:again"),
            ("nix:core".into(), Some("dns".into()))
        );
        assert_eq!(s("health:wiki"), ("health".into(), Some("wiki".into())));
        assert_eq!(
            s("tf:service-config:docs"),
            ("tf:service-config".into(), Some("docs".into()))
        );
        assert_eq!(
            s("nix:service-config:a"),
            ("nix:service-config".into(), Some("a".into()))
        );
    }

    #[test]
    fn steps_keep_their_order_and_times() {
        let e = |step: &str, status: &str, at: f64| JournalEntry {
            step: step.into(),
            status: status.into(),
            detail: String::new(),
            at,
        };
        let j = [
            e("tf:infra", "started", 1.0),
            e("nix:core:dns", "started", 2.0),
            e("tf:infra", "changed", 3.5),
        ];
        let steps = steps_of(&j);
        assert_eq!(steps[0]["step"], "tf:infra");
        assert_eq!(steps[0]["seconds"], 2.5);
        assert_eq!(steps[1]["status"], "started");
        assert_eq!(steps[1]["seconds"], Value::Null);
    }
}
