//! The state store: runs, the step journal (written before and after every
//! step), each service's last good system, Terraform outputs (sensitive ones
//! by name only, never their values), health history, and the run lock.
//!
//! An embedded SQLite database (`.nixmox/state.db`) by default; PostgreSQL
//! (`--state postgres://…`) for teams and CI runners sharing one stack. Both
//! keep the same versioned schema and pass the same test suite.

mod postgres;
mod sqlite;

use serde::Serialize;
use std::path::Path;
use std::time::Duration;

pub use self::postgres::PgStore;
pub use self::sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store {store}: {message}")]
    Store { store: String, message: String },
    #[error("another nixmox run holds the lock of this stack: {holder}. Wait for it, pass --lock-timeout to wait, or if that run is gone for good, remove the lock with `nixmox unlock`")]
    Locked { holder: String },
}

/// Who holds (or wants) the run lock.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Holder {
    pub command: String,
    pub pid: u32,
    pub host: String,
    pub since: f64,
}

impl Holder {
    pub fn me(command: &str) -> Holder {
        Holder {
            command: command.into(),
            pid: std::process::id(),
            host: hostname(),
            since: now(),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "`nixmox {}` (pid {} on {}, for {:.0} s)",
            self.command,
            self.pid,
            self.host,
            (now() - self.since).max(0.0)
        )
    }

