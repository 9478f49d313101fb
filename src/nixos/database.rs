//! The database interface for `mode = "native-migration"`: nixmox makes sure
//! the role and databases (with `additionaldbs`) exist on the PostgreSQL host
//! and applies the listed SQL migrations in order, each exactly once, tracked
//! in a `nixmox_migrations` table of the database. SQL runs on that host
//! through SSH as the superuser (`nixos.psql`), fed on standard input.

use super::remote::quote;
use super::ssh::{self, SshTarget};
use crate::manifest::{Database, DbMode};
use std::path::Path;
use std::time::Duration;

/// A double-quoted SQL identifier (names are validated, this is belt and braces).
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A single-quoted SQL literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// psql statements that create the owner and every database when missing (`\gexec`).
pub fn ensure_sql(db: &Database) -> String {
    let mut sql = format!(
        "SELECT 'CREATE ROLE {} LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {})\\gexec\n",
        ident(&db.owner).replace('\'', "''"),
        literal(&db.owner)
    );
    for name in std::iter::once(&db.name).chain(&db.additional) {
        sql.push_str(&format!(
            "SELECT 'CREATE DATABASE {} OWNER {}' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {})\\gexec\n",
            ident(name).replace('\'', "''"),
            ident(&db.owner).replace('\'', "''"),
            literal(name)
        ));
    }
    sql
}

pub const TRACKING_TABLE: &str = "CREATE TABLE IF NOT EXISTS nixmox_migrations (name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());";

/// One migration in its own transaction, run as the database's owner (so
/// what it makes is the owner's), recorded with its checksum; prints
/// `applied`. Migrations of a database take turns (a transaction-scoped
/// advisory lock), and one found recorded once the lock is held is left
/// alone: a migration session left running by a killed run is never
/// applied a second time by the next.
pub fn migration_sql(owner: &str, name: &str, checksum: &str, body: &str) -> String {
    format!(
        "\\set ON_ERROR_STOP on\nBEGIN;\n\
         SELECT pg_advisory_xact_lock(hashtext('nixmox_migrations'));\n\
         SELECT EXISTS (SELECT FROM nixmox_migrations WHERE name = {name}) AS nixmox_done \\gset\n\
         \\if :nixmox_done\nROLLBACK;\n\\else\n\
         SET LOCAL ROLE {};\n{body}\n;\nINSERT INTO nixmox_migrations (name, checksum) VALUES ({name}, {});\nCOMMIT;\n\
         SELECT 'applied';\n\\endif\n",
        ident(owner),
        literal(checksum),
        name = literal(name),
    )
}

/// The remote command: `<psql> -X -q -v ON_ERROR_STOP=1 [-d db] -f -`.
pub fn psql_command(psql: &str, database: Option<&str>, tuples: bool) -> String {
    let mut cmd = format!("{psql} -X -q -v ON_ERROR_STOP=1");
    if tuples {
        cmd.push_str(" -tA");
    }
    if let Some(d) = database {
        cmd.push_str(&format!(" -d {}", quote(d)));
    }
    cmd.push_str(" -f -");
    cmd
}

/// The largest migration file read: no SQL migration comes close.
const MIGRATION_LIMIT: u64 = 64 * 1024 * 1024;

/// A migration file's text: a regular UTF-8 file within the bound.
fn read_migration(rel: &str, path: &Path) -> Result<String, String> {
    let bytes = crate::files::read_regular(path, MIGRATION_LIMIT, &format!("migration {rel}:"))?;
    String::from_utf8(bytes)
        .map_err(|_| format!("migration {rel}: {} is not UTF-8 text", path.display()))
}

fn checksum(body: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut h);
    format!("{:016x}", h.finish())
}

fn run(
    t: &SshTarget,
    psql: &str,
    database: Option<&str>,
    sql: &str,
    what: &str,
) -> Result<String, String> {
    let out = ssh::run(
        t,
        &psql_command(psql, database, true),
        Some(sql.as_bytes()),
        Duration::from_secs(120),
    )
    .map_err(|e| e.to_string())?;
    if out.ok() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "{what} on {} ({}) failed: {}",
            t.name,
            t.address,
            out.stderr.trim()
        ))
    }
}

