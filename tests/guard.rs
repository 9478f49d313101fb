//! The activation guard's protocol, run here with the real shell, flock and
//! coreutils against stand-in systems (a `switch-to-configuration` that
//! records which system is active, a `nix-env` that moves the profile's
//! link): confirmed in time it stays; not heard from it rolls back and
//! leaves a record; a sign of life holds it off; confirmation racing the
//! timeout has exactly one outcome, every time. Bounded: each wait is a few
//! seconds at most.

use nixmox::nixos::guard::{self, Claim, Decided, Record};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Host {
    tmp: tempfile::TempDir,
}

impl Host {
    /// Two systems, `old` active, and a profile at generation 42 (`new`)
    /// whose previous generation 41 is `old`.
    fn new(new_exit: i32) -> Host {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        for (name, exit) in [("old", 0), ("new", new_exit)] {
            let bin = root.join(name).join("bin");
            std::fs::create_dir_all(&bin).expect("mkdir");
            let stc = bin.join("switch-to-configuration");
            std::fs::write(
                &stc,
                format!(
                    "#!/bin/sh\necho {name} > {}\nexit {exit}\n",
                    root.join("active").display()
                ),
            )
            .expect("write");
            chmod(&stc);
        }
        std::fs::write(root.join("active"), "old\n").expect("write");
        std::os::unix::fs::symlink(root.join("old"), root.join("system-41-link")).expect("link");
        std::os::unix::fs::symlink(root.join("new"), root.join("system-42-link")).expect("link");
        std::os::unix::fs::symlink(root.join("system-42-link"), root.join("profile"))
            .expect("link");
        // nix-env -p PROFILE --rollback: the link one generation back.
        let tools = root.join("tools");
        std::fs::create_dir_all(&tools).expect("mkdir");
        let nix_env = tools.join("nix-env");
        std::fs::write(
            &nix_env,
            format!(
                "#!/bin/sh\n[ \"$1\" = -p ] || exit 2\ncase $3 in --rollback) to=41 ;; --switch-generation) to=$4 ;; *) exit 2 ;; esac\nln -sfn {}/system-$to-link \"$2\"\n",
                root.display()
            ),
        )
        .expect("write");
        chmod(&nix_env);
        std::fs::create_dir_all(root.join("run")).expect("mkdir");
        Host { tmp }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn dir(&self) -> String {
        self.path("run/guard-1").display().to_string()
    }

    fn sh(&self, script: &str) -> String {
        let path = format!(
            "{}:{}",
            self.path("tools").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let o = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("PATH", path)
            .output()
            .expect("sh");
        assert!(
            o.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn start(&self, timeout: u64) {
        let new = self.path("new").display().to_string();
        let old = self.path("old").display().to_string();
        let cmd = guard::start_in(
            &new,
            "switch",
            Some((&old, Some(41))),
            timeout,
            &self.dir(),
            &self.path("profile").display().to_string(),
            &self.path("records").display().to_string(),
        );
        self.sh(&cmd);
    }

    /// The activation's exit status, once it is there (within 5 s).
    fn status(&self) -> String {
        guard::parse_status(&self.sh(&guard::status(&self.dir(), 50))).1
    }

    fn claim(&self, what: Claim) -> Decided {
        guard::parse_claim(&self.sh(&guard::claim(&self.dir(), what)))
    }

    fn active(&self) -> String {
        std::fs::read_to_string(self.path("active"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    fn record(&self) -> Option<Record> {
        let text = std::fs::read_to_string(self.path("records/guard-1")).ok()?;
        Record::parse("guard-1", &text)
    }

    /// Waits (at most `secs`) for the guard's rollback to be recorded.
    fn wait_record(&self, secs: u64) -> Option<Record> {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if let Some(r) = self.record() {
                return Some(r);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

fn chmod(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn confirmed_in_time_it_stays() {
    let h = Host::new(0);
    h.start(2);
    assert_eq!(h.status(), "0");
    assert_eq!(h.active(), "new");
    assert_eq!(h.claim(Claim::Confirm), Decided::Won);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(h.active(), "new", "rolled back after a confirmation");
    assert!(h.record().is_none());
    // Asking again says the same.
    assert_eq!(h.claim(Claim::Confirm), Decided::Won);
}

#[test]
fn not_heard_from_it_rolls_back_and_says_so() {
    let h = Host::new(0);
    h.start(1);
    assert_eq!(h.status(), "0");
    let r = h.wait_record(8).expect("a rollback record");
    assert_eq!(h.active(), "old");
    assert_eq!(r.generation, Some(41));
    assert_eq!(r.to, h.path("old").display().to_string());
    assert_eq!(r.from, h.path("new").display().to_string());
    assert_eq!(r.status, 0);
    assert!(r
        .describe()
        .starts_with("rolled itself back to generation 41: not confirmed within 1 s"));
    // A confirmation that comes late is refused, and says why.
    assert_eq!(h.claim(Claim::Confirm), Decided::RolledBack);
    assert_eq!(
        std::fs::read_link(h.path("profile")).expect("profile"),
        h.path("system-41-link")
    );
}

#[test]
fn a_sign_of_life_holds_it_off() {
    let h = Host::new(0);
    h.start(2);
    assert_eq!(h.status(), "0");
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(700));
        h.sh(&guard::heartbeat(&h.dir()));
    }
    assert!(
        h.record().is_none(),
        "rolled back while nixmox was in touch"
    );
    assert_eq!(h.claim(Claim::Confirm), Decided::Won);
    assert_eq!(h.active(), "new");
}

#[test]
fn a_failed_activation_is_nixmoxs_to_handle() {
    let h = Host::new(3);
    h.start(1);
    assert_eq!(h.status(), "3");
    assert_eq!(h.claim(Claim::TakeOver), Decided::Won);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        h.record().is_none(),
        "the guard rolled back what nixmox took over"
    );
}

/// Confirmation racing the timeout: whichever wins, the host, the record
/// and nixmox's answer agree, in every round.
#[test]
fn a_race_has_exactly_one_outcome() {
    let mut outcomes = (0, 0);
    for round in 0..8u64 {
        let h = Host::new(0);
        h.start(1);
        assert_eq!(h.status(), "0");
        // Around the guard's deadline: 0.6 to 1.3 s after the switch.
        std::thread::sleep(Duration::from_millis(600 + round * 100));
        match h.claim(Claim::Confirm) {
            Decided::Won => {
                std::thread::sleep(Duration::from_millis(1500));
                assert!(
                    h.record().is_none(),
                    "round {round}: confirmed and rolled back"
                );
                assert_eq!(h.active(), "new", "round {round}");
                outcomes.0 += 1;
            }
            Decided::RolledBack => {
                let r = h.wait_record(5).expect("the guard's record");
                assert_eq!(r.status, 0);
                assert_eq!(h.active(), "old", "round {round}");
                outcomes.1 += 1;
            }
            other => panic!("round {round}: {other:?}"),
        }
    }
    assert_eq!(outcomes.0 + outcomes.1, 8);
}
