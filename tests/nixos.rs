//! The NixOS executor against lab hosts (as root): real `nix build`, `nix
//! copy` over SSH, profiles, detached activation, health gates, rollback.
//! The systems are tiny flakes written by the test: their
//! switch-to-configuration starts an HTTP server on the host (or, for the
//! broken variant, does not), so health is real too.

use nixmox::manifest::{Health, Probe};
use nixmox::nixos::build::{self, NixSettings};
use nixmox::nixos::deploy::{self, DeployError, DeployRequest, Goal, Outcome};
use nixmox::nixos::ssh::{KnownHosts, SshTarget};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SUBNET: &str = "10.214.0";

struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn up() -> Lab {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        assert!(
            status
                .lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")),
            "these tests need root: they create lab hosts"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let core: serde_json::Map<String, serde_json::Value> = [
            "dns",
            "postgresql",
            "caddy",
            "authentik",
        ]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                n.to_string(),
                json!({"ip": format!("{SUBNET}.{}", i + 2), "hostname": format!("{n}.nixos.test")}),
            )
        })
        .collect();
        let manifest = json!({
            "network": {"domain": "nixos.test", "gateway": format!("{SUBNET}.1"), "network_cidr": format!("{SUBNET}.0/24")},
            "core_services": core,
        });
        std::fs::write(dir.path().join("manifest.json"), manifest.to_string()).expect("write");
        let lab = Lab { dir };
        let o = lab.nixmox(&["lab", "up", "--no-systems"]);
        assert!(
            o.status.success(),
            "lab up: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        lab
    }

    fn nixmox(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_nixmox"))
            .args(args)
            .arg("-m")
            .arg(self.dir.path().join("manifest.json"))
            .env("NIXMOX_LAB_DIR", self.dir.path().join("lab"))
            .env("NIXMOX_STATE_DIR", self.dir.path().join("state"))
            .output()
            .expect("nixmox")
    }

    fn target(&self, name: &str, last: u8) -> SshTarget {
        SshTarget {
            name: name.into(),
            address: format!("{SUBNET}.{last}").parse().expect("ip"),
            user: "root".into(),
            port: 22,
            key: Some(self.dir.path().join("lab/ssh/id_ed25519")),
            known_hosts: KnownHosts::AcceptNew,
            known_hosts_file: Some(self.dir.path().join("lab/ssh/known_hosts")),
            connect_timeout: Duration::from_secs(3),
            control_dir: self.dir.path().join("ssh-control"),
            persist: 60,
        }
    }

    /// A flake whose `<name>` system serves /healthz on port 8080 when `healthy`,
    /// after sleeping `delay` seconds in activation; `marker` makes it a new system.
    fn system(&self, name: &str, ip: &str, marker: &str, healthy: bool, delay: u32) -> String {
        let flake = self.dir.path().join(format!("flake-{marker}"));
        std::fs::create_dir_all(&flake).expect("mkdir");
        let serve = if healthy {
            format!("mkdir -p /var/lib/lab/www && echo ok > /var/lib/lab/www/healthz && setsid -f python3 -m http.server 8080 --bind {ip} --directory /var/lib/lab/www > /dev/null 2>&1 < /dev/null && echo $! > /dev/null")
        } else {
            "true".to_string()
        };
        let script = format!(
            "#!/bin/sh\nset -e\nself=$(dirname \"$(dirname \"$(readlink -f \"$0\")\")\")\n# marker {marker}\nsleep {delay}\n\
             if [ \"$1\" = switch ] || [ \"$1\" = test ]; then\n  pkill -f 'http.server 8080 --bind {ip}' || true\n  ln -sfn \"$self\" /run/current-system\n  {serve}\nfi\n"
        );
        std::fs::write(flake.join("switch.sh"), script).expect("write");
        std::fs::write(
            flake.join("flake.nix"),
            format!(
                r#"{{
  outputs = {{ self }}: {{
    nixosConfigurations.{name}.config.system.build.toplevel = derivation {{
      name = "nixos-system-{name}-{marker}";
      system = "x86_64-linux";
      builder = "/bin/sh";
      switch = ./switch.sh;
      args = [ "-c" "/bin/mkdir -p $out/bin && /bin/cp $switch $out/bin/switch-to-configuration && /bin/chmod +x $out/bin/switch-to-configuration" ];
    }};
  }};
}}
"#
            ),
        )
        .expect("write flake");
        let settings = nix(&flake);
        let paths = build::build(
            &settings,
            &[build::installable(
                &settings.flake,
                &build::default_attribute(name),
            )],
        )
        .expect("nix build");
        paths[0].clone()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.nixmox(&["lab", "down"]);
    }
}