/// Ensures the databases of one `db`/`dbs` entry and applies its migrations;
/// returns how many migrations were applied now.
pub fn ensure(t: &SshTarget, psql: &str, base: &Path, db: &Database) -> Result<usize, String> {
    if db.mode != Some(DbMode::NativeMigration) {
        return Ok(0);
    }
    run(
        t,
        psql,
        None,
        &ensure_sql(db),
        &format!("creating role {} and its databases", db.owner),
    )?;
    if db.migrations.is_empty() {
        return Ok(0);
    }
    let listed = run(
        t,
        psql,
        Some(&db.name),
        // The tracking table belongs to the owner, like everything its migrations make.
        &format!("SET ROLE {};\n{TRACKING_TABLE}\nSELECT name || ' ' || checksum FROM nixmox_migrations;\n", ident(&db.owner)),
        "reading nixmox_migrations",
    )?;
    let applied: std::collections::HashMap<String, String> = listed
        .lines()
        .filter_map(|l| {
            l.trim()
                .rsplit_once(' ')
                .map(|(n, c)| (n.to_string(), c.to_string()))
        })
        .collect();
    let mut count = 0;
    for rel in &db.migrations {
        let path = base.join(rel);
        let body = read_migration(rel, &path)?;
        let sum = checksum(&body);
        match applied.get(rel) {
            Some(old) if *old == sum => continue,
            Some(_) => return Err(format!("migration {rel} changed after it was applied to database {}: add a new migration instead of editing an applied one", db.name)),
            None => {}
        }
        let out = run(
            t,
            psql,
            Some(&db.name),
            &migration_sql(&db.owner, rel, &sum, &body),
            &format!("migration {rel} of database {}", db.name),
        )?;
        if out.lines().any(|l| l.trim() == "applied") {
            count += 1;
        }
    }
    Ok(count)
}

/// The read-only psql script of [`survey`]: the owner, the databases, and
/// the recorded migrations of the main database when it and its tracking
/// table exist (`\\c` moves to it).
pub fn survey_sql(db: &Database) -> String {
    let names: Vec<String> = std::iter::once(&db.name)
        .chain(&db.additional)
        .map(|n| literal(n))
        .collect();
    let mut sql = format!(
        "SELECT 'role ' || rolname FROM pg_roles WHERE rolname = {};\n\
         SELECT 'db ' || datname FROM pg_database WHERE datname IN ({});\n",
        literal(&db.owner),
        names.join(", ")
    );
    if !db.migrations.is_empty() {
        sql.push_str(&format!(
            "SELECT EXISTS (SELECT FROM pg_database WHERE datname = {name}) AS nixmox_db \\gset\n\
             \\if :nixmox_db\n\\c {name}\n\
             SELECT to_regclass('nixmox_migrations') IS NOT NULL AS nixmox_tracked \\gset\n\
             \\if :nixmox_tracked\n\
             SELECT 'migration ' || name || ' ' || checksum FROM nixmox_migrations;\n\
             \\endif\n\\endif\n",
            name = literal(&db.name)
        ));
    }
    sql
}

/// What [`ensure`] would do for one `db`/`dbs` entry; empty when nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pending {
    /// The owner role, when it would be created.
    pub role: Option<String>,
    /// Databases that would be created.
    pub databases: Vec<String>,
    /// Migrations that would run, in order.
    pub migrations: Vec<String>,
    /// Migrations applied before whose file has changed since: `apply` refuses them.
    pub edited: Vec<String>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.role.is_none()
            && self.databases.is_empty()
            && self.migrations.is_empty()
            && self.edited.is_empty()
    }
}

