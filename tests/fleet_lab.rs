//! Fleet features on the lab (as root): selection by tag and glob on every
//! command that selects, `exec` on three hosts with one failing and one
//! bound in time, and rolling deploys — `--batch 1` never has two hosts
//! switching at once (read from the event stream), a failing canary leaves
//! the rest of its wave not started and reported, `--max-failures` starts
//! no host after its failure; and systems built on their host and on
//! another lab host, proven from inside (each lab system records the
//! addresses of the network namespace it was built in). The lab's applications: wiki (@docs @web),
//! notes (@docs, needs wiki), dash (@ops); waves [dash, wiki], [notes].

use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Output;

#[path = "support/lab_stack.rs"]
#[allow(dead_code)]
mod lab_stack;
use lab_stack::{text, Lab};

#[path = "support/faults.rs"]
#[allow(dead_code)]
mod faults;
use faults::{events, set_version};

/// `services.<service>.nixos.build_host` in the lab manifest.
fn set_build_host(lab: &Lab, service: &str, build_host: &str) {
    let path = lab.manifest();
    let m = std::fs::read_to_string(&path).expect("manifest");
    let head = format!("    {service} = {{\n");
    // After the block's first line (its version), where set_version still finds it.
    let block = m.find(&head).expect("service block") + head.len();
    let at = block + m[block..].find('\n').expect("a line") + 1;
    let mut m = m;
    m.insert_str(at, &format!("      nixos.build_host = \"{build_host}\";\n"));
    std::fs::write(&path, m).expect("write manifest");
}

/// `nixmox -m <lab manifest> exec <args>`: the manifest before the command after `--`.
fn exec(lab: &Lab, args: &[&str]) -> Output {
    let mut c = lab.command(&[]);
    c.arg("exec").args(args);
    c.output().expect("nixmox exec")
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(o)))
}

/// The applications whose own steps an apply's events name.
fn apps_touched(ev: &[Value]) -> BTreeSet<String> {
    ev.iter()
        .filter(|e| e["phase"] == "nix:service-config")
        .filter_map(|e| e["service"].as_str().map(str::to_string))
        .collect()
}

fn apply(lab: &Lab, extra: &[&str]) -> (Output, Vec<Value>) {
    let mut args = vec!["apply", "--yes", "--json"];
    args.extend(extra);
    let o = lab.nixmox(&args);
    let ev = events(&o.stdout);
    (o, ev)
}

/// The end of `step` in an apply's events.
fn end<'a>(ev: &'a [Value], step: &str) -> &'a Value {
    faults::end_of(ev, step).unwrap_or_else(|| panic!("no end of {step} in the events"))
}

