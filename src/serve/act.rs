//! The actions, each by running nixmox itself: `status --json` and `plan
//! --json` (read-only, bounded, their answers kept for the page), `apply
//! --yes --json` and `rollback` (detached: they take the run lock, write the
//! journal and go on if serve stops), and `unlock`.

use super::app::{App, Cached};
use super::auth::{may_act, may_read};
use super::error::{ApiError, ApiResult};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::Read;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The largest request body any endpoint takes.
pub const MAX_BODY: usize = 64 * 1024;
/// `status` and `plan` are stopped after this long.
const READ_LIMIT: Duration = Duration::from_secs(1800);
/// How long an apply has to show up in the store as a run.
const RUN_APPEARS: Duration = Duration::from_secs(120);
/// Standard error kept of a command that failed to start its run.
const STDERR_LIMIT: usize = 16 * 1024;

/// Runs a read-only command into `slot`, unless one is running already.
/// Returns whether it started one.
fn start_read(
    app: &Arc<App>,
    slot: fn(&App) -> &Mutex<Cached>,
    args: &'static [&'static str],
) -> bool {
    {
        let Ok(mut c) = slot(app).lock() else {
            return false;
        };
        if c.running {
            return false;
        }
        c.running = true;
    }
    let app = Arc::clone(app);
    std::thread::spawn(move || {
        let cmd = app.command(args);
        let result = crate::process::run_tool(
            cmd,
            None,
            READ_LIMIT,
            &format!("nixmox {}", args[0]),
            "the nixmox binary serve runs",
        );
        let Ok(mut c) = slot(&app).lock() else { return };
        c.running = false;
        c.at = Some(crate::state::now());
        match result {
            Ok(out) if matches!(out.code, Some(0) | Some(2)) => {
                match serde_json::from_str::<Value>(&out.stdout) {
                    Ok(v) => {
                        c.value = Some(v);
                        c.exit = out.code;
                        c.error = None;
                    }
                    Err(e) => c.error = Some(format!("nixmox {} printed no JSON: {e}", args[0])),
                }
            }
            Ok(out) => {
                c.exit = out.code;
                c.error = Some(format!(
                    "nixmox {} failed (exit {}): {}",
                    args[0],
                    out.code.map_or("by a signal".into(), |c| c.to_string()),
                    last_lines(&out.stderr)
                ));
            }
            Err(e) => c.error = Some(e),
        }
    });
    true
}

/// The end of a command's standard error, where it says what went wrong.
fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

pub fn start_status(app: &Arc<App>) -> bool {
    start_read(app, |a| &a.status, &["status", "--json"])
}

pub async fn refresh_status(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    // A read, done by POST: anonymous when reading is open, but a browser
    // session must send its CSRF token like for any POST.
    match super::auth::caller(&app, &headers)? {
        super::auth::Caller::Session { csrf_ok: false, .. } => {
            may_act(&app, &headers, "refreshing the status")?;
        }
        _ => {
            may_read(&app, &headers)?;
        }
    }
    start_status(&app);
    Ok((StatusCode::ACCEPTED, Json(json!({"refreshing": true}))).into_response())
}

#[derive(Deserialize)]
pub struct PlanQuery {
    wait: Option<String>,
}

pub async fn plan(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<PlanQuery>,
) -> ApiResult<Response> {
    may_act(&app, &headers, "planning")?;
    let wait = match q.wait.as_deref() {
        None | Some("0") | Some("false") => false,
        Some("1") | Some("true") => true,
        Some(_) => return Err(ApiError::bad("wait is 1 or 0")),
    };
    start_read(&app, |a| &a.plan, &["plan", "--json"]);
    if !wait {
        return Ok((StatusCode::ACCEPTED, Json(super::read::plan_json(&app))).into_response());
    }
    let until = Instant::now() + READ_LIMIT;
    while app.plan.lock().map(|c| c.running).unwrap_or(false) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(Json(super::read::plan_json(&app)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyBody {
    confirm: Option<bool>,
    #[serde(default)]
    only: Vec<String>,
}

/// The body as JSON, with a message that names what is wrong.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> ApiResult<T> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad(format!("{what}: the body is not the expected JSON: {e}")))
}

fn confirmed(c: Option<bool>, what: &str) -> ApiResult<()> {
    if c == Some(true) {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "{what} needs {{\"confirm\": true}}: look at the plan first (POST /api/plan), as the terminal shows it before it asks"
        )))
    }
}