/// Reads [`survey_sql`]'s answer against the entry and its migration files.
pub fn pending(db: &Database, answer: &str, base: &Path) -> Result<Pending, String> {
    let mut roles = std::collections::HashSet::new();
    let mut dbs = std::collections::HashSet::new();
    let mut recorded = std::collections::HashMap::new();
    for line in answer.lines().map(str::trim) {
        if let Some(r) = line.strip_prefix("role ") {
            roles.insert(r);
        } else if let Some(d) = line.strip_prefix("db ") {
            dbs.insert(d);
        } else if let Some((name, sum)) = line
            .strip_prefix("migration ")
            .and_then(|m| m.rsplit_once(' '))
        {
            recorded.insert(name, sum);
        }
    }
    let mut p = Pending {
        role: (!roles.contains(db.owner.as_str())).then(|| db.owner.clone()),
        databases: std::iter::once(&db.name)
            .chain(&db.additional)
            .filter(|n| !dbs.contains(n.as_str()))
            .cloned()
            .collect(),
        ..Pending::default()
    };
    for rel in &db.migrations {
        let path = base.join(rel);
        let body = read_migration(rel, &path)?;
        match recorded.get(rel.as_str()) {
            None => p.migrations.push(rel.clone()),
            Some(sum) if *sum != checksum(&body) => p.edited.push(rel.clone()),
            Some(_) => {}
        }
    }
    Ok(p)
}

/// What [`ensure`] would do, in one read-only round trip to the PostgreSQL host.
pub fn survey(t: &SshTarget, psql: &str, base: &Path, db: &Database) -> Result<Pending, String> {
    if db.mode != Some(DbMode::NativeMigration) {
        return Ok(Pending::default());
    }
    let seen = run(
        t,
        psql,
        None,
        &survey_sql(db),
        &format!("looking at database {} and its migrations", db.name),
    )?;
    pending(db, &seen, base)
}

/// Whether [`ensure`] would do nothing, for many entries in one round trip: each entry's survey in
/// one psql script, its answer after a `section <i>` line. An entry whose
/// answer cannot be read, or all of them when the host or PostgreSQL does
/// not answer, reads as "not in place": its own step then looks again and
/// says what is wrong.
pub fn in_place_all(t: &SshTarget, psql: &str, base: &Path, dbs: &[&Database]) -> Vec<bool> {
    let native: Vec<usize> = (0..dbs.len())
        .filter(|&i| dbs[i].mode == Some(DbMode::NativeMigration))
        .collect();
    let mut sql = String::new();
    for &i in &native {
        sql.push_str(&format!("SELECT 'section {i}';\n{}", survey_sql(dbs[i])));
    }
    let answer = if native.is_empty() {
        Some(String::new())
    } else {
        run(
            t,
            psql,
            None,
            &sql,
            "looking at the databases and their migrations",
        )
        .ok()
    };
    let sections = answer.as_deref().map(sections).unwrap_or_default();
    dbs.iter()
        .enumerate()
        .map(|(i, db)| {
            if db.mode != Some(DbMode::NativeMigration) {
                return true;
            }
            sections
                .get(&i)
                .and_then(|seen| pending(db, seen, base).ok())
                .is_some_and(|p| p.is_empty())
        })
        .collect()
}

