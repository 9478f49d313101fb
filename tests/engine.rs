//! `nixmox apply` end to end on lab hosts (as root): the core one at a time,
//! applications side by side up to --parallel, a failing application rolled
//! back (here: a first deploy, so reported as such), its dependent skipped,
//! the independent ones finished, exit status 1; then a no-op re-run.
//! The systems are a flake written by the test: each records when its
//! activation starts and ends, so concurrency is observed, not timed.

#[path = "support/script_stack.rs"]
mod script_stack;

use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};

const NET: &str = "10.215.0";

/// The run exited 0 (its output shown otherwise).
fn succeeded(o: &Output) {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

struct Stack {
    dir: tempfile::TempDir,
}

impl Stack {
    fn new() -> Stack {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        assert!(
            status
                .lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")),
            "these tests need root: they create lab hosts"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let mut manifest = script_stack::manifest(
            NET,
            "engine.test",
            &[("a", &[]), ("b", &["a"]), ("c", &[]), ("d", &[])],
            6,
        );
        // Service c has Terraform of its own, to prove the rollback of its workspace.
        manifest["services"]["c"]["interface"]["terraform"] =
            json!({"modules": ["tf/c"], "variables": {"label": "v1"}});
        manifest["terraform"] = json!({"retry": {"attempts": 1}});
        // A core service with Terraform of its own: planned and run around its deploy.
        manifest["core_services"]["dns"]["interface"]["terraform"] =
            json!({"modules": ["tf/dns"], "config": {"modules": ["tf/dns-config"]}});
        for (dir, out) in [("tf/dns", "zone"), ("tf/dns-config", "records")] {
            std::fs::create_dir_all(root.join(dir)).expect("mkdir");
            std::fs::write(
                root.join(dir).join("main.tf"),
                format!("resource \"terraform_data\" \"x\" {{ input = \"{out}\" }}\noutput \"{out}\" {{ value = terraform_data.x.output }}\n"),
            )
            .expect("write module");
        }
        // dns's config phase reads what its infra phase made: a run of
        // that phase alone must see it too.
        std::fs::write(
            root.join("tf/dns-config/main.tf"),
            "variable \"upstream_outputs\" {\n  type = any\n  default = {}\n}\nresource \"terraform_data\" \"x\" { input = \"records of ${try(var.upstream_outputs[\"dns-infra\"][\"zone\"], \"no zone\")}\" }\noutput \"records\" { value = terraform_data.x.output }\n",
        )
        .expect("write module");
        std::fs::create_dir_all(root.join("tf/c")).expect("mkdir");
        std::fs::write(
            root.join("tf/c/main.tf"),
            "variable \"label\" { type = string }\nresource \"terraform_data\" \"x\" { input = var.label }\noutput \"label\" { value = terraform_data.x.output }\n",
        )
        .expect("write module");
        std::fs::write(root.join("manifest.json"), manifest.to_string()).expect("write manifest");
        let log = root.join("activations.log");
        // switch-to-configuration: note start and end, serve /healthz unless this is the broken host "a".
        let script = format!(
            "#!/bin/sh\nset -e\nself=$(dirname \"$(dirname \"$(readlink -f \"$0\")\")\")\nname=$(hostname)\nip=$(ip -4 -o addr show eth0 | awk '{{print $4}}' | cut -d/ -f1)\n\
             echo \"start $name\" >> {log}\nsleep 1\nln -sfn \"$self\" /run/current-system\npkill -f \"http.server 8080 --bind $ip\" || true\n\
             if [ \"$name\" != a ] && [ \"$name\" != \"$(cat {broken} 2>/dev/null)\" ]; then mkdir -p /var/lib/lab/www && echo ok > /var/lib/lab/www/healthz && setsid -f python3 -m http.server 8080 --bind \"$ip\" --directory /var/lib/lab/www > /dev/null 2>&1 < /dev/null; fi\n\
             echo \"end $name\" >> {log}\n",
            log = log.display(),
            broken = root.join("broken").display()
        );
        std::fs::write(root.join("switch.sh"), script).expect("write switch");
        script_stack::write_flake(
            root,
            &[
                "dns",
                "postgresql",
                "caddy",
                "authentik",
                "a",
                "b",
                "c",
                "d",
            ],
            |_| "switch.sh",
        );
        let s = Stack { dir };
        let o = s.nixmox(&["lab", "up", "--no-systems"]);
        assert!(
            o.status.success(),
            "lab up: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        s
    }

    fn nixmox(&self, args: &[&str]) -> Output {
        let root = self.dir.path();
        Command::new(env!("CARGO_BIN_EXE_nixmox"))
            .args(args)
            .arg("-m")
            .arg(root.join("manifest.json"))
            .env("NIXMOX_LAB_DIR", root.join("lab"))
            .env("NIXMOX_STATE_DIR", root.join("state"))
            .env("NIXMOX_SSH_KEY", root.join("lab/ssh/id_ed25519"))
            .env(
                "NIXMOX_SSH_KNOWN_HOSTS_FILE",
                root.join("lab/ssh/known_hosts"),
            )
            .env("NO_COLOR", "1")
            .output()
            .expect("nixmox")
    }

    fn spawn(&self, args: &[&str]) -> std::process::Child {
        let root = self.dir.path();
        Command::new(env!("CARGO_BIN_EXE_nixmox"))
            .args(args)
            .arg("-m")
            .arg(root.join("manifest.json"))
            .env("NIXMOX_LAB_DIR", root.join("lab"))
            .env("NIXMOX_STATE_DIR", root.join("state"))
            .env("NIXMOX_SSH_KEY", root.join("lab/ssh/id_ed25519"))
            .env(
                "NIXMOX_SSH_KNOWN_HOSTS_FILE",
                root.join("lab/ssh/known_hosts"),
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("nixmox")
    }

    /// A command on a lab host of this stack, as root with the lab's key.
    fn ssh(&self, ip: &str, command: &str) -> Output {
        let lab = self.dir.path().join("lab/ssh");
        Command::new("ssh")
            .arg("-i")
            .arg(lab.join("id_ed25519"))
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=accept-new",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                lab.join("known_hosts").display()
            ))
            .arg(format!("root@{ip}"))
            .arg(command)
            .output()
            .expect("ssh")
    }

    /// The most activations that were running at the same moment, among `names`.
    fn max_overlap(&self, names: &[&str]) -> usize {
        let text =
            std::fs::read_to_string(self.dir.path().join("activations.log")).unwrap_or_default();
        let (mut now, mut max) = (0usize, 0usize);
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            let (Some(what), Some(name)) = (parts.next(), parts.next()) else {
                continue;
            };
            if !names.contains(&name) {
                continue;
            }
            if what == "start" {
                now += 1;
                max = max.max(now);
            } else {
                now = now.saturating_sub(1);
            }
        }
        max
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.nixmox(&["lab", "down"]);
    }
}

/// One number from the state database, read the way another process reads
/// it while nixmox writes (its own SQLite, never a tool on PATH whose SQLite
/// may not see a WAL database's latest writes).
fn sqlite_count(db: &Path, query: &str) -> i64 {
    let Ok(conn) = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) else {
        return 0;
    };
    let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
    conn.query_row(query, [], |r| r.get(0)).unwrap_or(0)
}

