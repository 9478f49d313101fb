//! Live views as server-sent events, read from the state store's journal
//! (written before and after every step): a run started here, from a
//! terminal, or on another machine sharing the PostgreSQL store all look
//! the same. Each stream asks the store for what is new a few times a
//! second — one small indexed query — and sends it.

use super::app::App;
use super::auth::may_read;
use super::error::{ApiError, ApiResult};
use super::read::{run_id, run_json};
use crate::state::RunInfo;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::json;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// How often a stream looks at the store.
const POLL: Duration = Duration::from_millis(300);
/// A stream ends after this long (the browser's EventSource reconnects).
const MAX_STREAM: Duration = Duration::from_secs(3600);
/// Runs `/api/live` follows at most.
const LIVE_RUNS: i64 = 20;

type Events = Vec<Event>;

fn event(name: &str, data: &serde_json::Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

/// The stream of polls: `poll` returns the events to send and whether to stop.
fn polled<S, F, Fut>(state: S, poll: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = (Events, Option<S>)> + Send,
{
    let started = tokio::time::Instant::now();
    let poll = Arc::new(poll);
    stream::unfold(Some((state, true)), move |st| {
        let poll = Arc::clone(&poll);
        async move {
            let (state, first) = st?;
            if !first {
                tokio::time::sleep(POLL).await;
            }
            if started.elapsed() > MAX_STREAM {
                return None;
            }
            let (events, next) = poll(state).await;
            Some((events, next.map(|s| (s, false))))
        }
    })
    .flat_map(|events| stream::iter(events.into_iter().map(Ok)))
}

/// `Last-Event-ID`, when the browser reconnects.
fn last_event_id(headers: &HeaderMap) -> i64 {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `GET /api/runs/{id}/events`: the run's journal as it grows, then `end`.
pub async fn run_events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    may_read(&app, &headers)?;
    let id = run_id(&id)?;
    if app.store(move |s| s.run_info(id)).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "there is no run {id} in this stack's store"
        )));
    }
    let after = last_event_id(&headers);
    let s = polled((app, after), move |(app, after)| async move {
        let got = app
            .store(move |s| Ok((s.journal_after(id, after)?, s.run_info(id)?)))
            .await;
        let Ok((entries, info)) = got else {
            return (Vec::new(), Some((app, after)));
        };
        let mut next = after;
        let mut out: Events = entries
            .iter()
            .map(|(seq, e)| {
                next = *seq;
                event("step", &json!({"run": id, "seq": seq, "step": e.step, "status": e.status, "detail": e.detail, "at": e.at}))
                    .id(seq.to_string())
            })
            .collect();
        match info {
            Some(r) if r.status != "running" => {
                let journal = app
                    .store(move |s| s.journal_of(id))
                    .await
                    .unwrap_or_default();
                out.push(event("end", &run_json(&r, &journal)));
                (out, None)
            }
            _ => (out, Some((app, next))),
        }
    });
    Ok(Sse::new(s).keep_alive(KeepAlive::default()))
}

/// What `/api/live` knows of each run: its status and the last entry sent.
type Seen = BTreeMap<i64, (String, i64)>;

/// `GET /api/live`: runs appearing and changing status, and the steps of the running ones.
pub async fn everything(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    may_read(&app, &headers)?;
    // What exists now is history: only what changes from here is sent.
    let first: Vec<RunInfo> = app.store(|s| s.runs(LIVE_RUNS)).await?;
    let mut seen = Seen::new();
    for r in &first {
        let last = if r.status == "running" { 0 } else { i64::MAX };
        seen.insert(r.id, (r.status.clone(), last));
    }
    let s = polled((app, seen, true), |(app, mut seen, first)| async move {
        let known = seen.clone();
        let got = app
            .store(move |s| {
                let mut runs = Vec::new();
                for r in s.runs(LIVE_RUNS)? {
                    let after = known.get(&r.id).map(|k| k.1).unwrap_or(0);
                    let fresh = if r.status == "running" || after != i64::MAX {
                        s.journal_after(r.id, after)?
                    } else {
                        Vec::new()
                    };
                    let changed = known.get(&r.id).map(|k| k.0.as_str()) != Some(r.status.as_str());
                    let journal = if changed {
                        s.journal_of(r.id)?
                    } else {
                        Vec::new()
                    };
                    runs.push((r, fresh, changed, journal));
                }
                Ok(runs)
            })
            .await;
        let Ok(runs) = got else {
            return (Vec::new(), Some((app, seen, false)));
        };
        let mut out: Events = Vec::new();
        for (r, fresh, changed, journal) in runs.into_iter().rev() {
            if changed || first && r.status == "running" {
                out.push(event("run", &run_json(&r, &journal)));
            }
            let mut last = seen.get(&r.id).map(|k| k.1).unwrap_or(0);
            for (seq, e) in &fresh {
                last = *seq;
                out.push(event(
                    "step",
                    &json!({"run": r.id, "seq": seq, "step": e.step, "status": e.status, "detail": e.detail, "at": e.at}),
                ));
            }
            if r.status != "running" {
                last = i64::MAX;
            }
            seen.insert(r.id, (r.status.clone(), last));
        }
        (out, Some((app, seen, false)))
    });
    Ok(Sse::new(s).keep_alive(KeepAlive::default()))
}