#[test]
fn selection_exec_and_rolling_deploys_on_the_lab() {
    lab_stack::require_root("the fleet lab test");
    let lab = Lab::new();
    let up = lab.nixmox(&["lab", "up"]);
    assert_eq!(up.status.code(), Some(0), "lab up failed:\n{}", text(&up));

    // --- Selection: tags and globs, with what they need, on every command.
    let o = lab.nixmox(&["plan", "--json", "--on", "@ops"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    assert_eq!(v["selection"]["chosen"], serde_json::json!(["dash"]));
    set_version(&lab, "dash", "0.9-tagged");
    set_version(&lab, "wiki", "1.4-tagged");
    let (o, ev) = apply(&lab, &["--on", "@ops"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(apps_touched(&ev), BTreeSet::from(["dash".to_string()]));
    assert_eq!(end(&ev, "nix:service-config:dash")["status"], "changed");
    let (o, ev) = apply(&lab, &["--on", "wi*"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(apps_touched(&ev), BTreeSet::from(["wiki".to_string()]));
    let o = lab.nixmox(&["verify", "--json", "--on", "@docs"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let checked: BTreeSet<String> = json(&o)["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["service"].as_str().map(str::to_string))
        .collect();
    assert!(
        checked.contains("wiki") && checked.contains("notes") && !checked.contains("dash"),
        "{checked:?}"
    );
    let o = lab.nixmox(&["status", "--json", "--on", "@ops"]);
    let listed: BTreeSet<String> = json(&o)["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["service"].as_str().map(str::to_string))
        .collect();
    assert!(
        listed.contains("dash") && !listed.contains("wiki"),
        "{listed:?}"
    );
    let o = lab.nixmox(&["rollback", "--on", "@ops"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("dash: back on the previous generation"),
        "{}",
        text(&o)
    );
    let o = lab.nixmox(&["destroy", "--yes", "--on", "@nothing"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("@nothing: selects nothing"),
        "{}",
        text(&o)
    );

    // --- exec: three hosts side by side, one failing, output per host.
    let o = exec(
        &lab,
        &[
            "--on",
            "@docs,dash",
            "--",
            "sh",
            "-c",
            "if ip -4 addr | grep -q '10.213.0.12/'; then echo broken >&2; exit 3; fi; echo fine",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    for line in [
        "wiki | fine",
        "notes | fine",
        "dash ! broken",
        "dash = exit 3",
        "exec on 3 host(s): 2 ok, 1 failed: dash",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    let o = exec(
        &lab,
        &[
            "--json",
            "--on",
            "wiki",
            "--timeout",
            "1",
            "--",
            "sleep",
            "5",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v = json(&o);
    assert_eq!(v["hosts"][0]["timed_out"], true, "{v}");
    assert!(
        v["hosts"][0]["seconds"].as_f64().is_some_and(|s| s < 4.0),
        "bounded: {v}"
    );

    // --- Where systems are built: wiki on its own host, dash on notes's host.
    set_build_host(&lab, "wiki", "target");
    set_build_host(&lab, "dash", "notes");
    set_version(&lab, "wiki", "1.4-remote");
    set_version(&lab, "dash", "0.9-remote");
    let (o, ev) = apply(&lab, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let detail = |step: &str| {
        end(&ev, step)["detail"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        detail("nix:service-config:wiki").contains("built on its host 10.213.0.10"),
        "{}",
        detail("nix:service-config:wiki")
    );
    assert!(
        detail("nix:service-config:dash").contains("built on builder notes (root@10.213.0.11)"),
        "{}",
        detail("nix:service-config:dash")
    );
    // From inside: each system records the addresses of the network
    // namespace its build ran in — the builder's, not this machine's.
    for (ip, builder) in [
        ("10.213.0.10", "10.213.0.10/"),
        ("10.213.0.12", "10.213.0.11/"),
    ] {
        let o = lab.ssh(ip, "cat /run/current-system/built-on");
        let seen = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            seen.contains(builder),
            "the system on {ip} was not built on {builder}: {seen}"
        );
        assert!(
            !seen.contains("10.213.0.1/"),
            "the system on {ip} was built on this machine: {seen}"
        );
    }

    // --- --batch 1: never two hosts between their switch and the end of their gate.
    set_version(&lab, "dash", "0.9-batch");
    set_version(&lab, "wiki", "1.4-batch");
    set_version(&lab, "notes", "2.0-batch");
    let (o, ev) = apply(&lab, &["--batch", "1", "--parallel", "4"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut switching: BTreeSet<String> = BTreeSet::new();
    let mut most = 0;
    for e in &ev {
        let (Some(svc), Some(phase)) = (e["service"].as_str(), e["phase"].as_str()) else {
            continue;
        };
        match (phase, e["status"].as_str()) {
            ("nix:service-config", Some("started")) => {
                switching.insert(svc.to_string());
            }
            ("nix:service-config", Some("failed")) | ("health", Some(_))
                if e["status"] != "started" =>
            {
                switching.remove(svc);
            }
            _ => {}
        }
        most = most.max(switching.len());
    }
    assert_eq!(most, 1, "two hosts switched at once under --batch 1");
    assert_eq!(apps_touched(&ev).len(), 3);

    // --- --canary: dash (its wave's first) dies after activation; wiki is not started, notes skipped.
    set_version(&lab, "dash", "crash-after-first-health");
    set_version(&lab, "wiki", "1.4-canary");
    let (o, ev) = apply(&lab, &["--canary"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        ev.iter()
            .any(|e| e["service"] == "dash" && e["status"] == "failed"),
        "the canary dash failed"
    );
    let wiki = end(&ev, "nix:service-config:wiki");
    assert_eq!(wiki["status"], "skipped", "{wiki}");
    assert!(
        wiki["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not started: dash, the canary of its wave, failed")),
        "{wiki}"
    );
    let notes = end(&ev, "nix:service-config:notes");
    assert!(
        notes["detail"]
            .as_str()
            .is_some_and(|d| d.contains("depends on wiki, which was not deployed")),
        "{notes}"
    );
    assert!(
        !ev.iter()
            .any(|e| e["step"] == "nix:service-config:wiki" && e["status"] == "started"),
        "wiki never started"
    );

    // --- --max-failures 1 with one at a time: after dash fails, nothing else starts.
    let (o, ev) = apply(&lab, &["--max-failures", "1", "--parallel", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let wiki = end(&ev, "nix:service-config:wiki");
    assert!(
        wiki["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not started: --max-failures 1 reached (1 failed)")),
        "{wiki}"
    );

    // Back to a working dash: the stack converges again.
    set_version(&lab, "dash", "0.9");
    let (o, _) = apply(&lab, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
