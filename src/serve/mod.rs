//! `nixmox serve`: the stack in a browser and a JSON API, behind the
//! stack's own login.
//!
//! One process, everything embedded. It reads what the terminal commands
//! write — the state store's runs, journal, last good systems and health
//! records — so a run started from a terminal, or on another machine
//! sharing the PostgreSQL store, shows up live like one started here. What
//! it does, it does by running nixmox itself (`status --json`, `plan
//! --json`, `apply --yes --json`, `rollback`): the same code paths, the same
//! run lock, the same journal, nothing a page can do that the terminal
//! cannot.
//!
//! Layers: [`app`] (shared state and the store), [`auth`] (who is asking:
//! sessions, the token file, CSRF), [`oidc`] (the login through the
//! stack's identity provider), [`read`] (the stack, services, runs, logs),
//! [`live`] (server-sent events), [`act`] (plan, apply, rollback, unlock),
//! [`metrics`] (Prometheus), [`assets`] (the page and the OpenAPI document).

mod act;
mod app;
mod assets;
mod auth;
mod error;
mod live;
mod metrics;
mod oidc;
mod read;

pub use app::{App, Options};

use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// Every route of the page and the API.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/{name}", get(assets::asset))
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/openapi.json", get(assets::openapi))
        .route("/api/session", get(auth::session))
        .route("/auth/login", get(oidc::login))
        .route("/auth/callback", get(oidc::callback))
        .route("/auth/logout", post(auth::logout))
        .route("/api/stack", get(read::stack))
        .route("/api/services", get(read::services))
        .route("/api/status/refresh", post(act::refresh_status))
        .route("/api/plan", get(read::plan).post(act::plan))
        .route("/api/runs", get(read::runs))
        .route("/api/runs/{id}", get(read::run))
        .route("/api/runs/{id}/events", get(live::run_events))
        .route("/api/runs/{id}/log/{kind}", get(read::log))
        .route("/api/live", get(live::everything))
        .route("/api/apply", post(act::apply))
        .route("/api/services/{name}/rollback", post(act::rollback))
        .route("/api/unlock", post(act::unlock))
        .route("/metrics", get(metrics::metrics))
        .fallback(error::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(act::MAX_BODY))
        .layer(axum::middleware::from_fn(error::security_headers))
        .with_state(app)
}

/// Serves until interrupted. Errors name the address or the store.
pub fn run(app: App) -> Result<(), String> {
    let listen = app.listen;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("serve: cannot start its runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("serve: cannot listen on {listen}: {e} (another process on that port? pass --listen)"))?;
        let app = Arc::new(app);
        app.start_background();
        eprintln!(
            "nixmox serve: {} on http://{listen} (reading {}; actions need a login{})",
            app.manifest_path.display(),
            if app.read_open {
                "open"
            } else {
                "needs a login"
            },
            match (&app.manifest.serve.oidc, &app.token) {
                (Some(_), Some(_)) => ": the stack's identity provider or the token file",
                (Some(_), None) => ": the stack's identity provider",
                (None, Some(_)) => ": the token file",
                (None, None) => ", and none is configured (serve.oidc or --token-file): the page is read-only",
            }
        );
        axum::serve(
            listener,
            router(app).into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .map_err(|e| format!("serve: {e}"))
    })
}
