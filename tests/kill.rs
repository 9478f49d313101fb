//! Kill anywhere, on the lab stack (as root): `nixmox apply` is killed with
//! SIGKILL at more than twenty points across full applies — at step
//! boundaries and in the middle of steps: a Terraform apply, a database
//! migration, a build and copy, an activation, a health wait, a verify. Only
//! the orchestrator is killed; what it started (Terraform, an activation on a
//! host, a psql session) goes on, as it would. Then:
//!
//! - the next apply reports the interrupted run and converges: exit 0, every
//!   application verified;
//! - the apply after that changes nothing (a converged stack is a fixed point);
//! - no Terraform resource and no migration was applied twice: each round's
//!   Terraform provisioner ran once, each round's migration row exists once;
//! - Terraform state is intact (the workspace plans clean) and `status`
//!   reads the journal and state without complaint;
//! - no saved plan or captured Terraform output of a killed run (both can
//!   hold secrets) is left in /dev/shm.
//!
//! Part one kills one apply after another through the first deploy of the
//! whole stack (core, auth-core, applications), then converges. Part two is
//! ten rounds of changes (every application's version, a new migration, a
//! Terraform variable), each apply killed at one point and then converged.

#[path = "support/lab_stack.rs"]
#[allow(dead_code)]
mod lab_stack;

use lab_stack::{text, Lab};
use serde_json::Value;
use std::io::BufRead;
use std::process::Command;
use std::time::{Duration, Instant};

/// When to kill: `delay` after the first event of `step` that is `started`
/// (`at_start`) or that finishes it (`!at_start`).
struct Point {
    step: &'static str,
    at_start: bool,
    delay_ms: u64,
}

const fn mid(step: &'static str, delay_ms: u64) -> Point {
    Point {
        step,
        at_start: true,
        delay_ms,
    }
}

const fn after(step: &'static str) -> Point {
    Point {
        step,
        at_start: false,
        delay_ms: 0,
    }
}

/// Through the first deploy of the stack, one apply after another.
const FIRST_DEPLOY: [Point; 15] = [
    mid("tf:infra", 150),
    mid("nix:core:dns", 250),
    after("nix:core:dns"),
    mid("nix:core:postgresql", 700),
    after("health:postgresql"),
    mid("nix:core:caddy", 400),
    mid("nix:core:authentik", 900),
    mid("tf:auth-core", 400),
    after("tf:auth-core"),
    mid("tf:service-infra:wiki", 100),
    mid("nix:service-config:wiki", 300),
    mid("nix:service-config:dash", 800),
    mid("verify:wiki", 150),
    mid("nix:service-config:notes", 500),
    after("verify:dash"),
];

/// One per round of changes.
const ROUNDS: [Point; 10] = [
    mid("tf:service-infra:dash", 500),
    mid("tf:service-infra:wiki", 300),
    mid("nix:service-config:wiki", 100),
    mid("nix:service-config:dash", 700),
    mid("nix:service-config:notes", 1200),
    after("tf:service-infra:dash"),
    after("nix:service-config:wiki"),
    mid("verify:wiki", 100),
    after("tf:auth-core"),
    after("nix:core:authentik"),
];

