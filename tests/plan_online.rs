//! `plan` on the running lab, as root: it tells the whole truth and changes
//! nothing. A clean stack plans with exit 0; a new application version makes
//! it exit 2 naming the host and the closure difference (the package's old
//! and new version); a new migration is named; a Terraform variable that
//! moves an output shows the workspace downstream as re-planned; after
//! `apply`, exit 0 again; a host that does not answer is unknown (exit 2)
//! within the SSH bound; and through all of it, no host's system moved.

use serde_json::Value;
use std::time::{Duration, Instant};

#[path = "support/lab_stack.rs"]
#[allow(dead_code)] // spawn() serves the kill test
mod lab_stack;
use lab_stack::{text, Lab};

fn plan_json(lab: &Lab) -> (Option<i32>, Value) {
    let o = lab.nixmox(&["plan", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("plan --json: {e}\n{}", text(&o)));
    (o.status.code(), v)
}

fn host<'a>(v: &'a Value, service: &str) -> &'a Value {
    v["nixos"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["service"] == service))
        .unwrap_or_else(|| panic!("no host {service} in {v:#}"))
}

/// The system each application host runs now, read on the host itself.
fn systems(lab: &Lab) -> Vec<String> {
    ["10.213.0.10", "10.213.0.11", "10.213.0.12"]
        .iter()
        .map(|ip| {
            let o = lab.ssh(ip, "readlink -f /run/current-system");
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        })
        .collect()
}

fn edit(lab: &Lab, from: &str, to: &str) -> String {
    let before = std::fs::read_to_string(lab.manifest()).expect("read manifest");
    let after = before.replacen(from, to, 1);
    assert_ne!(
        before, after,
        "the lab manifest changed shape: update this test"
    );
    std::fs::write(lab.manifest(), &after).expect("write manifest");
    before
}

