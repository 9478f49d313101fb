//! Evaluating the hosts' systems, with the lab's stand-in for nixpkgs's
//! evaluation cost (`evalWork` in examples/lab/scale.nix). The lab's own
//! systems evaluate in milliseconds; a real NixOS system takes seconds, and
//! on a real stack evaluation is most of what a run spends. Only Nix runs
//! here: no lab, no root.
//!
//! Run: `cargo bench --bench evaluation` (`NIXMOX_EVAL_APPS` generated
//! applications, default 16, so 23 hosts; `NIXMOX_EVAL_WORK`, default 2000).
//! Each figure is the median of three, all in one run, on copies of the
//! lab's flake:
//! - after a change to the flake (one application's new version):
//!   - one process evaluating every host, then `nix build` of the changed
//!     host evaluating it again: how a run evaluated before;
//!   - one `nix eval` per host: what a loop of `nixos-rebuild`s evaluates;
//!   - nixmox (`nixos::evaluation`): a part per core, the changed host
//!     realised from the derivation its evaluation wrote;
//! - on an unchanged flake: the one process again, against nixmox's
//!   answers kept under the flake's fingerprint.

use nixmox::nixos::build::{self, Evaluated, NixSettings};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SAMPLES: usize = 3;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

/// The lab's flake copied to `dir`, with `apps` applications, `work` and
/// app01 at `version`.
fn write_scale(dir: &Path, apps: usize, work: usize, version: &str) {
    let text = format!(
        "{{ apps = {apps}; evalWork = {work}; versions = {{ app01 = \"{version}\"; }}; }}\n"
    );
    std::fs::write(dir.join("scale.nix"), text).expect("write scale.nix");
}

fn time<R>(f: impl FnOnce() -> R) -> (Duration, R) {
    let start = Instant::now();
    let r = f();
    (start.elapsed(), r)
}

fn main() {
    let apps = env_or("NIXMOX_EVAL_APPS", 16);
    let work = env_or("NIXMOX_EVAL_WORK", 2000);
    let root = tempfile::tempdir().expect("tempdir");
    let flake = root.path().join("lab");
    let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/lab");
    let cp = Command::new("cp")
        .arg("-r")
        .arg(&lab)
        .arg(&flake)
        .status()
        .expect("cp");
    assert!(cp.success(), "copying {}", lab.display());
    let work_dir = root.path().join("work");
    std::fs::create_dir(&work_dir).expect("work dir");
    let settings = NixSettings {
        flake: format!("path:{}", flake.display()),
        // The lab manifest's own Nix settings.
        nix_config: Some(
            "experimental-features = nix-command flakes\nsubstituters =\nsandbox = false".into(),
        ),
    };
    write_scale(&flake, apps, 0, "0");
    // Every host of the flake, by name (cheap without the stand-in's work).
    let names = Command::new("nix")
        .args(["eval", "--json", "--apply", "builtins.attrNames", "--"])
        .arg(format!("{}#nixosConfigurations", settings.flake))
        .env("NIX_CONFIG", settings.nix_config.as_deref().unwrap_or(""))
        .output()
        .expect("nix eval");
    assert!(
        names.status.success(),
        "{}",
        String::from_utf8_lossy(&names.stderr)
    );
    let hosts: Vec<String> = serde_json::from_slice(&names.stdout).expect("host names");
    let attributes: Vec<(String, String)> = hosts
        .iter()
        .map(|h| (h.clone(), build::default_attribute(h)))
        .collect();
    let changed = build::installable(&settings.flake, &build::default_attribute("app01"));
    let mut version = 0;
    let mut change = || {
        version += 1;
        write_scale(
            &flake,
            apps,
            work,
            &format!("{}.{version}", std::process::id()),
        );
    };

    let nixmox = |settings: &NixSettings| -> BTreeMap<String, Evaluated> {
        let found = nixmox::nixos::evaluation::evaluate_map(settings, Some(&work_dir), &attributes);
        assert_eq!(found.len(), attributes.len(), "every system evaluates");
        found
    };

    let (mut before, mut loop_, mut now, mut same_before, mut same_now) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..SAMPLES {
        change();
        before.push(
            time(|| {
                build::evaluate_all(&settings, &attributes).expect("evaluate all");
                build::build(&settings, std::slice::from_ref(&changed)).expect("build");
            })
            .0,
        );
        change();
        loop_.push(
            time(|| {
                for (_, attr) in &attributes {
                    let o = Command::new("nix")
                        .args(["eval", "--raw", "--"])
                        .arg(format!("{}#{attr}.drvPath", settings.flake))
                        .env("NIX_CONFIG", settings.nix_config.as_deref().unwrap_or(""))
                        .output()
                        .expect("nix eval");
                    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                }
            })
            .0,
        );
        change();
        now.push(
            time(|| {
                let found = nixmox(&settings);
                assert_eq!(found.len(), attributes.len());
                build::build_system(&settings, &changed, found.get("app01")).expect("build");
            })
            .0,
        );
        // Unchanged since: the one process again, against the kept answers.
        same_before
            .push(time(|| build::evaluate_all(&settings, &attributes).expect("evaluate all")).0);
        same_now.push(time(|| nixmox(&settings)).0);
    }
    let (before, loop_, now) = (median(before), median(loop_), median(now));
    let (same_before, same_now) = (median(same_before), median(same_now));
    let s = |d: Duration| d.as_secs_f64();
    println!(
        "evaluation of {} hosts (evalWork {work}), median of {SAMPLES}, on {} cores:",
        hosts.len(),
        nixmox::bounded::builds_at_once()
    );
    println!(
        "  after a change: one process + nix build {:.2} s, a nix eval per host {:.2} s, nixmox {:.2} s",
        s(before),
        s(loop_),
        s(now)
    );
    println!(
        "    one process / nixmox {:.2}x, per host / nixmox {:.2}x",
        s(before) / s(now),
        s(loop_) / s(now)
    );
    println!(
        "  unchanged flake: one process {:.2} s, nixmox {:.3} s: {:.1}x",
        s(same_before),
        s(same_now),
        s(same_before) / s(same_now)
    );
}