/// The answer of [`in_place_all`]'s script, by section.
fn sections(answer: &str) -> std::collections::HashMap<usize, String> {
    let mut out = std::collections::HashMap::new();
    let mut current: Option<usize> = None;
    for line in answer.lines() {
        if let Some(i) = line.trim().strip_prefix("section ") {
            current = i.parse().ok();
            if let Some(i) = current {
                out.insert(i, String::new());
            }
        } else if let Some(text) = current.and_then(|i| out.get_mut(&i)) {
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_sql_and_commands() {
        let db = Database {
            key: None,
            name: "wiki".into(),
            owner: "wiki".into(),
            host: None,
            port: 5432,
            mode: Some(DbMode::NativeMigration),
            migrations: vec![],
            additional: vec!["wiki_log".into()],
            password: None,
        };
        assert_eq!(
            ensure_sql(&db),
            "SELECT 'CREATE ROLE \"wiki\" LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'wiki')\\gexec\n\
             SELECT 'CREATE DATABASE \"wiki\" OWNER \"wiki\"' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'wiki')\\gexec\n\
             SELECT 'CREATE DATABASE \"wiki_log\" OWNER \"wiki\"' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'wiki_log')\\gexec\n"
        );
        assert_eq!(
            psql_command("runuser -u postgres -- psql", Some("wiki"), true),
            "runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -tA -d 'wiki' -f -"
        );
        assert_eq!(literal("it's"), "'it''s'");
        let with_migrations = Database {
            migrations: vec!["m/001.sql".into()],
            ..db.clone()
        };
        assert_eq!(
            survey_sql(&with_migrations),
            "SELECT 'role ' || rolname FROM pg_roles WHERE rolname = 'wiki';\n\
             SELECT 'db ' || datname FROM pg_database WHERE datname IN ('wiki', 'wiki_log');\n\
             SELECT EXISTS (SELECT FROM pg_database WHERE datname = 'wiki') AS nixmox_db \\gset\n\
             \\if :nixmox_db\n\\c 'wiki'\n\
             SELECT to_regclass('nixmox_migrations') IS NOT NULL AS nixmox_tracked \\gset\n\
             \\if :nixmox_tracked\n\
             SELECT 'migration ' || name || ' ' || checksum FROM nixmox_migrations;\n\
             \\endif\n\\endif\n"
        );
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert!(
            migration_sql("wiki", "001.sql", "abc", "CREATE TABLE t ();")
                .contains("SET LOCAL ROLE \"wiki\";\nCREATE TABLE t ();")
        );
    }

    #[test]
    fn sections_split_one_answer_by_entry() {
        let s = sections("section 0\nrole a\ndb a\nsection 2\nrole c\nmigration m/1.sql abc\n");
        assert_eq!(s[&0], "role a\ndb a\n");
        assert_eq!(s[&2], "role c\nmigration m/1.sql abc\n");
        assert!(!s.contains_key(&1));
        assert!(sections("").is_empty());
    }

    #[test]
    fn pending_reads_what_is_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("001.sql"), "CREATE TABLE a ();").expect("write");
        std::fs::write(dir.path().join("002.sql"), "CREATE TABLE b ();").expect("write");
        std::fs::write(dir.path().join("003.sql"), "CREATE TABLE c ();").expect("write");
        let db = Database {
            key: None,
            name: "wiki".into(),
            owner: "wiki".into(),
            host: None,
            port: 5432,
            mode: Some(DbMode::NativeMigration),
            migrations: vec!["001.sql".into(), "002.sql".into(), "003.sql".into()],
            additional: vec!["wiki_log".into()],
            password: None,
        };
        // A fresh server: everything.
        let fresh = pending(&db, "", dir.path()).expect("pending");
        assert_eq!(fresh.role.as_deref(), Some("wiki"));
        assert_eq!(fresh.databases, ["wiki", "wiki_log"]);
        assert_eq!(fresh.migrations, ["001.sql", "002.sql", "003.sql"]);
        // 001 applied as it is, 002 edited since it was applied, 003 new.
        let answer = format!(
            "role wiki\ndb wiki\ndb wiki_log\nmigration 001.sql {}\nmigration 002.sql 0000\n",
            checksum("CREATE TABLE a ();")
        );
        let p = pending(&db, &answer, dir.path()).expect("pending");
        assert_eq!(
            p,
            Pending {
                role: None,
                databases: vec![],
                migrations: vec!["003.sql".into()],
                edited: vec!["002.sql".into()],
            }
        );
        assert!(!p.is_empty());
        // A migration file that is gone is an error naming it.
        let gone = Database {
            migrations: vec!["nope.sql".into()],
            ..db
        };
        assert!(pending(&gone, "", dir.path())
            .expect_err("missing file")
            .starts_with("migration nope.sql"));
    }
}
