//! The host protects itself, on the lab stack (as root): every switch that
//! replaces a system runs under a guard on the host that rolls back by
//! itself unless nixmox confirms after the health gate.
//!
//! - a healthy deploy is confirmed and stays;
//! - a version whose activation cuts the host off (the lab app's
//!   `cut-network`: it drops the host's address, as a bad network
//!   configuration would) rolls back by itself, and the run says so;
//! - a version whose activation stops sshd (the lab app's `stop-sshd`:
//!   new connections are accepted and never answered, the ones open go
//!   on): nixmox's confirmation needs a connection of its own, cannot get
//!   one, and the host rolls itself back;
//! - the link cut right after the switch, while nixmox waits in the health
//!   gate: the same;
//! - nixmox killed between the switch and its confirmation: the host rolls
//!   back; `status` and the next apply report it once, and the apply converges;
//! - confirmation racing a 1 s timeout: one outcome, reported truthfully,
//!   in every round.
//!
//! Every apply is bounded (tests/support/faults.rs).

#[path = "support/lab_stack.rs"]
#[allow(dead_code)]
mod lab_stack;

#[path = "support/faults.rs"]
mod faults;

use faults::{apply, end_of, events, set_version};
use lab_stack::{text, Lab};
use serde_json::Value;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const DASH: &str = "10.213.0.12";
/// The lab's veth for 10.213.0.12.
const LINK: &str = "nmx0ad5000c";
const CONFIRM: u64 = 8;

fn sh(cmd: &str) {
    let o = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    assert!(o.status.success(), "{cmd}: {}", text(&o));
}