fn events(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn status_of<'a>(events: &'a [Value], step: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter(|e| e["step"] == step)
        .filter_map(|e| e["status"].as_str())
        .collect()
}

#[test]
fn apply_rolls_back_skips_dependents_and_finishes_the_rest() {
    let s = Stack::new();
    let o = s.nixmox(&["apply", "--json", "--parallel", "4"]);
    let ev = events(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a failed service must fail the run:\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
    for core in ["dns", "postgresql", "caddy", "authentik"] {
        assert_eq!(
            status_of(&ev, &format!("nix:core:{core}")),
            ["started", "changed"],
            "{core}"
        );
    }
    assert_eq!(
        s.max_overlap(&["dns", "postgresql", "caddy", "authentik"]),
        1,
        "the core deploys one host at a time"
    );
    // dns's own Terraform: its infra phase before its deploy, its config
    // phase after its gate, both before tf:auth-core; its env file carries
    // its own infra outputs.
    let first = |step: &str, status: &str| {
        ev.iter()
            .position(|e| e["step"] == step && e["status"] == status)
            .unwrap_or_else(|| panic!("no {status} event for {step}"))
    };
    assert_eq!(
        status_of(&ev, "tf:service-infra:dns"),
        ["started", "changed"]
    );
    assert_eq!(
        status_of(&ev, "tf:service-config:dns"),
        ["started", "changed"]
    );
    assert!(first("tf:service-infra:dns", "changed") < first("nix:core:dns", "started"));
    assert!(first("health:dns", "unchanged") < first("tf:service-config:dns", "started"));
    assert!(first("tf:service-config:dns", "changed") < first("nix:core:postgresql", "started"));
    assert!(first("tf:service-config:dns", "changed") < first("tf:auth-core", "started"));
    let env = s.ssh(&format!("{NET}.2"), "cat /run/nixmox/env");
    assert!(
        String::from_utf8_lossy(&env.stdout).contains("=zone"),
        "dns's env file lacks its own infra outputs: {}",
        String::from_utf8_lossy(&env.stdout)
    );
    assert!(
        s.max_overlap(&["a", "c", "d"]) >= 2,
        "independent applications ran one by one"
    );
    let a = status_of(&ev, "nix:service-config:a");
    assert_eq!(a, ["started", "failed"]);
    let failure = ev
        .iter()
        .find(|e| e["step"] == "nix:service-config:a" && e["status"] == "failed")
        .expect("failure event");
    let detail = failure["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("host a (10.215.0.10)")
            && detail.contains("readiness")
            && detail.contains("first deploy"),
        "{detail}"
    );
    assert_eq!(status_of(&ev, "tf:service-infra:b"), ["skipped"]);
    let c_events: Vec<&Value> = ev.iter().filter(|e| e["service"] == "c").collect();
    assert_eq!(
        status_of(&ev, "verify:c"),
        ["started", "unchanged"],
        "{c_events:#?}"
    );
    assert_eq!(status_of(&ev, "verify:d"), ["started", "unchanged"]);
    let summary = ev
        .iter()
        .find(|e| e["event"] == "summary")
        .expect("summary");
    assert_eq!(summary["ok"], false);
    assert!(
        summary["services"]["b"]
            .as_str()
            .unwrap_or_default()
            .starts_with("skipped: depends on a"),
        "{summary}"
    );
    assert_eq!(summary["services"]["c"], "deployed and verified");

    // The run's own log: every event, and the summary.
    let runs = s.dir.path().join("state/runs");
    let first_run = std::fs::read_dir(&runs)
        .expect("runs dir")
        .flatten()
        .map(|e| e.path())
        .min()
        .expect("a run log");
    let logged = std::fs::read_to_string(first_run.join("events.jsonl")).expect("events.jsonl");
    assert_eq!(
        logged.lines().count(),
        ev.iter().filter(|e| e["event"] == "step").count()
    );
    assert!(first_run.join("summary.json").is_file());

    // One at a time when asked.
    let log = s.dir.path().join("activations.log");
    let _ = std::fs::remove_file(&log);
    let o = s.nixmox(&["apply", "--json", "--parallel", "1", "--only", "c,d"]);
    succeeded(&o);
    let ev = events(&o);
    assert!(
        ev.iter()
            .filter(|e| e["event"] == "step" && e["status"] == "changed")
            .count()
            == 0,
        "a re-run changed something: {ev:?}"
    );
    assert!(
        !Path::new(&log).exists(),
        "a no-op re-run activated a system"
    );
    let summary = ev
        .iter()
        .find(|e| e["event"] == "summary")
        .expect("summary");
    assert_eq!(summary["services"]["c"], "unchanged, verified");
    assert_eq!(summary["services"]["dns"], "unchanged");

    // --force activates a current host again, and only that one.
    let o = s.nixmox(&["apply", "--json", "--only", "c,d", "--force", "c"]);
    succeeded(&o);
    let ev = events(&o);
    assert_eq!(
        status_of(&ev, "nix:service-config:c"),
        ["started", "changed"]
    );
    assert_eq!(
        status_of(&ev, "nix:service-config:d"),
        ["started", "unchanged"]
    );
    let activations = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        activations
            .lines()
            .filter(|l| l.starts_with("start "))
            .count(),
        1,
        "{activations}"
    );
    let _ = std::fs::remove_file(&log);

    // The journal: status shows the last run step by step.
    let o = s.nixmox(&["status", "--json"]);
    let st: Value = serde_json::from_slice(&o.stdout).expect("status JSON");
    assert_eq!(st["run"]["status"], "ok", "{st}");
    assert!(
        st["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .any(|x| x["step"] == "verify:d" && x["status"] == "unchanged"),
        "{st}"
    );

    // A second apply while one runs: it fails at once, naming the holder.
    let first = s.spawn(&["apply", "--json", "--only", "c,d"]);
    let db = s.dir.path().join("state/state.db");
    let held = (0..300).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        sqlite_count(&db, "select count(*) from run_lock") == 1
    });
    assert!(held, "the first apply never took the lock");
    let o = s.nixmox(&["apply", "--only", "c,d"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("holds the lock") && err.contains("nixmox apply") && err.contains("pid"),
        "{err}"
    );
    let out = first.wait_with_output().expect("first apply");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Killed in the middle of the core's deploy, the next apply resumes and converges.
    let switch = s.dir.path().join("switch.sh");
    std::fs::write(
        &switch,
        std::fs::read_to_string(&switch).expect("read") + "# v2\n",
    )
    .expect("write");
    let mut victim = s.spawn(&["apply", "--json", "--only", "c,d", "--parallel", "1"]);
    let in_flight = (0..1000).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        sqlite_count(&db, "select count(*) from journal where step like 'nix:core:%' and status = 'started' and run = (select max(id) from runs)") >= 2
    });
    assert!(in_flight, "never saw the core being deployed");
    victim.kill().expect("SIGKILL");
    let killed = victim.wait_with_output().expect("wait");
    let o = s.nixmox(&["apply", "--json", "--only", "c,d"]);
    let ev = events(&o);
    succeeded(&o);
    let resume = ev
        .iter()
        .find(|e| e["event"] == "resume")
        .unwrap_or_else(|| {
            panic!(
                "the interrupted run is not reported; the killed run ({:?}) said:\n{}{}",
                killed.status,
                String::from_utf8_lossy(&killed.stdout),
                String::from_utf8_lossy(&killed.stderr)
            )
        });
    assert!(
        resume["in_flight"]
            .as_str()
            .unwrap_or_default()
            .starts_with("nix:core:"),
        "{resume}"
    );
    let again = s.nixmox(&["apply", "--json", "--only", "c,d"]);
    assert!(
        events(&again).iter().all(|e| e["status"] != "changed"),
        "not converged: a further apply changed something"
    );

    // Without --json and without a terminal: plain prefixed lines.
    let o = s.nixmox(&["apply", "--only", "c"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.contains("[stack] tf:infra: ok (") && out.contains("[c] verify: ok ("),
        "{out}"
    );

    // --skip-phase and --phase choose steps; the rest are reported as not selected.
    let o = s.nixmox(&["apply", "--json", "--only", "c", "--skip-phase", "verify"]);
    let ev = events(&o);
    succeeded(&o);
    assert_eq!(status_of(&ev, "verify:c"), ["skipped"]);
    assert_eq!(
        status_of(&ev, "nix:service-config:c"),
        ["started", "unchanged"]
    );
    let o = s.nixmox(&[
        "apply",
        "--json",
        "--only",
        "c",
        "--phase",
        "tf:infra,tf:auth-core",
    ]);
    let ev = events(&o);
    succeeded(&o);
    assert_eq!(status_of(&ev, "nix:core:dns"), ["skipped"]);
    assert_eq!(status_of(&ev, "nix:service-config:c"), ["skipped"]);
    assert_eq!(status_of(&ev, "tf:infra"), ["started", "unchanged"]);
    // A phase run alone plans with the outputs its upstream workspaces
    // hold: dns's config phase, without its infra phase in the run, still
    // sees the zone and has nothing to change.
    let o = s.nixmox(&[
        "apply",
        "--json",
        "--only",
        "dns",
        "--phase",
        "tf:service-config",
    ]);
    let ev = events(&o);
    succeeded(&o);
    assert_eq!(status_of(&ev, "tf:service-infra:dns"), ["skipped"]);
    assert_eq!(
        status_of(&ev, "tf:service-config:dns"),
        ["started", "unchanged"]
    );
    let o = s.nixmox(&["outputs", "--json"]);
    succeeded(&o);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("records of zone"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // c fails after its Terraform changed: the workspace goes back to its last good configuration.
    let path = s.dir.path().join("manifest.json");
    let good = std::fs::read_to_string(&path).expect("read manifest");
    std::fs::write(&path, good.replace("\"label\":\"v1\"", "\"label\":\"v2\""))
        .expect("write manifest");
    std::fs::write(s.dir.path().join("broken"), "c").expect("write");
    let _ = Command::new("ip")
        .args([
            "netns",
            "exec",
            "nixmox-c",
            "pkill",
            "-f",
            "http.server 8080",
        ])
        .output();
    let o = s.nixmox(&["apply", "--json", "--only", "c"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let ev = events(&o);
    let failed = ev
        .iter()
        .find(|e| e["status"] == "failed" && e["service"] == "c")
        .expect("c failed");
    let detail = failed["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("terraform c-infra: rolled back to its last good configuration"),
        "{detail}"
    );
    let o = s.nixmox(&["outputs", "--json"]);
    let outs: Value = serde_json::from_slice(&o.stdout).expect("outputs JSON");
    assert_eq!(
        outs["workspaces"]["c-infra"]["label"]["value"], "v1",
        "{outs}"
    );
    std::fs::write(&path, good).expect("restore manifest");

    // A core service failing its gate halts the run before tf:auth-core.
    std::fs::write(s.dir.path().join("broken"), "caddy").expect("write");
    let _ = Command::new("ip")
        .args([
            "netns",
            "exec",
            "nixmox-caddy",
            "pkill",
            "-f",
            "http.server 8080",
        ])
        .output();
    let o = s.nixmox(&["apply", "--json", "--only", "c"]);
    let ev = events(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(status_of(&ev, "nix:core:caddy").last(), Some(&"failed"));
    assert!(
        status_of(&ev, "tf:auth-core").is_empty(),
        "tf:auth-core ran after a core failure"
    );
    assert!(
        status_of(&ev, "nix:core:authentik").is_empty(),
        "the core went on after a failure"
    );
    let summary = ev
        .iter()
        .find(|e| e["event"] == "summary")
        .expect("summary");
    assert_eq!(summary["services"]["c"], "skipped: the run halted");
}