    /// A holder on this machine whose process is gone left a stale lock.
    pub fn is_stale(&self) -> bool {
        self.host == hostname() && !Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    pub id: i64,
    pub command: String,
    pub status: String,
    pub started: f64,
    pub finished: Option<f64>,
    pub pid: u32,
    pub host: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JournalEntry {
    pub step: String,
    pub status: String,
    pub detail: String,
    pub at: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastGood {
    pub service: String,
    pub system: String,
    pub inputs: String,
    pub at: f64,
}

/// One recorded output: the value only when not sensitive.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredOutput {
    pub workspace: String,
    pub name: String,
    pub sensitive: bool,
    pub value: Option<String>,
}

pub trait Store: Send {
    /// A human name of the store, for messages (never a password).
    fn name(&self) -> String;
    fn acquire_lock(&mut self, me: &Holder, wait: Duration) -> Result<(), StateError>;
    fn release_lock(&mut self) -> Result<(), StateError>;
    /// Removes the lock whoever holds it (`nixmox unlock`); returns the holder it removed.
    fn force_unlock(&mut self) -> Result<Option<Holder>, StateError>;
    fn begin_run(&mut self, command: &str) -> Result<i64, StateError>;
    fn finish_run(&mut self, run: i64, status: &str) -> Result<(), StateError>;
    /// Runs left `running` by a process that is gone: they were interrupted.
    fn interrupted_runs(&mut self) -> Result<Vec<RunInfo>, StateError>;
    fn mark_run(&mut self, run: i64, status: &str) -> Result<(), StateError>;
    fn last_run(&mut self) -> Result<Option<RunInfo>, StateError>;
    fn journal(
        &mut self,
        run: i64,
        step: &str,
        status: &str,
        detail: &str,
    ) -> Result<(), StateError>;
    fn journal_of(&mut self, run: i64) -> Result<Vec<JournalEntry>, StateError>;
    fn set_last_good(
        &mut self,
        service: &str,
        system: &str,
        inputs: &str,
    ) -> Result<(), StateError>;
    fn last_good(&mut self, service: &str) -> Result<Option<LastGood>, StateError>;
    fn record_output(&mut self, run: i64, output: &StoredOutput) -> Result<(), StateError>;
    fn outputs(&mut self) -> Result<Vec<StoredOutput>, StateError>;
    fn record_health(
        &mut self,
        run: i64,
        service: &str,
        check: &str,
        ok: bool,
        detail: &str,
    ) -> Result<(), StateError>;
    fn schema_version(&mut self) -> Result<i64, StateError>;

    // What `serve` reads: the history, a run's journal as it grows, the lock.
    /// The newest runs first, at most `limit`.
    fn runs(&mut self, limit: i64) -> Result<Vec<RunInfo>, StateError>;
    fn run_info(&mut self, run: i64) -> Result<Option<RunInfo>, StateError>;
    /// The newest runs first with their numbers of steps and of failures, in one query.
    fn runs_counted(&mut self, limit: i64) -> Result<Vec<(RunInfo, i64, i64)>, StateError>;
    /// A run's journal entries after the entry numbered `after` (0: all),
    /// each with its number, so a reader following a run reads only what is new.
    fn journal_after(
        &mut self,
        run: i64,
        after: i64,
    ) -> Result<Vec<(i64, JournalEntry)>, StateError>;
    /// Each service's latest record of each check.
    fn latest_health(&mut self) -> Result<Vec<HealthRecord>, StateError>;
    fn lock_holder(&mut self) -> Result<Option<Holder>, StateError>;
}

/// One recorded check of a service (a health gate or a verify check).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthRecord {
    pub run: i64,
    pub service: String,
    pub check: String,
    pub ok: bool,
    pub detail: String,
    pub at: f64,
}

/// The runs the history view shows at most.
pub const MAX_RUNS: i64 = 500;

/// Runs with their step and failure counts, for both stores.
const RUNS_COUNTED: &str = "SELECT r.id, r.command, r.status, r.started, r.finished, r.pid, r.host,
     (SELECT COUNT(DISTINCT j.step) FROM journal j WHERE j.run = r.id),
     (SELECT COUNT(*) FROM journal j WHERE j.run = r.id AND j.status = 'failed')
     FROM runs r ORDER BY r.id DESC LIMIT $1";

/// The latest record per (service, check), for both stores.
const LATEST_HEALTH: &str = "SELECT h.run, h.service, h.check_name, h.ok, h.detail, h.at FROM health h
     JOIN (SELECT service, check_name, MAX(id) AS id FROM health GROUP BY service, check_name) l ON h.id = l.id
     ORDER BY h.service, h.check_name";

/// The schema, one entry per version; each applied once, in order, recorded in `schema_version`.
pub const MIGRATIONS: &[&str] = &[
    // 1: everything the engine records.
    "CREATE TABLE runs (id INTEGER PRIMARY KEY, command TEXT NOT NULL, status TEXT NOT NULL, started DOUBLE PRECISION NOT NULL,
                        finished DOUBLE PRECISION, pid BIGINT NOT NULL, host TEXT NOT NULL);
     CREATE TABLE journal (id INTEGER PRIMARY KEY, run BIGINT NOT NULL, step TEXT NOT NULL, status TEXT NOT NULL, detail TEXT NOT NULL,
                           at DOUBLE PRECISION NOT NULL);
     CREATE INDEX journal_run ON journal (run);
     CREATE TABLE last_good (service TEXT PRIMARY KEY, system TEXT NOT NULL, inputs TEXT NOT NULL, at DOUBLE PRECISION NOT NULL);
     CREATE TABLE outputs (workspace TEXT NOT NULL, name TEXT NOT NULL, sensitive BOOLEAN NOT NULL, value TEXT, run BIGINT NOT NULL,
                           PRIMARY KEY (workspace, name));
     CREATE TABLE health (id INTEGER PRIMARY KEY, run BIGINT NOT NULL, service TEXT NOT NULL, check_name TEXT NOT NULL, ok BOOLEAN NOT NULL,
                          detail TEXT NOT NULL, at DOUBLE PRECISION NOT NULL);
     CREATE TABLE run_lock (id INTEGER PRIMARY KEY CHECK (id = 1), command TEXT NOT NULL, pid BIGINT NOT NULL, host TEXT NOT NULL,
                            since DOUBLE PRECISION NOT NULL);",
];

pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Opens the store named by `--state` (or `NIXMOX_STATE`): a `postgres://` or
/// `postgresql://` URL, a file path, or by default `<state dir>/state.db`.
pub fn open(spec: Option<&str>, state_dir: &Path) -> Result<Box<dyn Store>, StateError> {
    match spec.filter(|s| !s.is_empty()) {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Box::new(PgStore::open(url)?))
        }
        Some(path) => Ok(Box::new(SqliteStore::open(Path::new(path))?)),
        None => Ok(Box::new(SqliteStore::open(&state_dir.join("state.db"))?)),
    }
}

/// A URL with its password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(unparsable state URL)".into(),
    }
}
