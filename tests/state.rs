//! The same suite against both state backends: embedded SQLite and a real
//! PostgreSQL server.

#[path = "support/postgres.rs"]
mod postgres;

use nixmox::state::{
    self, Holder, PgStore, SqliteStore, StateError, Store, StoredOutput, MIGRATIONS,
};
use std::time::{Duration, Instant};

/// `open` gives a fresh connection to the same store each time.
fn suite(open: &dyn Fn() -> Box<dyn Store>) {
    let mut s = open();
    assert_eq!(
        s.schema_version().expect("version"),
        MIGRATIONS.len() as i64
    );
    // Reopening migrates nothing again.
    assert_eq!(
        open().schema_version().expect("version"),
        MIGRATIONS.len() as i64
    );

    // Runs and the journal.
    let run = s.begin_run("apply").expect("begin");
    s.journal(run, "tf:infra", "started", "").expect("journal");
    s.journal(run, "tf:infra", "changed", "+1 ~0 -0")
        .expect("journal");
    let last = s.last_run().expect("last").expect("a run");
    assert_eq!(
        (last.id, last.status.as_str(), last.command.as_str()),
        (run, "running", "apply")
    );
    let j = s.journal_of(run).expect("journal");
    assert_eq!(
        j.iter().map(|e| e.status.as_str()).collect::<Vec<_>>(),
        ["started", "changed"]
    );
    assert!(
        s.interrupted_runs().expect("interrupted").is_empty(),
        "a run of a live process is not interrupted"
    );

    // What `serve` reads: the history, the journal after a point, counts, checks.
    let numbered = s.journal_after(run, 0).expect("journal after");
    assert_eq!(numbered.len(), 2);
    assert!(
        numbered[0].0 < numbered[1].0,
        "entries are numbered in order"
    );
    let rest = s.journal_after(run, numbered[0].0).expect("journal after");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].1.status, "changed");
    s.journal(run, "nix:core:dns", "started", "")
        .expect("journal");
    s.journal(run, "nix:core:dns", "failed", "x")
        .expect("journal");
    let counted = s.runs_counted(10).expect("runs counted");
    assert_eq!((counted[0].0.id, counted[0].1, counted[0].2), (run, 2, 1));
    assert_eq!(s.runs(10).expect("runs")[0].id, run);
    assert_eq!(s.run_info(run).expect("run").map(|r| r.id), Some(run));
    assert_eq!(s.run_info(run + 1000).expect("run"), None);
    s.record_health(run, "dns", "health", false, "down")
        .expect("health");
    s.record_health(run, "dns", "health", true, "up")
        .expect("health");
    let h = s.latest_health().expect("health");
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(h[0].ok && h[0].detail == "up", "the latest record: {h:?}");
    s.finish_run(run, "ok").expect("finish");
    assert_eq!(s.last_run().expect("last").expect("run").status, "ok");

    // Last good systems.
    assert!(s.last_good("wiki").expect("get").is_none());
    s.set_last_good("wiki", "/nix/store/a-wiki", "h1")
        .expect("set");
    s.set_last_good("wiki", "/nix/store/b-wiki", "h2")
        .expect("update");
    let lg = s.last_good("wiki").expect("get").expect("some");
    assert_eq!(
        (lg.system.as_str(), lg.inputs.as_str()),
        ("/nix/store/b-wiki", "h2")
    );

    // Outputs: a sensitive value is never stored, whatever the caller passes.
    s.record_output(
        run,
        &StoredOutput {
            workspace: "auth-core".into(),
            name: "secret".into(),
            sensitive: true,
            value: Some("hunter22".into()),
        },
    )
    .expect("record");
    s.record_output(
        run,
        &StoredOutput {
            workspace: "auth-core".into(),
            name: "id".into(),
            sensitive: false,
            value: Some("wiki-oidc".into()),
        },
    )
    .expect("record");
    let outs = s.outputs().expect("outputs");
    assert_eq!(outs.len(), 2);
    assert!(outs.iter().all(|o| o.value.as_deref() != Some("hunter22")));
    assert_eq!(
        outs.iter()
            .find(|o| o.name == "id")
            .and_then(|o| o.value.clone())
            .as_deref(),
        Some("wiki-oidc")
    );

    s.record_health(run, "wiki", "readiness", true, "")
        .expect("health");

    // The lock: one holder at a time, the other told who holds it.
    let me = Holder::me("apply");
    s.acquire_lock(&me, Duration::ZERO).expect("lock");
    let mut other = open();
    let someone = Holder {
        command: "destroy".into(),
        pid: 1,
        host: state::hostname(),
        since: state::now(),
    };
    let waited = Instant::now();
    let err = other
        .acquire_lock(&someone, Duration::from_millis(600))
        .expect_err("the lock is held");
    assert!(
        waited.elapsed() >= Duration::from_millis(500),
        "it did not wait"
    );
    match err {
        StateError::Locked { holder } => assert!(
            holder.contains("nixmox apply")
                && holder.contains(&format!("pid {}", std::process::id())),
            "{holder}"
        ),
        other => panic!("{other}"),
    }
    s.release_lock().expect("release");
    other
        .acquire_lock(&someone, Duration::ZERO)
        .expect("free after release");
    drop(other);
}

#[test]
fn sqlite_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    suite(&|| Box::new(SqliteStore::open(&path).expect("open sqlite")));

    // A lock whose holder is gone is stale and taken over.
    let mut s = SqliteStore::open(&path).expect("open");
    let _ = s.force_unlock();
    let ghost = Holder {
        command: "apply".into(),
        pid: 4_000_000,
        host: state::hostname(),
        since: 0.0,
    };
    s.acquire_lock(&ghost, Duration::ZERO)
        .expect("ghost takes it");
    let mut t = SqliteStore::open(&path).expect("open");
    t.acquire_lock(&Holder::me("apply"), Duration::ZERO)
        .expect("a dead holder's lock is taken over");

    // A newer schema than this nixmox knows is refused, not damaged.
    let conn = rusqlite_version_bump(&path);
    let err = SqliteStore::open(&path).err().expect("refused");
    assert!(err.to_string().contains("newer nixmox"), "{err}");
    drop(conn);
}

fn rusqlite_version_bump(path: &std::path::Path) -> std::process::Output {
    std::process::Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('insert into schema_version values (999)'); c.commit()", &path.display().to_string()])
        .output()
        .expect("python3")
}

#[test]
fn postgres_store() {
    let pg = postgres::Postgres::start();
    let url = pg.url("postgres");
    suite(&|| Box::new(PgStore::open(&url).expect("open postgres")));

    // The advisory lock dies with its holder's connection: nothing stale to clean up.
    let mut a = PgStore::open(&url).expect("open");
    a.acquire_lock(&Holder::me("apply"), Duration::ZERO)
        .expect("lock");
    drop(a);
    let mut b = PgStore::open(&url).expect("open");
    b.acquire_lock(&Holder::me("apply"), Duration::from_secs(5))
        .expect("free once the holder's session ended");

    // Messages never show a password.
    let bad = "postgres://nixmox:hunter22@127.0.0.1:1/nope?connect_timeout=2";
    let err = PgStore::open(bad)
        .err()
        .expect("cannot connect")
        .to_string();
    assert!(!err.contains("hunter22") && err.contains("***"), "{err}");
}
