//! The embedded store: one SQLite file, its lock a row written under an
//! immediate transaction (so two processes cannot both take it), stale when
//! its holder's process is gone.

use super::{
    now, Holder, JournalEntry, LastGood, RunInfo, StateError, Store, StoredOutput, MIGRATIONS,
};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::time::{Duration, Instant};

pub struct SqliteStore {
    conn: Connection,
    path: String,
}

fn err(path: &str, e: impl std::fmt::Display) -> StateError {
    StateError::Store {
        store: path.to_string(),
        message: e.to_string(),
    }
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore, StateError> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(&shown, format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(|e| err(&shown, e))?;
        // The busy timeout comes first: it rides out short write contention,
        // and switching a new file to WAL is itself a write that several
        // processes starting at once contend for.
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| err(&shown, e))?;
        // WAL lets readers (status) work beside a running apply.
        wal(&conn).map_err(|e| err(&shown, e))?;
        // A commit is then written but not flushed to disk: durable when
        // nixmox is killed, not when the machine loses power, which may take
        // the last records with it. Resume never trusts them anyway (every
        // step is re-checked), and a flush per record cost a no-op of 23
        // hosts 320 fsyncs, a tenth of its time.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| err(&shown, e))?;
        let mut store = SqliteStore { conn, path: shown };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), StateError> {
        let p = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| err(&p, e))?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .map_err(|e| err(&p, e))?;
        let current: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                [],
                |r| r.get(0),
            )
            .map_err(|e| err(&p, e))?;
        if current > MIGRATIONS.len() as i64 {
            return Err(err(&p, format!("the state was written by a newer nixmox (schema {current}, this one knows {}): upgrade nixmox", MIGRATIONS.len())));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.execute_batch(sql)
                .map_err(|e| err(&p, format!("schema migration {}: {e}", i + 1)))?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                params![i as i64 + 1],
            )
            .map_err(|e| err(&p, e))?;
        }
        tx.commit().map_err(|e| err(&p, e))
    }

    fn holder(&self) -> Result<Option<Holder>, StateError> {
        read_holder(&self.conn).map_err(|e| err(&self.path, e))
    }
}

/// Puts the file in WAL mode. The switch wants an exclusive lock while it
/// holds a shared one, so SQLite answers "busy" at once instead of waiting
/// (waiting could deadlock): processes that open a new file together retry
/// here, within the same bound as the busy timeout.
fn wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pause = Duration::from_millis(2);
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::DatabaseBusy && Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The lock row, if any (a transaction derefs to its connection).
fn read_holder(conn: &Connection) -> rusqlite::Result<Option<Holder>> {
    conn.query_row(
        "SELECT command, pid, host, since FROM run_lock WHERE id = 1",
        [],
        |r| {
            Ok(Holder {
                command: r.get(0)?,
                pid: r.get::<_, i64>(1)? as u32,
                host: r.get(2)?,
                since: r.get(3)?,
            })
        },
    )
    .optional()
}

fn run_row(r: &rusqlite::Row) -> rusqlite::Result<RunInfo> {
    Ok(RunInfo {
        id: r.get(0)?,
        command: r.get(1)?,
        status: r.get(2)?,
        started: r.get(3)?,
        finished: r.get(4)?,
        pid: r.get::<_, i64>(5)? as u32,
        host: r.get(6)?,
    })
}

impl Store for SqliteStore {
    fn name(&self) -> String {
        self.path.clone()
    }

