//! Independent applications deploy side by side: four applications whose
//! activation takes two seconds, applied with `--parallel 1` and `--parallel 4`
//! on lab hosts, the ratio reported (target: at least 2.8x). Every round
//! changes the systems, so every round really deploys.
//!
//! Needs root (lab hosts). Run: `cargo bench --bench parallel_deploy`.

#[path = "../tests/support/script_stack.rs"]
mod script_stack;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const NET: &str = "10.216.0";
const APPS: [&str; 4] = ["app1", "app2", "app3", "app4"];

fn nixmox(root: &Path, args: &[&str]) -> std::process::Output {
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
        .output()
        .expect("nixmox")
}

/// The applications' system of round `n` (the core's never changes): each
/// activation sleeps two seconds, then serves /healthz.
fn write_systems(root: &Path, n: u32) {
    let script = format!(
        "#!/bin/sh\nset -e\n# round {n}\nself=$(dirname \"$(dirname \"$(readlink -f \"$0\")\")\")\nip=$(ip -4 -o addr show eth0 | awk '{{print $4}}' | cut -d/ -f1)\n\
         case \"$(hostname)\" in app*) sleep 2;; esac\nln -sfn \"$self\" /run/current-system\npkill -f \"http.server 8080 --bind $ip\" || true\n\
         mkdir -p /var/lib/lab/www && echo ok > /var/lib/lab/www/healthz && setsid -f python3 -m http.server 8080 --bind \"$ip\" --directory /var/lib/lab/www > /dev/null 2>&1 < /dev/null\n"
    );
    std::fs::write(root.join("app.sh"), &script).expect("write app.sh");
    if !root.join("core.sh").exists() {
        std::fs::write(
            root.join("core.sh"),
            script.replace(&format!("# round {n}"), "# core"),
        )
        .expect("write core.sh");
    }
}

fn main() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    {
        println!("parallel_deploy: skipped, it needs root to make lab hosts");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let apps: Vec<(&str, &[&str])> = APPS.iter().map(|n| (*n, &[][..])).collect();
    let manifest = script_stack::manifest(NET, "bench.test", &apps, 20);
    std::fs::write(root.join("manifest.json"), manifest.to_string()).expect("manifest");
    let hosts: Vec<&str> = script_stack::CORE
        .iter()
        .chain(APPS.iter())
        .copied()
        .collect();
    // The scripts first: the flake is a git repository of the files it uses.
    write_systems(root, 0);
    script_stack::write_flake(root, &hosts, |n| {
        if n.starts_with("app") {
            "app.sh"
        } else {
            "core.sh"
        }
    });
    let up = nixmox(root, &["lab", "up", "--no-systems"]);
    assert!(
        up.status.success(),
        "lab up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let first = nixmox(root, &["apply"]);
    assert!(
        first.status.success(),
        "first apply: {}",
        String::from_utf8_lossy(&first.stdout)
    );

    let mut round = 0;
    let mut measure = |parallel: &str| -> Duration {
        let mut times = Vec::new();
        for _ in 0..3 {
            round += 1;
            write_systems(root, round);
            let t = Instant::now();
            let o = nixmox(root, &["apply", "--parallel", parallel]);
            times.push(t.elapsed());
            assert!(
                o.status.success(),
                "apply --parallel {parallel}: {}",
                String::from_utf8_lossy(&o.stdout)
            );
        }
        times.sort();
        times[1]
    };
    let one = measure("1");
    let four = measure("4");
    // Where the time of a --parallel 4 round goes, step by step.
    write_systems(root, 99);
    let o = nixmox(root, &["apply", "--parallel", "4", "--json"]);
    let mut spent: Vec<(f64, String)> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step" && e["status"] != "started")
        .filter_map(|e| Some((e["seconds"].as_f64()?, e["step"].as_str()?.to_string())))
        .collect();
    spent.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (secs, step) in spent.iter().take(8) {
        println!("  {secs:>6.2} s  {step}");
    }
    let _ = nixmox(root, &["lab", "down"]);
    println!("four independent applications, each activation 2 s, every round new application systems, median of 3:");
    println!("  apply --parallel 1   {:>6.2} s", one.as_secs_f64());
    println!("  apply --parallel 4   {:>6.2} s", four.as_secs_f64());
    println!(
        "  --parallel 4 is {:.2}x faster (target: at least 2.8x)",
        one.as_secs_f64() / four.as_secs_f64()
    );
}
