//! What every request shares: the manifest, the state store, the cached
//! results of the last `status` and `plan`, and the sessions.

use super::auth::Sessions;
use super::error::{ApiError, ApiResult};
use super::oidc::Logins;
use crate::manifest::Manifest;
use crate::state::Store;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How `serve` was started (the command line over the manifest's `serve`).
pub struct Options {
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
    /// `--state` as given (a PostgreSQL URL may hold a password: it reaches
    /// the commands serve runs through their environment, never their argv).
    pub state_spec: Option<String>,
    pub store: Box<dyn Store>,
    pub listen: Option<std::net::SocketAddr>,
    pub token_file: Option<PathBuf>,
    /// Seconds between status refreshes (0: only on demand).
    pub status_every: u64,
}

/// The result of the last run of a read-only command (`status`, `plan`).
#[derive(Default, Clone)]
pub struct Cached {
    pub value: Option<Value>,
    pub at: Option<f64>,
    pub running: bool,
    pub exit: Option<i32>,
    pub error: Option<String>,
}

pub struct App {
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
    pub state_spec: Option<String>,
    store: Arc<Mutex<Box<dyn Store>>>,
    pub listen: std::net::SocketAddr,
    pub read_open: bool,
    /// The token file's content (scripts' `Authorization: Bearer`).
    pub token: Option<crate::secrets::Secret>,
    pub sessions: Mutex<Sessions>,
    pub logins: Mutex<Logins>,
    pub status: Mutex<Cached>,
    pub plan: Mutex<Cached>,
    pub status_every: u64,
    /// This very binary, to run nixmox's commands with.
    pub exe: PathBuf,
    pub runs_dir: PathBuf,
}

/// The most a token file may hold.
const TOKEN_LIMIT: u64 = 4096;

impl App {
    pub fn new(o: Options) -> Result<App, String> {
        let listen = o.listen.unwrap_or(o.manifest.serve.listen);
        let token_path = o.token_file.clone().or_else(|| {
            o.manifest
                .serve
                .token_file
                .as_ref()
                .map(|f| o.manifest.dir().join(f))
        });
        let token = match &token_path {
            Some(path) => {
                let bytes = crate::files::read_regular(path, TOKEN_LIMIT, "the serve token file")?;
                let text = String::from_utf8(bytes).map_err(|_| {
                    format!("serve: the token file {} is not UTF-8", path.display())
                })?;
                let token = text.lines().next().unwrap_or_default().trim().to_string();
                if token.len() < 16 {
                    return Err(format!(
                        "serve: the token file {} holds fewer than 16 characters: write a long random token there, e.g. `head -c 32 /dev/urandom | base64 > {}`",
                        path.display(),
                        path.display()
                    ));
                }
                Some(crate::secrets::Secret::new(Value::String(token)))
            }
            None => None,
        };
        let exe = std::env::current_exe()
            .map_err(|e| format!("serve: cannot find its own binary to run nixmox with: {e}"))?;
        Ok(App {
            // Behind a proxy, loopback is everyone: reads are open only
            // when both the socket and the URL browsers use are loopback.
            read_open: o.manifest.serve.public_read
                || (listen.ip().is_loopback() && url_is_loopback(&o.manifest.serve.url)),
            runs_dir: o.manifest.work_dir().join("runs"),
            manifest_path: o.manifest_path,
            state_spec: o.state_spec,
            store: Arc::new(Mutex::new(o.store)),
            listen,
            token,
            sessions: Mutex::new(Sessions::default()),
            logins: Mutex::new(Logins::default()),
            status: Mutex::new(Cached::default()),
            plan: Mutex::new(Cached::default()),
            status_every: o.status_every,
            exe,
            manifest: o.manifest,
        })
    }

    /// Runs `f` on the store off the async threads (both stores block).
    pub async fn store<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Store) -> Result<T, crate::state::StateError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            let mut s = store.lock().map_err(|_| {
                ApiError::internal("the state store is unusable (a thread panicked)")
            })?;
            f(s.as_mut()).map_err(|e| ApiError::internal(e.to_string()))
        })
        .await
        .map_err(|e| ApiError::internal(format!("a store read failed: {e}")))?
    }

    /// A nixmox command on this manifest and store: the store's spec goes
    /// through the environment, so a password in it never shows in `ps`.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(&self.exe);
        c.arg("-m").arg(&self.manifest_path);
        if let Some(spec) = &self.state_spec {
            c.env("NIXMOX_STATE", spec);
        } else {
            c.env_remove("NIXMOX_STATE");
        }
        c.env("NO_COLOR", "1");
        c.args(args);
        c.stdin(std::process::Stdio::null());
        c
    }

    /// The periodic status refresh, when asked for.
    pub fn start_background(self: &Arc<Self>) {
        if self.status_every == 0 {
            return;
        }
        let app = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(app.status_every));
            loop {
                tick.tick().await;
                super::act::start_status(&app);
            }
        });
    }
}

/// Whether the URL browsers use names this machine's loopback.
fn url_is_loopback(url: &str) -> bool {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}