/// Runs `apply --json` and SIGKILLs it at `p`; true when the kill landed
/// before the run ended by itself.
fn apply_killed_at(lab: &Lab, p: &Point) -> bool {
    let mut child = lab.spawn(&["apply", "--json", "--yes"]);
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str(&line) {
                if tx.send(v).is_err() {
                    break;
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let Ok(e) = rx.recv_timeout(Duration::from_millis(200)) else {
            if child.try_wait().expect("wait").is_some() {
                return false;
            }
            assert!(Instant::now() < deadline, "apply never reached {}", p.step);
            continue;
        };
        let finished = matches!(
            e["status"].as_str(),
            Some("changed" | "unchanged" | "failed" | "skipped")
        );
        if e["step"] == p.step
            && (if p.at_start {
                e["status"] == "started"
            } else {
                finished
            })
        {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(p.delay_ms));
    if child.try_wait().expect("wait").is_some() {
        return false;
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    true
}

fn events(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn psql(sql: &str) -> String {
    let o = Command::new("psql")
        .args(["-h", "10.213.0.3", "-U", "wiki", "-d", "wiki", "-tAc", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("psql");
    assert!(o.status.success(), "{sql}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// An apply converges after a kill, the next changes nothing, and nothing
/// was applied twice up to `round`.
fn converges(lab: &Lab, round: u32, killed: bool, what: &str) {
    let o = lab.nixmox(&["apply", "--json", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{what}: converge:\n{}", text(&o));
    let ev = events(&o.stdout);
    if killed {
        assert!(
            ev.iter().any(|e| e["event"] == "resume"),
            "{what}: the interrupted run is not reported"
        );
    }
    for app in ["wiki", "notes", "dash"] {
        assert!(
            ev.iter().any(|e| e["step"] == format!("verify:{app}")
                && matches!(e["status"].as_str(), Some("changed" | "unchanged"))),
            "{what}: {app} not verified:\n{}",
            text(&o)
        );
    }
    let again = lab.nixmox(&["apply", "--json", "--yes"]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{what}: again:\n{}",
        text(&again)
    );
    let changed: Vec<String> = events(&again.stdout)
        .iter()
        .filter(|e| e["status"] == "changed")
        .filter_map(|e| e["step"].as_str().map(str::to_string))
        .collect();
    assert!(
        changed.is_empty(),
        "{what}: not converged, changed again: {changed:?}"
    );

    // Each round's migration row once; each migration recorded once.
    let rows = psql("SELECT coalesce(string_agg(n::text, ',' ORDER BY n), '') FROM rounds");
    let want: Vec<String> = (0..=round).map(|r| r.to_string()).collect();
    assert_eq!(rows, want.join(","), "{what}: migration rows");
    assert_eq!(
        psql("SELECT count(*) FROM nixmox_migrations"),
        (round + 2).to_string(),
        "{what}: recorded migrations"
    );
    // Each round's Terraform provisioner ran once.
    let log = std::fs::read_to_string(lab.lab_dir.path().join("rounds.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let want: Vec<String> = (0..=round).map(|r| format!("round {r}")).collect();
    assert_eq!(lines, want, "{what}: Terraform provisioner runs");
    // Nothing a killed run wrote for Terraform (saved plans, captured output:
    // both can hold secrets) outlives it.
    for e in std::fs::read_dir("/dev/shm")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name
            .strip_prefix("nixmox-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        {
            assert!(
                std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "{what}: /dev/shm/{name} left behind by a run that is gone"
            );
        }
    }
    // State and journal read cleanly; every service live.
    let st = lab.nixmox(&["status", "--json"]);
    let st: Value = serde_json::from_slice(&st.stdout).expect("status JSON");
    assert_eq!(st["ok"], true, "{what}: status {st:#}");
}

/// Round `r`: every application's version, a migration, the Terraform variable.
fn change(lab: &Lab, r: u32) {
    let path = lab.manifest();
    let mut m = std::fs::read_to_string(&path).expect("manifest");
    for old in ["1.4", "2.0", "0.9"]
        .iter()
        .map(|v| v.to_string())
        .chain((0..r).map(|k| format!("r{k}")))
    {
        m = m.replace(
            &format!("version = \"{old}\";"),
            &format!("version = \"r{r}\";"),
        );
    }
    let list: Vec<String> = std::iter::once("\"migrations/wiki/001-pages.sql\"".to_string())
        .chain((0..=r).map(|k| format!("\"migrations/wiki/round-{k:03}.sql\"")))
        .collect();
    let start = m.find("migrations = [").expect("migrations");
    let end = start + m[start..].find("];").expect("end of migrations") + 2;
    m.replace_range(start..end, &format!("migrations = [ {} ];", list.join(" ")));
    m = m.replace(
        &format!("variables.round = \"{}\";", r.saturating_sub(1)),
        &format!("variables.round = \"{r}\";"),
    );
    std::fs::write(&path, m).expect("write manifest");
    std::fs::write(
        lab.copy.path().join(format!("migrations/wiki/round-{r:03}.sql")),
        format!(
            "CREATE TABLE IF NOT EXISTS rounds (n int NOT NULL);\nSELECT pg_sleep(0.5);\nINSERT INTO rounds (n) VALUES ({r});\n"
        ),
    )
    .expect("write migration");
}

#[test]
fn killed_anywhere_the_next_apply_converges() {
    lab_stack::require_root("the kill test");
    let lab = Lab::new();
    // dash gets a Terraform workspace whose provisioner notes each run.
    std::fs::create_dir_all(lab.copy.path().join("tf/round")).expect("mkdir");
    std::fs::write(
        lab.copy.path().join("tf/round/main.tf"),
        "variable \"round\" { type = string }\n\
         resource \"terraform_data\" \"round\" {\n  triggers_replace = var.round\n\
           provisioner \"local-exec\" {\n    command = \"sleep 1 && echo \\\"round ${var.round}\\\" >> \\\"$NIXMOX_LAB_DIR/rounds.log\\\"\"\n  }\n}\n\
         output \"round\" { value = terraform_data.round.output }\n",
    )
    .expect("write module");
    let m = std::fs::read_to_string(lab.manifest()).expect("manifest");
    let anchor = "        health = {\n          readiness = \"http://10.213.0.12:8080/healthz\";";
    assert!(
        m.contains(anchor),
        "the lab manifest changed: update the kill test"
    );
    std::fs::write(
        lab.manifest(),
        m.replacen(
            anchor,
            &format!("        terraform = {{ modules = [ \"tf/round\" ]; variables.round = \"0\"; }};\n{anchor}"),
            1,
        ),
    )
    .expect("write manifest");
    change(&lab, 0);

    let up = lab.nixmox(&["lab", "up", "--no-systems"]);
    assert_eq!(up.status.code(), Some(0), "lab up:\n{}", text(&up));

    let mut kills = 0;
    for p in &FIRST_DEPLOY {
        kills += usize::from(apply_killed_at(&lab, p));
    }
    converges(&lab, 0, kills > 0, "first deploy");
    let first = kills;

    for (r, p) in (1..).zip(&ROUNDS) {
        change(&lab, r);
        let killed = apply_killed_at(&lab, p);
        kills += usize::from(killed);
        converges(&lab, r, killed, &format!("round {r}, killed at {}", p.step));
    }
    eprintln!(
        "kills that landed: {first} of {} through the first deploy, {} of {} in rounds",
        FIRST_DEPLOY.len(),
        kills - first,
        ROUNDS.len()
    );
    assert!(
        kills >= 20,
        "only {kills} kills landed before their run ended"
    );
}