fn nix(flake: &Path) -> NixSettings {
    NixSettings {
        flake: format!("path:{}", flake.display()),
        nix_config: Some(
            "experimental-features = nix-command flakes\nsubstituters =\nsandbox = false".into(),
        ),
    }
}

fn health(ip: &str) -> Health {
    Health {
        startup: Some(Probe::Command("test -e /run/current-system".into())),
        liveness: None,
        readiness: Some(Probe::Url(format!("http://{ip}:8080/healthz"))),
        interval: 1,
        timeout: 8,
        retries: 8,
    }
}

fn request<'a>(
    t: &'a SshTarget,
    nix: &'a NixSettings,
    system: &'a str,
    h: &'a Health,
) -> DeployRequest<'a> {
    DeployRequest {
        target: t,
        nix,
        system,
        goal: Goal::Switch,
        env: None,
        age_key: None,
        health: h,
        ports: &[],
        activation_timeout: Duration::from_secs(60),
        rollback: true,
        force: false,
        // The executor's own paths, unguarded (tests/guard_lab.rs has the guard's).
        confirm_timeout: 0,
        closure_on_target: false,
        seen: None,
        switched: None,
    }
}

fn current(t: &SshTarget) -> String {
    nixmox::nixos::ssh::run(
        t,
        "readlink -f /run/current-system",
        None,
        Duration::from_secs(10),
    )
    .expect("ssh")
    .stdout
    .trim()
    .to_string()
}