pub async fn apply(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> ApiResult<Response> {
    let who = may_act(&app, &headers, "apply")?;
    let b: ApplyBody = body(&bytes, "apply")?;
    confirmed(b.confirm, "apply")?;
    let mut args: Vec<String> = vec!["apply".into(), "--yes".into(), "--json".into()];
    for name in &b.only {
        if !app.manifest.enabled().any(|s| &s.name == name) {
            return Err(ApiError::bad(format!(
                "apply: only names {:?}, which is no enabled service of this stack",
                name.chars().take(80).collect::<String>()
            )));
        }
    }
    if !b.only.is_empty() {
        args.push(format!("--only={}", b.only.join(",")));
    }
    launch(&app, args, "apply", &who).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmBody {
    confirm: Option<bool>,
}

pub async fn rollback(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult<Response> {
    let who = may_act(&app, &headers, "rollback")?;
    let b: ConfirmBody = body(&bytes, "rollback")?;
    confirmed(b.confirm, "rollback")?;
    if !app.manifest.enabled().any(|s| s.name == name) {
        return Err(ApiError::not_found(format!(
            "rollback: no enabled service named {:?}",
            name.chars().take(80).collect::<String>()
        )));
    }
    launch(
        &app,
        vec!["rollback".into(), "--".into(), name],
        "rollback",
        &who,
    )
    .await
}

pub async fn unlock(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Response> {
    let who = may_act(&app, &headers, "unlock")?;
    let removed = app.store(|s| s.force_unlock()).await?;
    if let Some(h) = &removed {
        eprintln!("nixmox serve: {who} removed the lock of {}", h.describe());
    }
    Ok(Json(json!({ "removed": removed })).into_response())
}

/// Starts a command that records a run, detached from serve, and answers
/// once the store shows its run (or the command failed before it had one:
/// 409 when another run holds the lock).
async fn launch(app: &Arc<App>, args: Vec<String>, what: &str, who: &str) -> ApiResult<Response> {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = app.command(&refs);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    {
        // Its own process group: a Ctrl-C meant for serve does not stop a deploy.
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = cmd.spawn().map_err(|e| {
        ApiError::internal(format!("{what}: cannot run {}: {e}", app.exe.display()))
    })?;
    let pid = child.id();
    eprintln!(
        "nixmox serve: {who} started `nixmox {}` (pid {pid})",
        args.join(" ")
    );
    let mut stderr = child.stderr.take();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.take(STDERR_LIMIT as u64).read_to_end(&mut text);
            // Drain the rest so the command never blocks on a full pipe.
            let _ = std::io::copy(e, &mut std::io::sink());
        }
        let status = child.wait().ok().and_then(|s| s.code());
        let _ = tx.send((status, String::from_utf8_lossy(&text).into_owned()));
    });
    let me = crate::state::hostname();
    let until = Instant::now() + RUN_APPEARS;
    let mut exited: Option<(Option<i32>, String)> = None;
    loop {
        let host = me.clone();
        let found = app
            .store(move |s| {
                Ok(s.runs(10)?
                    .into_iter()
                    .find(|r| r.pid == pid && r.host == host))
            })
            .await?;
        if let Some(r) = found {
            return Ok(
                (StatusCode::ACCEPTED, Json(json!({"run": r.id, "pid": pid}))).into_response(),
            );
        }
        if let Some((code, err)) = exited.take() {
            let status = if err.contains("holds the lock") {
                StatusCode::CONFLICT
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            return Err(ApiError::new(
                status,
                format!(
                    "{what} stopped before it began its run (exit {}): {}",
                    code.map_or("by a signal".into(), |c| c.to_string()),
                    last_lines(&err)
                ),
            ));
        }
        if let Ok(done) = rx.try_recv() {
            // One more look at the store: the run may have been recorded just before the end.
            exited = Some(done);
            continue;
        }
        if Instant::now() > until {
            return Err(ApiError::internal(format!(
                "{what} (pid {pid}) did not begin a run within {} s; it goes on: watch /api/live",
                RUN_APPEARS.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
