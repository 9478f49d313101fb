//! The shared store: PostgreSQL, for teams and CI runners working on one
//! stack. The run lock is a session advisory lock, so it is released by the
//! server when its holder's connection dies; a row beside it names the holder.

use super::{
    now, redact_url, Holder, JournalEntry, LastGood, RunInfo, StateError, Store, StoredOutput,
    MIGRATIONS,
};
use postgres::{Client, NoTls};
use std::time::{Duration, Instant};

/// The advisory lock key of a nixmox stack ("nixmox" in ASCII).
const LOCK_KEY: i64 = 0x6e69_786d_6f78;

pub struct PgStore {
    client: Client,
    shown: String,
}

fn err(store: &str, e: impl std::fmt::Display) -> StateError {
    StateError::Store {
        store: store.to_string(),
        message: e.to_string(),
    }
}

impl PgStore {
    pub fn open(url: &str) -> Result<PgStore, StateError> {
        let shown = redact_url(url);
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| err(&shown, format!("not a PostgreSQL URL: {e}")))?;
        config.connect_timeout(Duration::from_secs(10));
        config.application_name("nixmox");
        let client = config
            .connect(NoTls)
            .map_err(|e| err(&shown, format!("cannot connect: {e}")))?;
        let mut store = PgStore { client, shown };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), StateError> {
        let s = self.shown.clone();
        let mut tx = self.client.transaction().map_err(|e| err(&s, e))?;
        // Two first runs migrating at once wait for each other here.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&(LOCK_KEY + 1)])
            .map_err(|e| err(&s, e))?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .map_err(|e| err(&s, e))?;
        let current: i32 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .map_err(|e| err(&s, e))?
            .get(0);
        if current as usize > MIGRATIONS.len() {
            return Err(err(
                &s,
                format!(
                    "the state was written by a newer nixmox (schema {current}): upgrade nixmox"
                ),
            ));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            // Ids that the database assigns: SQLite's INTEGER PRIMARY KEY is PostgreSQL's BIGSERIAL.
            let sql = sql.replace("id INTEGER PRIMARY KEY,", "id BIGSERIAL PRIMARY KEY,");
            tx.batch_execute(&sql)
                .map_err(|e| err(&s, format!("schema migration {}: {e}", i + 1)))?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&(i as i32 + 1)],
            )
            .map_err(|e| err(&s, e))?;
        }
        tx.commit().map_err(|e| err(&s, e))
    }

    fn holder(&mut self) -> Result<Option<Holder>, StateError> {
        let row = self
            .client
            .query_opt(
                "SELECT command, pid, host, since FROM run_lock WHERE id = 1",
                &[],
            )
            .map_err(|e| err(&self.shown, e))?;
        Ok(row.map(|r| Holder {
            command: r.get(0),
            pid: r.get::<_, i64>(1) as u32,
            host: r.get(2),
            since: r.get(3),
        }))
    }
}

fn run_row(r: &postgres::Row) -> RunInfo {
    RunInfo {
        id: r.get(0),
        command: r.get(1),
        status: r.get(2),
        started: r.get(3),
        finished: r.get(4),
        pid: r.get::<_, i64>(5) as u32,
        host: r.get(6),
    }
}

impl Store for PgStore {
    fn name(&self) -> String {
        self.shown.clone()
    }