/// The version dash's running system is, as the host says.
fn version(lab: &Lab) -> String {
    let o = lab.ssh(DASH, "cat /run/current-system/sw/share/dash/version");
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn healthy() -> bool {
    Command::new("curl")
        .args(["-fsS", "-o", "/dev/null", "--max-time", "5"])
        .arg(format!("http://{DASH}:8080/healthz"))
        .status()
        .is_ok_and(|s| s.success())
}

/// The guards on dash's host that have an activation status.
fn guards_done(lab: &Lab) -> Vec<String> {
    let o = lab.ssh(
        DASH,
        "for d in /run/nixmox/guard-*; do [ -e \"$d/status\" ] && echo \"${d##*/}\"; done; true",
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits (a minute at most) until a guard beyond the `before` ones on dash's
/// host has its activation's status: the switch is done.
fn switched(lab: &Lab, before: usize) {
    let end = Instant::now() + Duration::from_secs(60);
    while guards_done(lab).len() == before {
        assert!(Instant::now() < end, "dash's switch never finished");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Records of rollbacks no run reported yet.
fn unreported(lab: &Lab) -> usize {
    let o = lab.ssh(
        DASH,
        "ls /var/lib/nixmox/rollbacks 2>/dev/null | grep -vc '\\.reported$' || true",
    );
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The one failed step's detail: dash's deploy, naming the host.
fn dash_failed(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{}", text(o));
    let ev = events(&o.stdout);
    let e = end_of(&ev, "nix:service-config:dash").expect("dash's deploy");
    assert_eq!(e["status"], "failed", "{e:#}");
    let detail = e["detail"].as_str().unwrap_or_default().to_string();
    assert!(detail.contains("dash") && detail.contains(DASH), "{detail}");
    for app in ["wiki", "notes"] {
        let v = end_of(&ev, &format!("verify:{app}")).expect("verify");
        assert!(
            matches!(v["status"].as_str(), Some("changed" | "unchanged")),
            "{app} should finish: {v:#}"
        );
    }
    eprintln!("dash failed as expected:\n{detail}\n");
    detail
}

fn nothing_changes(lab: &Lab) {
    let o = apply(lab, None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let changed: Vec<Value> = events(&o.stdout)
        .into_iter()
        .filter(|e| e["status"] == "changed")
        .collect();
    assert!(changed.is_empty(), "{changed:#?}");
}

#[test]
fn hosts_roll_themselves_back_when_nixmox_cannot_confirm() {
    lab_stack::require_root("the guard test");
    let lab = Lab::new();
    let m = std::fs::read_to_string(lab.manifest()).expect("manifest");
    let dash_health = "readiness = \"http://10.213.0.12:8080/healthz\";\n          interval = 1;\n          timeout = 60;";
    assert!(
        m.contains(dash_health),
        "the lab manifest changed: update this test"
    );
    let m = m
        .replacen(
            dash_health,
            &dash_health.replace("timeout = 60;", "timeout = 10;"),
            1,
        )
        .replacen(
            "    flake = \".\";\n",
            &format!("    flake = \".\";\n    confirm_timeout = {CONFIRM};\n"),
            1,
        );
    std::fs::write(lab.manifest(), m).expect("write manifest");
    let up = lab.nixmox(&["lab", "up"]);
    assert_eq!(up.status.code(), Some(0), "lab up:\n{}", text(&up));

    // 1. A healthy deploy is confirmed, and stays past the guard's timeout.
    set_version(&lab, "dash", "guard-1");
    let o = apply(&lab, None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    std::thread::sleep(Duration::from_secs(CONFIRM + 2));
    assert_eq!(version(&lab), "guard-1");
    assert_eq!(unreported(&lab), 0, "a confirmed deploy rolled back");
    assert!(healthy());

    // 2. A system that cuts its host off: back on guard-1 by itself.
    set_version(&lab, "dash", "cut-network");
    let started = Instant::now();
    let o = apply(&lab, None);
    let detail = dash_failed(&o);
    assert!(
        detail.contains("rolled itself back to generation")
            && detail.contains(&format!("not confirmed within {CONFIRM} s"))
            && detail.contains("nixmox lost it at activation"),
        "{detail}"
    );
    eprintln!("cut-network reported after {:?}", started.elapsed());
    assert_eq!(version(&lab), "guard-1", "not back on the previous system");
    assert!(healthy(), "dash is not healthy after rolling itself back");
    assert_eq!(
        unreported(&lab),
        0,
        "the run reported the record: it is marked"
    );

    // 2b. A system that stops sshd while the connection nixmox opened
    // before the switch goes on working (its gate and signs of life pass
    // over it): confirmed over that connection, the host would be locked
    // out for good. The confirmation needs a connection of its own, gets
    // none, and the host rolls itself back.
    set_version(&lab, "dash", "stop-sshd");
    let o = apply(&lab, None);
    let detail = dash_failed(&o);
    assert!(
        detail.contains("rolled itself back to generation"),
        "{detail}"
    );
    assert_eq!(version(&lab), "guard-1", "not back on the previous system");
    assert!(healthy(), "dash is not healthy after rolling itself back");
    assert_eq!(unreported(&lab), 0, "the run reported the record");

    // 3. The link cut right after the switch (the new version is slow to
    // become healthy, so nixmox is in its health gate), for longer than
    // the guard waits.
    set_version(&lab, "dash", "slow-health-2");
    let before = guards_done(&lab);
    let cut = |_: &mut std::process::Child| {
        switched(&lab, before.len());
        sh(&format!("ip link set {LINK} down"));
        std::thread::sleep(Duration::from_secs(CONFIRM + 4));
        sh(&format!("ip link set {LINK} up"));
    };
    let o = apply(
        &lab,
        Some(("nix:service-config:dash", Duration::ZERO, &cut)),
    );
    sh(&format!("ip link set {LINK} up"));
    let detail = dash_failed(&o);
    assert!(
        detail.contains("rolled itself back to generation") && detail.contains("nixmox lost it"),
        "{detail}"
    );
    assert_eq!(version(&lab), "guard-1");
    assert!(healthy());

    // 4. nixmox killed between the switch and its confirmation (the new
    // version is slow to become healthy): the host rolls back by itself.
    set_version(&lab, "dash", "slow-health-1");
    let before = guards_done(&lab);
    let kill = |child: &mut std::process::Child| {
        switched(&lab, before.len());
        let _ = child.kill();
    };
    let _ = apply(
        &lab,
        Some(("nix:service-config:dash", Duration::ZERO, &kill)),
    );
    let end = Instant::now() + Duration::from_secs(CONFIRM + 30);
    while unreported(&lab) == 0 {
        if Instant::now() > end {
            let o = lab.ssh(
                DASH,
                "for d in /run/nixmox/guard-*; do echo \"== $d\"; ls \"$d\"; cat \"$d/decision\" \"$d/rollback.log\" 2>&1; done; ls -la /var/lib/nixmox/rollbacks; date +%s",
            );
            panic!("dash did not roll itself back:\n{}", text(&o));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(version(&lab), "guard-1");
    let o = lab.nixmox(&["status", "--json"]);
    let st: Value = serde_json::from_slice(&o.stdout).expect("status JSON");
    let dash = st["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["service"] == "dash"))
        .cloned()
        .unwrap_or_default();
    assert!(
        dash["rolled_back"][0]
            .as_str()
            .is_some_and(|r| r.contains("rolled itself back to generation")),
        "{st:#}"
    );
    // The next apply says so once, and converges on the new version.
    let o = apply(&lab, None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let ev = events(&o.stdout);
    let deploy = end_of(&ev, "nix:service-config:dash").expect("dash's deploy");
    let detail = deploy["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("rolled itself back") && detail.contains("no nixmox was watching"),
        "{deploy:#}"
    );
    assert_eq!(version(&lab), "slow-health-1");
    assert_eq!(unreported(&lab), 0);
    nothing_changes(&lab);

    // 5. Confirmation racing a 1 s timeout: whichever side wins, the run,
    // the host and its records agree, round after round.
    let m = std::fs::read_to_string(lab.manifest()).expect("manifest");
    let tight = m.replacen(
        "      hostname = \"dash.nixmox.test\";\n",
        "      hostname = \"dash.nixmox.test\";\n      nixos.confirm_timeout = 1;\n",
        1,
    );
    assert_ne!(tight, m, "the lab manifest changed: update this test");
    std::fs::write(lab.manifest(), tight).expect("write manifest");
    let mut on = "slow-health-1".to_string();
    let mut outcomes = (0, 0);
    for round in 1..=4 {
        let next = format!("race-{round}");
        set_version(&lab, "dash", &next);
        let o = apply(&lab, None);
        match o.status.code() {
            Some(0) => {
                std::thread::sleep(Duration::from_secs(3));
                assert_eq!(
                    version(&lab),
                    next,
                    "round {round}: confirmed, yet rolled back"
                );
                assert_eq!(unreported(&lab), 0, "round {round}");
                on = next;
                outcomes.0 += 1;
            }
            _ => {
                let detail = dash_failed(&o);
                assert!(
                    detail.contains("rolled itself back"),
                    "round {round}: {detail}"
                );
                assert_eq!(
                    version(&lab),
                    on,
                    "round {round}: not on the previous system"
                );
                outcomes.1 += 1;
            }
        }
        assert!(healthy(), "round {round}");
    }
    eprintln!("race: {} confirmed, {} rolled back", outcomes.0, outcomes.1);
    std::fs::write(lab.manifest(), m).expect("restore manifest");
    set_version(&lab, "dash", "guard-3");
    let o = apply(&lab, None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    nothing_changes(&lab);
}