#[test]
fn nixos_executor_against_lab_hosts() {
    let lab = Lab::up();
    let settings = nix(&PathBuf::from("/nonexistent"));
    let t = lab.target("dns", 2);
    let h = health(&format!("{SUBNET}.2"));

    // Generation 1, then the same system again: nothing copied, nothing switched.
    let v1 = lab.system("dns", &format!("{SUBNET}.2"), "v1", true, 0);
    assert_eq!(
        deploy::deploy(&request(&t, &settings, &v1, &h)).expect("deploy v1"),
        Outcome::Activated { from: None }
    );
    assert_eq!(current(&t), v1);
    assert_eq!(deploy::generations(&t).expect("gens"), 1);
    assert_eq!(
        deploy::deploy(&request(&t, &settings, &v1, &h)).expect("deploy v1 again"),
        Outcome::Unchanged
    );
    assert_eq!(deploy::generations(&t).expect("gens"), 1);
    // --force: activated again though current, still one generation.
    let forced = DeployRequest {
        force: true,
        ..request(&t, &settings, &v1, &h)
    };
    assert_eq!(
        deploy::deploy(&forced).expect("deploy v1 forced"),
        Outcome::Activated {
            from: Some(v1.clone())
        }
    );
    assert_eq!(current(&t), v1);
    assert_eq!(deploy::generations(&t).expect("gens"), 1);

    // A changed system: exactly one new generation.
    let v2 = lab.system("dns", &format!("{SUBNET}.2"), "v2", true, 0);
    assert_eq!(
        deploy::deploy(&request(&t, &settings, &v2, &h)).expect("deploy v2"),
        Outcome::Activated {
            from: Some(v1.clone())
        }
    );
    assert_eq!(deploy::generations(&t).expect("gens"), 2);

    // A system that fails its health check: back on v2, healthy, and the error says all of it.
    let bad = lab.system("dns", &format!("{SUBNET}.2"), "bad", false, 0);
    let err = deploy::deploy(&request(&t, &settings, &bad, &h)).expect_err("unhealthy system");
    let text = err.to_string();
    assert!(matches!(err, DeployError::Health { .. }), "{text}");
    for needle in [
        "host dns (10.214.0.2)",
        "readiness check http://10.214.0.2:8080/healthz",
        "rolled back",
        &v2,
        "healthy",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in {text}");
    }
    assert_eq!(current(&t), v2);
    nixmox::nixos::health::gate(&h, &[], &t).expect("healthy after rollback");

    // The age key goes to its target (root only, atomically) with the
    // environment; the same key again changes nothing, a new key re-activates.
    let key = |k: &str| deploy::AgeKey {
        bytes: format!("# created: lab\nAGE-SECRET-KEY-1{k}\n").into_bytes(),
        target: "/var/lib/lab/sops-nix/key.txt".into(),
    };
    let (k1, k2) = (key("FIRSTKEYNOTREAL"), key("SECONDKEYNOTREAL"));
    let with = |k| DeployRequest {
        env: Some("NIXMOX_TF_X=1\n"),
        age_key: Some(k),
        ..request(&t, &settings, &v2, &h)
    };
    let seen = |cmd: &str| {
        let o = nixmox::nixos::ssh::run(&t, cmd, None, Duration::from_secs(10)).expect("ssh");
        o.stdout.trim().to_string()
    };
    let first = deploy::deploy(&with(&k1)).expect("deploy with the age key");
    assert!(matches!(first, Outcome::Activated { .. }), "{first:?}");
    assert_eq!(
        seen("stat -c %a /var/lib/lab/sops-nix/key.txt; cat /var/lib/lab/sops-nix/key.txt"),
        "600\n# created: lab\nAGE-SECRET-KEY-1FIRSTKEYNOTREAL"
    );
    let mtime = seen("stat -c %Y.%y /var/lib/lab/sops-nix/key.txt");
    assert_eq!(
        deploy::deploy(&with(&k1)).expect("the same key again"),
        Outcome::Unchanged
    );
    assert_eq!(seen("stat -c %Y.%y /var/lib/lab/sops-nix/key.txt"), mtime);
    let second = deploy::deploy(&with(&k2)).expect("a new key");
    assert!(matches!(second, Outcome::Activated { .. }), "{second:?}");
    assert!(seen("cat /var/lib/lab/sops-nix/key.txt").ends_with("SECONDKEYNOTREAL"));
    assert!(
        !format!("{k2:?}").contains("SECONDKEY"),
        "an age key's Debug shows it"
    );
    // A new system with the same secrets is activated without sending them
    // again (the hash the host recorded says it holds them); `--force`
    // sends them anyway, for a host repaired by hand.
    let written = || seen("stat -c %y /run/nixmox/env /var/lib/lab/sops-nix/key.txt");
    let before = written();
    let third = deploy::deploy(&DeployRequest {
        system: &v1,
        ..with(&k2)
    })
    .expect("a new system with the same secrets");
    assert!(matches!(third, Outcome::Activated { .. }), "{third:?}");
    assert_eq!(current(&t), v1);
    assert_eq!(written(), before, "unchanged secrets were sent again");
    let forced = deploy::deploy(&DeployRequest {
        force: true,
        ..with(&k2)
    })
    .expect("a forced deploy");
    assert!(matches!(forced, Outcome::Activated { .. }), "{forced:?}");
    assert_ne!(written(), before, "--force did not send the secrets");

    // A first deploy that fails has nothing to roll back to, and says so.
    let t2 = lab.target("postgresql", 3);
    let bad2 = lab.system("postgresql", &format!("{SUBNET}.3"), "bad2", false, 0);
    let h2 = Health {
        timeout: 3,
        ..health(&format!("{SUBNET}.3"))
    };
    let err = deploy::deploy(&request(&t2, &settings, &bad2, &h2))
        .expect_err("unhealthy first system")
        .to_string();
    assert!(err.contains("first deploy"), "{err}");

    // The SSH connection dies during activation: activation completes and its result is read back.
    let slow = lab.system("dns", &format!("{SUBNET}.2"), "slow", true, 3);
    let control = lab.dir.path().join("ssh-control");
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        let _ = Command::new("pkill")
            .args(["-f", &format!("ControlPath={}", control.display())])
            .output();
    });
    let outcome = deploy::deploy(&request(&t, &settings, &slow, &h))
        .expect("deploy through a dropped connection");
    killer.join().expect("killer");
    assert_eq!(
        outcome,
        Outcome::Activated {
            from: Some(v2.clone())
        }
    );
    assert_eq!(current(&t), slow);

    // A host that is not there fails within the bound, naming itself.
    let ghost = lab.target("ghost", 99);
    let started = Instant::now();
    let err = deploy::deploy(&request(&ghost, &settings, &v1, &h))
        .expect_err("no such host")
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        err.contains("ghost (10.214.0.99)") && err.contains("cannot be reached"),
        "{err}"
    );
}