    fn acquire_lock(&mut self, me: &Holder, wait: Duration) -> Result<(), StateError> {
        let deadline = Instant::now() + wait;
        loop {
            let got: bool = self
                .client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
                .map_err(|e| err(&self.shown, e))?
                .get(0);
            if got {
                let s = self.shown.clone();
                self.client
                    .execute("DELETE FROM run_lock", &[])
                    .map_err(|e| err(&s, e))?;
                self.client
                    .execute("INSERT INTO run_lock (id, command, pid, host, since) VALUES (1, $1, $2, $3, $4)", &[&me.command, &(me.pid as i64), &me.host, &me.since])
                    .map_err(|e| err(&s, e))?;
                return Ok(());
            }
            if Instant::now() >= deadline {
                let holder = self
                    .holder()?
                    .map(|h| h.describe())
                    .unwrap_or_else(|| "another session".into());
                return Err(StateError::Locked { holder });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn release_lock(&mut self) -> Result<(), StateError> {
        let me = Holder::me("");
        let s = self.shown.clone();
        self.client
            .execute(
                "DELETE FROM run_lock WHERE pid = $1 AND host = $2",
                &[&(me.pid as i64), &me.host],
            )
            .map_err(|e| err(&s, e))?;
        self.client
            .execute("SELECT pg_advisory_unlock_all()", &[])
            .map(|_| ())
            .map_err(|e| err(&s, e))
    }

    fn force_unlock(&mut self) -> Result<Option<Holder>, StateError> {
        // The advisory lock dies with its session; the row only names it.
        let held = self.holder()?;
        self.client
            .execute("DELETE FROM run_lock", &[])
            .map_err(|e| err(&self.shown, e))?;
        Ok(held)
    }

    fn begin_run(&mut self, command: &str) -> Result<i64, StateError> {
        let me = Holder::me(command);
        let row = self
            .client
            .query_one("INSERT INTO runs (command, status, started, pid, host) VALUES ($1, 'running', $2, $3, $4) RETURNING id", &[&command, &now(), &(me.pid as i64), &me.host])
            .map_err(|e| err(&self.shown, e))?;
        Ok(row.get(0))
    }

    fn finish_run(&mut self, run: i64, status: &str) -> Result<(), StateError> {
        self.client
            .execute(
                "UPDATE runs SET status = $1, finished = $2 WHERE id = $3",
                &[&status, &now(), &run],
            )
            .map(|_| ())
            .map_err(|e| err(&self.shown, e))
    }

    fn interrupted_runs(&mut self) -> Result<Vec<RunInfo>, StateError> {
        let rows = self
            .client
            .query("SELECT id, command, status, started, finished, pid, host FROM runs WHERE status = 'running' ORDER BY id", &[])
            .map_err(|e| err(&self.shown, e))?;
        let me = std::process::id();
        Ok(rows
            .iter()
            .map(run_row)
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
        self.client
            .execute(
                "UPDATE runs SET status = $1 WHERE id = $2",
                &[&status, &run],
            )
            .map(|_| ())
            .map_err(|e| err(&self.shown, e))
    }

    fn last_run(&mut self) -> Result<Option<RunInfo>, StateError> {
        let row = self
            .client
            .query_opt("SELECT id, command, status, started, finished, pid, host FROM runs ORDER BY id DESC LIMIT 1", &[])
            .map_err(|e| err(&self.shown, e))?;
        Ok(row.as_ref().map(run_row))
    }

    fn journal(
        &mut self,
        run: i64,
        step: &str,
        status: &str,
        detail: &str,
    ) -> Result<(), StateError> {
        self.client
            .execute(
                "INSERT INTO journal (run, step, status, detail, at) VALUES ($1, $2, $3, $4, $5)",
                &[&run, &step, &status, &detail, &now()],
            )
            .map(|_| ())
            .map_err(|e| err(&self.shown, e))
    }

    fn journal_of(&mut self, run: i64) -> Result<Vec<JournalEntry>, StateError> {
        let rows = self
            .client
            .query(
                "SELECT step, status, detail, at FROM journal WHERE run = $1 ORDER BY id",
                &[&run],
            )
            .map_err(|e| err(&self.shown, e))?;
        Ok(rows
            .iter()
            .map(|r| JournalEntry {
                step: r.get(0),
                status: r.get(1),
                detail: r.get(2),
                at: r.get(3),
            })
            .collect())
    }

    fn set_last_good(
        &mut self,
        service: &str,
        system: &str,
        inputs: &str,
    ) -> Result<(), StateError> {
        self.client
            .execute(
                "INSERT INTO last_good (service, system, inputs, at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (service) DO UPDATE SET system = excluded.system, inputs = excluded.inputs, at = excluded.at",
                &[&service, &system, &inputs, &now()],
            )
            .map(|_| ())
            .map_err(|e| err(&self.shown, e))
    }

    fn last_good(&mut self, service: &str) -> Result<Option<LastGood>, StateError> {
        let row = self
            .client
            .query_opt(
                "SELECT service, system, inputs, at FROM last_good WHERE service = $1",
                &[&service],
            )
            .map_err(|e| err(&self.shown, e))?;
        Ok(row.map(|r| LastGood {
            service: r.get(0),
            system: r.get(1),
            inputs: r.get(2),
            at: r.get(3),
        }))
    }

    fn record_output(&mut self, run: i64, o: &StoredOutput) -> Result<(), StateError> {
        let value = if o.sensitive { None } else { o.value.clone() };
        self.client
            .execute(
                "INSERT INTO outputs (workspace, name, sensitive, value, run) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (workspace, name) DO UPDATE SET sensitive = excluded.sensitive, value = excluded.value, run = excluded.run",
                &[&o.workspace, &o.name, &o.sensitive, &value, &run],
            )
            .map(|_| ())
            .map_err(|e| err(&self.shown, e))
    }

    fn outputs(&mut self) -> Result<Vec<StoredOutput>, StateError> {
        let rows = self
            .client
            .query(
                "SELECT workspace, name, sensitive, value FROM outputs ORDER BY workspace, name",
                &[],
            )
            .map_err(|e| err(&self.shown, e))?;
        Ok(rows
            .iter()
            .map(|r| StoredOutput {
                workspace: r.get(0),
                name: r.get(1),
                sensitive: r.get(2),
                value: r.get(3),
            })
            .collect())
    }

    fn record_health(
        &mut self,
        run: i64,
        service: &str,
        check: &str,
        ok: bool,
        detail: &str,
    ) -> Result<(), StateError> {
        self.client
            .execute("INSERT INTO health (run, service, check_name, ok, detail, at) VALUES ($1, $2, $3, $4, $5, $6)", &[&run, &service, &check, &ok, &detail, &now()])
            .map(|_| ())
            .map_err(|e| err(&self.shown, e))
    }

    fn runs(&mut self, limit: i64) -> Result<Vec<RunInfo>, StateError> {
        let rows = self
            .client
            .query("SELECT id, command, status, started, finished, pid, host FROM runs ORDER BY id DESC LIMIT $1", &[&limit.clamp(1, super::MAX_RUNS)])
            .map_err(|e| err(&self.shown, e))?;
        Ok(rows.iter().map(run_row).collect())
    }

    fn run_info(&mut self, run: i64) -> Result<Option<RunInfo>, StateError> {
        let row = self
            .client
            .query_opt(
                "SELECT id, command, status, started, finished, pid, host FROM runs WHERE id = $1",
                &[&run],
            )
            .map_err(|e| err(&self.shown, e))?;
        Ok(row.as_ref().map(run_row))
    }

    fn runs_counted(&mut self, limit: i64) -> Result<Vec<(RunInfo, i64, i64)>, StateError> {
        let rows = self
            .client
            .query(super::RUNS_COUNTED, &[&limit.clamp(1, super::MAX_RUNS)])
            .map_err(|e| err(&self.shown, e))?;
        Ok(rows
            .iter()
            .map(|r| (run_row(r), r.get(7), r.get(8)))
            .collect())
    }

    fn journal_after(
        &mut self,
        run: i64,
        after: i64,
    ) -> Result<Vec<(i64, JournalEntry)>, StateError> {
        let rows = self
            .client
            .query(
                "SELECT id, step, status, detail, at FROM journal WHERE run = $1 AND id > $2 ORDER BY id",
                &[&run, &after],
            )
            .map_err(|e| err(&self.shown, e))?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    JournalEntry {
                        step: r.get(1),
                        status: r.get(2),
                        detail: r.get(3),
                        at: r.get(4),
                    },
                )
            })
            .collect())
    }

    fn latest_health(&mut self) -> Result<Vec<super::HealthRecord>, StateError> {
        let rows = self
            .client
            .query(super::LATEST_HEALTH, &[])
            .map_err(|e| err(&self.shown, e))?;
        Ok(rows
            .iter()
            .map(|r| super::HealthRecord {
                run: r.get(0),
                service: r.get(1),
                check: r.get(2),
                ok: r.get(3),
                detail: r.get(4),
                at: r.get(5),
            })
            .collect())
    }

    fn lock_holder(&mut self) -> Result<Option<Holder>, StateError> {
        self.holder()
    }

    fn schema_version(&mut self) -> Result<i64, StateError> {
        let v: i32 = self
            .client
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .map_err(|e| err(&self.shown, e))?
            .get(0);
        Ok(v as i64)
    }
}
