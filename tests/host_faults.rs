//! Hosts failing, on the lab stack (as root). Each fault: the run ends in
//! bounded time with an error naming the host and the step, the host is
//! rolled back where that applies, the other applications finish, and once
//! the fault is gone the next apply converges.
//!
//! - sshd stopped (SIGSTOP: it accepts connections and never answers);
//! - a host's link cut in the middle of its deploy;
//! - a daemon that dies right after its activation (the lab app's
//!   `crash-after-first-health` version);
//! - a full disk in a host's data directory (/var/lib/lab).

#[path = "support/lab_stack.rs"]
#[allow(dead_code)]
mod lab_stack;

#[path = "support/faults.rs"]
mod faults;

use faults::{apply, end_of, events, set_version};
use lab_stack::{text, Lab};
use serde_json::Value;
use std::process::{Command, Output};
use std::time::Duration;

fn sh(cmd: &str) -> Output {
    let o = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    assert!(o.status.success(), "{cmd}: {}", text(&o));
    o
}

/// The app answers /healthz on its host with its current version's daemon.
fn app_health(ip: &str) -> bool {
    Command::new("curl")
        .args(["-fsS", "-o", "/dev/null", "--max-time", "5"])
        .arg(format!("http://{ip}:8080/healthz"))
        .status()
        .is_ok_and(|s| s.success())
}

/// The run failed on `step` of `host`, naming it; everything else ended well.
fn failed_naming(o: &Output, step: &str, host: &str, ip: &str) -> String {
    assert_eq!(o.status.code(), Some(1), "{}", text(o));
    let ev = events(&o.stdout);
    let bad: Vec<&Value> = ev.iter().filter(|e| e["status"] == "failed").collect();
    assert_eq!(bad.len(), 1, "exactly one step fails: {bad:#?}");
    let e = bad[0];
    assert_eq!(e["step"], step, "{e:#}");
    let detail = e["detail"].as_str().unwrap_or_default().to_string();
    assert!(
        detail.contains(host) && detail.contains(ip),
        "the error names neither host {host} nor {ip}: {detail}"
    );
    eprintln!("{step} failed as expected:\n{detail}\n");
    detail
}

fn converges(lab: &Lab, app: &str) {
    let o = apply(lab, None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let ev = events(&o.stdout);
    let v = end_of(&ev, &format!("verify:{app}")).expect("verify step");
    assert!(
        matches!(v["status"].as_str(), Some("changed" | "unchanged")),
        "{v:#}"
    );
}

#[test]
fn hosts_failing_give_bounded_errors_and_a_clean_resume() {
    lab_stack::require_root("the host fault test");
    let lab = Lab::new();
    // A tighter connect timeout than the default 10 s, so a stopped sshd is
    // given up on sooner; no connection kept between runs, so every run
    // meets the fault it is given (a kept one is served by a child of sshd
    // that a stopped sshd does not stop).
    let m = std::fs::read_to_string(lab.manifest()).expect("manifest");
    let m = m.replacen(
        "    ssh = {\n",
        "    ssh = {\n      connect_timeout = 5;\n      persist = 0;\n",
        1,
    );
    let dash_health = "readiness = \"http://10.213.0.12:8080/healthz\";\n          interval = 1;\n          timeout = 60;";
    assert!(
        m.contains(dash_health),
        "the lab manifest changed: update this test"
    );
    let m = m.replacen(
        dash_health,
        &dash_health.replace("timeout = 60;", "timeout = 8;"),
        1,
    );
    std::fs::write(lab.manifest(), m).expect("write manifest");
    let up = lab.nixmox(&["lab", "up"]);
    assert_eq!(up.status.code(), Some(0), "lab up:\n{}", text(&up));
    let lab_dir = lab.lab_dir.path().display().to_string();

    // 1. sshd stopped on notes: connections are accepted and never answered.
    let sshd = sh(&format!(
        "pgrep -f '[s]shd -D -e -f {lab_dir}/hosts/notes/sshd_config'"
    ));
    let sshd = String::from_utf8_lossy(&sshd.stdout).trim().to_string();
    sh(&format!("kill -STOP {sshd}"));
    set_version(&lab, "notes", "fault-1");
    let o = apply(&lab, None);
    sh(&format!("kill -CONT {sshd}"));
    let detail = failed_naming(&o, "nix:service-config:notes", "notes", "10.213.0.11");
    assert!(detail.contains("timed out"), "{detail}");
    for app in ["wiki", "dash"] {
        let ev = events(&o.stdout);
        let v = end_of(&ev, &format!("verify:{app}")).expect("verify");
        assert_eq!(v["status"], "unchanged", "{app} should finish: {v:#}");
    }
    converges(&lab, "notes");

    // 2. dash's link cut in the middle of its deploy: given up on when the
    // host has been silent for a minute, not after the activation timeout.
    let link = "nmx0ad5000c"; // the lab's veth for 10.213.0.12
    set_version(&lab, "dash", "fault-2");
    let cut = |_: &mut std::process::Child| {
        sh(&format!("ip link set {link} down"));
    };
    let o = apply(
        &lab,
        Some(("nix:service-config:dash", Duration::from_millis(300), &cut)),
    );
    sh(&format!("ip link set {link} up"));
    failed_naming(&o, "nix:service-config:dash", "dash", "10.213.0.12");
    converges(&lab, "dash");

    // 3. A daemon that dies right after its activation: the gate passes, the
    // daemon exits, verify fails, and dash goes back to its previous system.
    set_version(&lab, "dash", "crash-after-first-health");
    let o = apply(&lab, None);
    let detail = failed_naming(&o, "verify:dash", "dash", "10.213.0.12");
    assert!(detail.contains("rolled back"), "{detail}");
    assert!(
        app_health("10.213.0.12"),
        "dash is not healthy after its rollback"
    );
    set_version(&lab, "dash", "fault-3");
    converges(&lab, "dash");

    // 4. A full disk in dash's data directory: a small filesystem over
    // /var/lib/lab on that host, filled to the last page. The daemon's run
    // files get a second link each, so the activation's deleting them frees
    // nothing: the disk stays full whatever it removes.
    let fill = lab.ssh(
        "10.213.0.12",
        "set -e; mkdir -p /run/full; mount -t tmpfs -o size=4m nmx-full /run/full; \
         cp -a /var/lib/lab/. /run/full/; mount --bind /run/full /var/lib/lab; \
         for f in /var/lib/lab/run/*; do ln \"$f\" \"/var/lib/lab/.held-${f##*/}\"; done; \
         dd if=/dev/zero of=/var/lib/lab/filler bs=4k 2>/dev/null || true",
    );
    assert!(fill.status.success(), "{}", text(&fill));
    set_version(&lab, "dash", "fault-4");
    let o = apply(&lab, None);
    let detail = failed_naming(&o, "nix:service-config:dash", "dash", "10.213.0.12");
    assert!(detail.contains("No space left"), "{detail}");
    let free = lab.ssh(
        "10.213.0.12",
        "rm -f /var/lib/lab/filler /var/lib/lab/.held-*",
    );
    assert!(free.status.success(), "{}", text(&free));
    converges(&lab, "dash");

    // Everything converged: one more apply changes nothing.
    let o = apply(&lab, None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let changed: Vec<String> = events(&o.stdout)
        .iter()
        .filter(|e| e["status"] == "changed")
        .filter_map(|e| e["step"].as_str().map(str::to_string))
        .collect();
    assert!(changed.is_empty(), "{changed:#?}");
}