#[test]
fn plan_tells_the_whole_truth_and_changes_nothing() {
    lab_stack::require_root("the online plan test");
    let lab = Lab::new();
    let o = lab.nixmox(&["lab", "up"]);
    assert!(o.status.success(), "lab up: {}", text(&o));

    // Nothing to do: exit 0, every host and database unchanged.
    let (code, v) = plan_json(&lab);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(
        (v["version"].clone(), v["changes"].clone()),
        (2.into(), false.into())
    );
    let hosts = v["nixos"].as_array().expect("nixos entries");
    assert_eq!(hosts.len(), 7, "{v:#}");
    assert!(hosts.iter().all(|h| h["state"] == "unchanged"), "{v:#}");
    assert_eq!(v["databases"][0]["state"], "unchanged", "{v:#}");
    let running = systems(&lab);

    // A new version of wiki: exit 2, the host named with its closure diff.
    let good = edit(&lab, "version = \"1.4\";", "version = \"1.5\";");
    let o = lab.nixmox(&["plan"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    let wiki_line = out
        .lines()
        .find(|l| l.trim_start().starts_with("wiki ") && l.contains("wiki.nixmox.test"))
        .unwrap_or_else(|| panic!("no line for host wiki:\n{out}"));
    assert!(wiki_line.contains("new system"), "{out}");
    assert!(out.contains("[U] wiki  1.4 → 1.5"), "{out}");
    assert!(out.contains("Changes pending: 1 host."), "{out}");
    let (code, v) = plan_json(&lab);
    assert_eq!(code, Some(2));
    let wiki = host(&v, "wiki");
    assert_eq!(wiki["state"], "changes", "{wiki:#}");
    assert_eq!(
        wiki["closure"]["changed"],
        serde_json::json!([{"name": "wiki", "before": ["1.4"], "after": ["1.5"]}])
    );
    assert_ne!(wiki["current"], wiki["wanted"]);
    assert_eq!(wiki["env"]["state"], "unchanged", "{wiki:#}");
    for other in ["dns", "postgresql", "caddy", "authentik", "notes", "dash"] {
        assert_eq!(host(&v, other)["state"], "unchanged", "{other}: {v:#}");
    }

    // A new migration: named under the database it runs in.
    let migration = lab.copy.path().join("migrations/wiki/002-tags.sql");
    std::fs::write(&migration, "CREATE TABLE tags (name text);\n").expect("write migration");
    edit(
        &lab,
        "migrations = [ \"migrations/wiki/001-pages.sql\" ];",
        "migrations = [ \"migrations/wiki/001-pages.sql\" \"migrations/wiki/002-tags.sql\" ];",
    );
    let (code, v) = plan_json(&lab);
    assert_eq!(code, Some(2));
    let db = &v["databases"][0];
    assert_eq!(
        (db["state"].clone(), db["migrations"].clone()),
        (
            "changes".into(),
            serde_json::json!(["migrations/wiki/002-tags.sql"])
        ),
        "{db:#}"
    );

    // Nothing of that was done by planning it.
    assert_eq!(systems(&lab), running, "plan moved a host's system");

    // apply does it all; then plan has nothing left.
    let o = lab.nixmox(&["apply", "-y"]);
    assert!(o.status.success(), "apply: {}", text(&o));
    let (code, v) = plan_json(&lab);
    assert_eq!(code, Some(0), "{v:#}");
    assert_ne!(
        systems(&lab)[0],
        running[0],
        "wiki did not get its new system"
    );

    // A Terraform variable whose output moves: infra changes an output,
    // auth-core (which receives it) is re-planned after it, never "no changes".
    let infra = lab.copy.path().join("terraform/infra/main.tf");
    let mut tf = std::fs::read_to_string(&infra).expect("read infra");
    tf.push_str(
        "\nvariable \"label\" {\n  type    = string\n  default = \"a\"\n}\n\
         output \"label\" {\n  value = var.label\n}\n",
    );
    std::fs::write(&infra, tf).expect("write infra");
    edit(
        &lab,
        "infra.modules = [ \"terraform/infra\" ];",
        "infra = { modules = [ \"terraform/infra\" ]; variables.label = \"a\"; };",
    );
    let o = lab.nixmox(&["apply", "-y"]);
    assert!(o.status.success(), "apply: {}", text(&o));
    assert_eq!(plan_json(&lab).0, Some(0));
    edit(&lab, "variables.label = \"a\";", "variables.label = \"b\";");
    let o = lab.nixmox(&["plan"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    let auth_core = out
        .lines()
        .find(|l| l.contains("tf:auth-core"))
        .unwrap_or_else(|| panic!("no tf:auth-core line:\n{out}"));
    assert!(auth_core.contains("re-planned after infra"), "{out}");
    let (_, v) = plan_json(&lab);
    let ws = v["terraform"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["workspace"] == "auth-core"))
        .expect("auth-core");
    assert_eq!(
        (ws["state"].clone(), ws["after"].clone()),
        ("replan".into(), serde_json::json!(["infra"])),
        "{ws:#}"
    );
    edit(&lab, "variables.label = \"b\";", "variables.label = \"a\";");

    // A host that does not answer (its sshd stopped): unknown, exit 2, soon.
    let pid = std::process::Command::new("pgrep")
        .args([
            "-f",
            &format!(
                "sshd -D -e -f {}/hosts/dash/sshd_config",
                lab.lab_dir.path().display()
            ),
        ])
        .output()
        .expect("pgrep");
    let pid = String::from_utf8_lossy(&pid.stdout).trim().to_string();
    assert!(!pid.is_empty(), "no sshd of host dash");
    let stop = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill")
    };
    assert!(stop("-STOP").success());
    let started = Instant::now();
    // On a connection of its own: the one kept from the last run is served
    // by a child of sshd that still answers.
    let o = lab
        .command(&["plan", "--json"])
        .env("NIXMOX_SSH_PERSIST", "0")
        .output()
        .expect("plan");
    let (code, v): (_, Value) = (
        o.status.code(),
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("plan --json: {e}\n{}", text(&o))),
    );
    let took = started.elapsed();
    assert!(stop("-CONT").success());
    assert_eq!(code, Some(2), "{v:#}");
    let dash = host(&v, "dash");
    assert_eq!(dash["state"], "unknown", "{dash:#}");
    assert!(
        dash["reasons"][0]
            .as_str()
            .unwrap_or_default()
            .contains("not reachable"),
        "{dash:#}"
    );
    // The SSH bound (connect timeout 10 s, the look's own bound 20 s), not a hang.
    assert!(took < Duration::from_secs(90), "plan took {took:?}");
    std::fs::write(lab.manifest(), good).expect("restore manifest");
}
