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
        let body = std::fs::read_to_string(&path)
            .map_err(|e| format!("migration {rel} ({}): {e}", path.display()))?;
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

/// The read-only psql script of [`in_place`]: the owner, the databases, and
/// the recorded migrations of the main database (`\\c` moves to it).
pub fn in_place_sql(db: &Database) -> String {
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
            "\\c {}\nSELECT 'migration ' || name || ' ' || checksum FROM nixmox_migrations;\n",
            literal(&db.name)
        ));
    }
    sql
}

/// True when [`ensure`] would do nothing: the owner and every database
/// exist and every listed migration is recorded with its checksum. One
/// read-only round trip; an error (a missing database, no tracking table)
/// reads as "not in place", and `ensure` then says what is wrong.
pub fn in_place(t: &SshTarget, psql: &str, base: &Path, db: &Database) -> Result<bool, String> {
    if db.mode != Some(DbMode::NativeMigration) {
        return Ok(true);
    }
    let Ok(seen) = run(t, psql, None, &in_place_sql(db), "looking at the databases") else {
        return Ok(false);
    };
    let lines: std::collections::HashSet<&str> = seen.lines().map(str::trim).collect();
    if !lines.contains(format!("role {}", db.owner).as_str())
        || std::iter::once(&db.name)
            .chain(&db.additional)
            .any(|n| !lines.contains(format!("db {n}").as_str()))
    {
        return Ok(false);
    }
    for rel in &db.migrations {
        let path = base.join(rel);
        let body = std::fs::read_to_string(&path)
            .map_err(|e| format!("migration {rel} ({}): {e}", path.display()))?;
        if !lines.contains(format!("migration {rel} {}", checksum(&body)).as_str()) {
            return Ok(false);
        }
    }
    Ok(true)
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
        assert_eq!(
            in_place_sql(&Database {
                migrations: vec!["m/001.sql".into()],
                ..db.clone()
            }),
            "SELECT 'role ' || rolname FROM pg_roles WHERE rolname = 'wiki';\n\
             SELECT 'db ' || datname FROM pg_database WHERE datname IN ('wiki', 'wiki_log');\n\
             \\c 'wiki'\nSELECT 'migration ' || name || ' ' || checksum FROM nixmox_migrations;\n"
        );
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert!(
            migration_sql("wiki", "001.sql", "abc", "CREATE TABLE t ();")
                .contains("SET LOCAL ROLE \"wiki\";\nCREATE TABLE t ();")
        );
    }
}
