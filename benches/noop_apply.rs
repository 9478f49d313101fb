//! A no-op re-apply of the lab, against two baselines measured in the same
//! run: the naive loop people write today (scripts/naive_apply.py: every
//! Terraform phase planned and applied, every host built, copied and
//! switched, every health check in turn), and the checks that cannot be
//! avoided (a Terraform plan per workspace, each host's system evaluated and
//! compared, each readiness probe) run all at once.
//!
//! Each twice: riding on the SSH connections the runs before kept
//! (`nixos.ssh.persist`, the default 60 s: a re-run within a minute), and
//! with every connection opened anew (`NIXMOX_SSH_PERSIST=0`; the floor on
//! connections of its own), what a re-run after a longer pause costs.
//!
//! Needs root (it brings the lab up in its own directories). Run:
//! `cargo bench --bench noop_apply`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../tests/support/lab_stack.rs"]
#[allow(dead_code)] // the bench uses the lab's files, not the test harness
mod lab_stack;
use lab_stack::copy_tree;
#[path = "support/floor.rs"]
mod floor;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Env {
    manifest: PathBuf,
    lab: PathBuf,
    state: PathBuf,
}

/// The lab comes down however the bench ends, a failed assertion included.
impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.nixmox(&["lab", "down"]);
    }
}

impl Env {
    fn nixmox(&self, args: &[&str]) -> std::process::Output {
        self.nixmox_with(args, "60")
    }

    /// nixmox with its SSH connections kept `persist` seconds.
    fn nixmox_with(&self, args: &[&str], persist: &str) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_nixmox"))
            .args(args)
            .arg("-m")
            .arg(&self.manifest)
            .envs(self.vars())
            .env("NIXMOX_SSH_PERSIST", persist)
            .output()
            .expect("nixmox")
    }

    fn vars(&self) -> Vec<(&'static str, PathBuf)> {
        floor::lab_env(&self.lab, &self.state)
    }
}

fn main() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    {
        println!("noop_apply: skipped, it needs root to bring the lab up");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_tree(&root.join("examples/lab"), &tmp.path().join("lab-stack"));
    lab_stack::rehome(
        &tmp.path().join("lab-stack/manifest.nix"),
        &tmp.path().join("lab"),
    );
    let env = Env {
        manifest: tmp.path().join("lab-stack/manifest.nix"),
        lab: tmp.path().join("lab"),
        state: tmp.path().join("state"),
    };
    let up = env.nixmox(&["lab", "up"]);
    assert!(
        up.status.success(),
        "lab up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let runs = 3;
    let time = |f: &dyn Fn()| -> Duration {
        median(
            (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed()
                })
                .collect(),
        )
    };
    let apply = |persist: &str| {
        let o = env.nixmox_with(&["apply"], persist);
        assert!(
            o.status.success(),
            "apply: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    };
    let nixmox = time(&|| apply("60"));
    let nixmox_cold = time(&|| apply("0"));
    let naive = time(&|| {
        let o = Command::new("python3")
            .arg(root.join("scripts/naive_apply.py"))
            .arg(&env.manifest)
            .arg(&env.state)
            .arg(&env.lab)
            .envs(env.vars())
            .output()
            .expect("naive");
        assert!(
            o.status.success(),
            "naive loop: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    });
    let floor_with = |persist: u64| {
        median(
            (0..runs)
                .map(|_| {
                    floor::unavoidable(
                        &env.manifest,
                        &env.vars(),
                        &nixmox::nixos::ssh_control::Control::with_persist(persist),
                    )
                })
                .collect(),
        )
    };
    // The kept connections are warm from the runs above.
    let floor = floor_with(60);
    let floor_cold = floor_with(0);
    drop(env);
    let s = |d: Duration| d.as_secs_f64();
    println!("no-op re-apply of the lab (7 hosts, 2 Terraform workspaces), median of {runs}:");
    println!(
        "  naive loop (scripts/naive_apply.py)                 {:>7.2} s",
        s(naive)
    );
    println!(
        "  nixmox apply, on the connections kept               {:>7.2} s",
        s(nixmox)
    );
    println!(
        "  nixmox apply, every connection anew                 {:>7.2} s",
        s(nixmox_cold)
    );
    println!(
        "  unavoidable checks all at once, connections kept    {:>7.2} s",
        s(floor)
    );
    println!(
        "  unavoidable checks all at once, connections anew    {:>7.2} s",
        s(floor_cold)
    );
    println!(
        "  nixmox is {:.1}x faster than the naive loop on kept connections, {:.1}x anew (target: at least 5x)",
        s(naive) / s(nixmox),
        s(naive) / s(nixmox_cold)
    );
    println!(
        "  nixmox takes {:.2}x the unavoidable checks on kept connections, {:.2}x anew (target: at most 1.3x)",
        s(nixmox) / s(floor),
        s(nixmox_cold) / s(floor_cold)
    );
}
