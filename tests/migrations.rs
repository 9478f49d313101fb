//! The native-migration SQL against a real PostgreSQL (through psql, as the
//! engine sends it to the database host): a migration applies once, as its
//! owner; two sessions racing on one migration apply it exactly once, and
//! neither fails; `survey` reads what `ensure` would do, on a server that
//! has nothing yet too.

#[path = "support/postgres.rs"]
#[allow(dead_code)] // url() serves the tests that connect from Rust
mod postgres;

use nixmox::manifest::{Database, DbMode};
use nixmox::nixos::database::{ensure_sql, migration_sql, survey_sql, TRACKING_TABLE};
use std::process::{Command, Output};

fn psql(pg: &postgres::Postgres, db: &str, sql: &str) -> Output {
    let mut child = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-tA",
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
            "-f",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(sql.as_bytes())
        .expect("write sql");
    child.wait_with_output().expect("psql output")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_migration_applies_once_even_when_two_sessions_race() {
    let pg = postgres::Postgres::start();
    let db = Database {
        key: None,
        name: "wiki".into(),
        owner: "wiki".into(),
        host: None,
        port: 5432,
        mode: Some(DbMode::NativeMigration),
        migrations: vec!["m/001.sql".into()],
        additional: vec![],
        password: None,
    };
    // Before anything exists, the survey still answers: no role, no database.
    let before = psql(&pg, "postgres", &survey_sql(&db));
    assert!(before.status.success(), "{}", text(&before));
    assert_eq!(String::from_utf8_lossy(&before.stdout).trim(), "");
    let o = psql(&pg, "postgres", &ensure_sql(&db));
    assert!(o.status.success(), "{}", text(&o));
    // The database without its tracking table yet: role and database, no migrations.
    let created = psql(&pg, "postgres", &survey_sql(&db));
    assert!(created.status.success(), "{}", text(&created));
    assert_eq!(
        String::from_utf8_lossy(&created.stdout).trim(),
        "role wiki\ndb wiki"
    );
    let o = psql(
        &pg,
        "wiki",
        &format!("SET ROLE \"wiki\";\n{TRACKING_TABLE}\n"),
    );
    assert!(o.status.success(), "{}", text(&o));

    // Two sessions start the same migration at once; its body takes a moment.
    let body = "SELECT pg_sleep(0.5); CREATE TABLE pages (id int); INSERT INTO pages VALUES (1);";
    let sql = migration_sql("wiki", "m/001.sql", "abc", body);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| psql(&pg, "wiki", &sql));
        let b = s.spawn(|| psql(&pg, "wiki", &sql));
        (a.join().expect("a"), b.join().expect("b"))
    });
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));
    let applied = [&a, &b]
        .iter()
        .filter(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == "applied")
        })
        .count();
    assert_eq!(applied, 1, "{}\n{}", text(&a), text(&b));
    let count = psql(&pg, "wiki", "SELECT count(*) FROM pages;");
    assert_eq!(String::from_utf8_lossy(&count.stdout).trim(), "1");
    let owner = psql(
        &pg,
        "wiki",
        "SELECT tableowner FROM pg_tables WHERE tablename = 'pages';",
    );
    assert_eq!(String::from_utf8_lossy(&owner.stdout).trim(), "wiki");

    // Once more, later: nothing happens.
    let again = psql(&pg, "wiki", &sql);
    assert!(again.status.success(), "{}", text(&again));
    assert!(!String::from_utf8_lossy(&again.stdout).contains("applied"));

    // The survey sees the owner, the database and the recorded migration.
    let seen = psql(&pg, "postgres", &survey_sql(&db));
    assert!(seen.status.success(), "{}", text(&seen));
    let seen = String::from_utf8_lossy(&seen.stdout);
    for line in ["role wiki", "db wiki", "migration m/001.sql abc"] {
        assert!(
            seen.lines().any(|l| l == line),
            "{line} missing in:\n{seen}"
        );
    }
}