    fn acquire_lock(&mut self, me: &Holder, wait: Duration) -> Result<(), StateError> {
        let deadline = Instant::now() + wait;
        loop {
            let p = self.path.clone();
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| err(&p, e))?;
            let held = read_holder(&tx).map_err(|e| err(&p, e))?;
            let free = match &held {
                None => true,
                Some(h) => h.is_stale() || (h.pid == me.pid && h.host == me.host),
            };
            if free {
                tx.execute("DELETE FROM run_lock", [])
                    .map_err(|e| err(&p, e))?;
                tx.execute(
                    "INSERT INTO run_lock (id, command, pid, host, since) VALUES (1, ?1, ?2, ?3, ?4)",
                    params![me.command, me.pid as i64, me.host, me.since],
                )
                .map_err(|e| err(&p, e))?;
                tx.commit().map_err(|e| err(&p, e))?;
                return Ok(());
            }
            drop(tx);
            if Instant::now() >= deadline {
                return Err(StateError::Locked {
                    holder: held.map(|h| h.describe()).unwrap_or_default(),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn release_lock(&mut self) -> Result<(), StateError> {
        let me = Holder::me("");
        self.conn
            .execute(
                "DELETE FROM run_lock WHERE pid = ?1 AND host = ?2",
                params![me.pid as i64, me.host],
            )
            .map(|_| ())
            .map_err(|e| err(&self.path, e))
    }

    fn force_unlock(&mut self) -> Result<Option<Holder>, StateError> {
        let held = self.holder()?;
        self.conn
            .execute("DELETE FROM run_lock", [])
            .map_err(|e| err(&self.path, e))?;
        Ok(held)
    }

    fn begin_run(&mut self, command: &str) -> Result<i64, StateError> {
        let me = Holder::me(command);
        self.conn
            .execute(
                "INSERT INTO runs (command, status, started, pid, host) VALUES (?1, 'running', ?2, ?3, ?4)",
                params![command, now(), me.pid as i64, me.host],
            )
            .map_err(|e| err(&self.path, e))?;
        Ok(self.conn.last_insert_rowid())
    }

    fn finish_run(&mut self, run: i64, status: &str) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE runs SET status = ?1, finished = ?2 WHERE id = ?3",
                params![status, now(), run],
            )
            .map(|_| ())
            .map_err(|e| err(&self.path, e))
    }

    fn interrupted_runs(&mut self) -> Result<Vec<RunInfo>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, command, status, started, finished, pid, host FROM runs WHERE status = 'running' ORDER BY id")
            .map_err(|e| err(&self.path, e))?;
        let rows = stmt
            .query_map([], run_row)
            .map_err(|e| err(&self.path, e))?;
        let me = std::process::id();
        Ok(rows
            .filter_map(Result::ok)
            .filter(|r| {
                r.pid != me
                    && Holder {
                        command: String::new(),
                        pid: r.pid,
                        host: r.host.clone(),
                        since: 0.0,
                    }
                    .is_stale()
            })
            .collect())
    }

    fn mark_run(&mut self, run: i64, status: &str) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE runs SET status = ?1 WHERE id = ?2",
                params![status, run],
            )
            .map(|_| ())
            .map_err(|e| err(&self.path, e))
    }

    fn last_run(&mut self) -> Result<Option<RunInfo>, StateError> {
        self.conn
            .query_row("SELECT id, command, status, started, finished, pid, host FROM runs ORDER BY id DESC LIMIT 1", [], run_row)
            .optional()
            .map_err(|e| err(&self.path, e))
    }

    fn journal(
        &mut self,
        run: i64,
        step: &str,
        status: &str,
        detail: &str,
    ) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO journal (run, step, status, detail, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run, step, status, detail, now()],
            )
            .map(|_| ())
            .map_err(|e| err(&self.path, e))
    }

    fn journal_of(&mut self, run: i64) -> Result<Vec<JournalEntry>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT step, status, detail, at FROM journal WHERE run = ?1 ORDER BY id")
            .map_err(|e| err(&self.path, e))?;
        let rows = stmt
            .query_map(params![run], |r| {
                Ok(JournalEntry {
                    step: r.get(0)?,
                    status: r.get(1)?,
                    detail: r.get(2)?,
                    at: r.get(3)?,
                })
            })
            .map_err(|e| err(&self.path, e))?;
        Ok(rows.filter_map(Result::ok).collect())
    }

    fn set_last_good(
        &mut self,
        service: &str,
        system: &str,
        inputs: &str,
    ) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO last_good (service, system, inputs, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (service) DO UPDATE SET system = excluded.system, inputs = excluded.inputs, at = excluded.at",
                params![service, system, inputs, now()],
            )
            .map(|_| ())
            .map_err(|e| err(&self.path, e))
    }

    fn last_good(&mut self, service: &str) -> Result<Option<LastGood>, StateError> {
        self.conn
            .query_row(
                "SELECT service, system, inputs, at FROM last_good WHERE service = ?1",
                params![service],
                |r| {
                    Ok(LastGood {
                        service: r.get(0)?,
                        system: r.get(1)?,
                        inputs: r.get(2)?,
                        at: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(|e| err(&self.path, e))
    }

    fn record_output(&mut self, run: i64, o: &StoredOutput) -> Result<(), StateError> {
        // A sensitive value is never stored, whatever the caller passed.
        let value = if o.sensitive { None } else { o.value.clone() };
        self.conn
            .execute(
                "INSERT INTO outputs (workspace, name, sensitive, value, run) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (workspace, name) DO UPDATE SET sensitive = excluded.sensitive, value = excluded.value, run = excluded.run",
                params![o.workspace, o.name, o.sensitive, value, run],
            )
            .map(|_| ())
            .map_err(|e| err(&self.path, e))
    }

    fn outputs(&mut self) -> Result<Vec<StoredOutput>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT workspace, name, sensitive, value FROM outputs ORDER BY workspace, name",
            )
            .map_err(|e| err(&self.path, e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StoredOutput {
                    workspace: r.get(0)?,
                    name: r.get(1)?,
                    sensitive: r.get(2)?,
                    value: r.get(3)?,
                })
            })
            .map_err(|e| err(&self.path, e))?;
        Ok(rows.filter_map(Result::ok).collect())
    }

    fn record_health(
        &mut self,
        run: i64,
        service: &str,
        check: &str,
        ok: bool,
        detail: &str,
    ) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO health (run, service, check_name, ok, detail, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![run, service, check, ok, detail, now()],
            )
            .map(|_| ())
            .map_err(|e| err(&self.path, e))
    }

    fn runs(&mut self, limit: i64) -> Result<Vec<RunInfo>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, command, status, started, finished, pid, host FROM runs ORDER BY id DESC LIMIT ?1")
            .map_err(|e| err(&self.path, e))?;
        let rows = stmt
            .query_map(params![limit.clamp(1, super::MAX_RUNS)], run_row)
            .map_err(|e| err(&self.path, e))?;
        Ok(rows.filter_map(Result::ok).collect())
    }

    fn run_info(&mut self, run: i64) -> Result<Option<RunInfo>, StateError> {
        self.conn
            .query_row(
                "SELECT id, command, status, started, finished, pid, host FROM runs WHERE id = ?1",
                params![run],
                run_row,
            )
            .optional()
            .map_err(|e| err(&self.path, e))
    }

    fn runs_counted(&mut self, limit: i64) -> Result<Vec<(RunInfo, i64, i64)>, StateError> {
        let mut stmt = self
            .conn
            .prepare(super::RUNS_COUNTED)
            .map_err(|e| err(&self.path, e))?;
        let rows = stmt
            .query_map(params![limit.clamp(1, super::MAX_RUNS)], |r| {
                Ok((run_row(r)?, r.get(7)?, r.get(8)?))
            })
            .map_err(|e| err(&self.path, e))?;
        Ok(rows.filter_map(Result::ok).collect())
    }

    fn journal_after(
        &mut self,
        run: i64,
        after: i64,
    ) -> Result<Vec<(i64, JournalEntry)>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, step, status, detail, at FROM journal WHERE run = ?1 AND id > ?2 ORDER BY id")
            .map_err(|e| err(&self.path, e))?;
        let rows = stmt
            .query_map(params![run, after], |r| {
                Ok((
                    r.get(0)?,
                    JournalEntry {
                        step: r.get(1)?,
                        status: r.get(2)?,
                        detail: r.get(3)?,
                        at: r.get(4)?,
                    },
                ))
            })
            .map_err(|e| err(&self.path, e))?;
        Ok(rows.filter_map(Result::ok).collect())
    }

    fn latest_health(&mut self) -> Result<Vec<super::HealthRecord>, StateError> {
        let mut stmt = self
            .conn
            .prepare(super::LATEST_HEALTH)
            .map_err(|e| err(&self.path, e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(super::HealthRecord {
                    run: r.get(0)?,
                    service: r.get(1)?,
                    check: r.get(2)?,
                    ok: r.get(3)?,
                    detail: r.get(4)?,
                    at: r.get(5)?,
                })
            })
            .map_err(|e| err(&self.path, e))?;
        Ok(rows.filter_map(Result::ok).collect())
    }

    fn lock_holder(&mut self) -> Result<Option<Holder>, StateError> {
        self.holder()
    }

    fn schema_version(&mut self) -> Result<i64, StateError> {
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                [],
                |r| r.get(0),
            )
            .map_err(|e| err(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Processes started together on a stack with no state yet all create
    /// and migrate the same new file; none may fail with "database is locked".
    #[test]
    fn stores_opened_at_once_on_a_new_file_all_open() {
        for round in 0..20 {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("state.db");
            let openers: Vec<_> = (0..8)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || SqliteStore::open(&path).map(|_| ()))
                })
                .collect();
            for o in openers {
                let result = o.join().expect("thread");
                assert!(result.is_ok(), "round {round}: {:?}", result.err());
            }
        }
    }

    /// Records are written in WAL mode without a flush per commit (see
    /// `open`), and what one connection commits another reads at once.
    #[test]
    fn records_are_written_without_a_flush_per_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let mut store = SqliteStore::open(&path).expect("open");
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("journal_mode");
        let sync: i64 = store
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("synchronous");
        assert_eq!((mode.as_str(), sync), ("wal", 1), "WAL, synchronous=NORMAL");
        let run = store.begin_run("apply").expect("run");
        let mut other = SqliteStore::open(&path).expect("open again");
        assert_eq!(other.last_run().expect("last run").map(|r| r.id), Some(run));
    }
}
