//! The lab stack (a copy of examples/lab, so a test may change it) with its
//! own lab and state directories; taken down when dropped, whatever happened.
//! Its tests need root: they create network namespaces.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub fn require_root(what: &str) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")),
        "{what} needs root (it creates network namespaces): run the tests as root"
    );
}

pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let name = e.file_name();
        if name == ".nixmox" {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
}

/// Points a copy of the lab's manifest at the files of a lab kept in
/// `lab_dir` (its key, its CA, the verification user's password) instead
/// of the default /var/lib/nixmox-lab.
pub fn rehome(manifest: &Path, lab_dir: &Path) {
    let text = std::fs::read_to_string(manifest).expect("read manifest");
    let moved = text.replace("/var/lib/nixmox-lab/", &format!("{}/", lab_dir.display()));
    std::fs::write(manifest, moved).expect("write manifest");
}

pub struct Lab {
    pub lab_dir: tempfile::TempDir,
    pub state_dir: tempfile::TempDir,
    /// A copy of examples/lab.
    pub copy: tempfile::TempDir,
}

impl Lab {
    /// A fresh copy of examples/lab; nothing is brought up yet.
    pub fn new() -> Lab {
        let copy = tempfile::tempdir().expect("tempdir");
        copy_tree(
            &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/lab"),
            copy.path(),
        );
        // A git repository, as the lab is in this one: Nix copies only its
        // tracked files, never a key or password file a test puts beside them.
        for args in [&["init", "-q"][..], &["add", "-A"]] {
            let o = Command::new("git")
                .arg("-C")
                .arg(copy.path())
                .args(args)
                .output()
                .expect("git (scripts/setup.sh installs it)");
            assert!(
                o.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let lab_dir = tempfile::tempdir().expect("tempdir");
        rehome(&copy.path().join("manifest.nix"), lab_dir.path());
        Lab {
            lab_dir,
            state_dir: tempfile::tempdir().expect("tempdir"),
            copy,
        }
    }

    pub fn manifest(&self) -> PathBuf {
        self.copy.path().join("manifest.nix")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nixmox"));
        c.args(args).arg("-m").arg(self.manifest());
        self.env(&mut c);
        c
    }

    /// The environment nixmox runs in on this lab (also for a program that runs nixmox).
    pub fn env(&self, c: &mut Command) {
        c.env("NIXMOX_LAB_DIR", self.lab_dir.path())
            .env("NIXMOX_STATE_DIR", self.state_dir.path())
            .env("NIXMOX_CA_FILE", self.lab_dir.path().join("ca/ca.crt"))
            .env("NIXMOX_SSH_KEY", self.lab_dir.path().join("ssh/id_ed25519"))
            .env(
                "NIXMOX_SSH_KNOWN_HOSTS_FILE",
                self.lab_dir.path().join("ssh/known_hosts"),
            )
            .env(
                "NIXMOX_TERRAFORM",
                std::env::var("NIXMOX_TERRAFORM")
                    .unwrap_or_else(|_| "/opt/nixmox/bin/terraform".into()),
            )
            .env("NIXMOX_SOPS", sops())
            .env("NO_COLOR", "1");
    }

    /// The lab's SOPS file, decrypted with its own key (as its hosts get it).
    pub fn secrets(&self) -> serde_json::Value {
        let out = Command::new(sops())
            .args(["--decrypt", "--output-type", "json"])
            .arg(self.lab_dir.path().join("secrets/lab.sops.yaml"))
            .env(
                "SOPS_AGE_KEY_FILE",
                self.lab_dir.path().join("secrets/age.key"),
            )
            .output()
            .expect("sops");
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).expect("decrypted JSON")
    }

    pub fn nixmox(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run nixmox")
    }

    /// nixmox started with its standard output (and error) piped.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run nixmox")
    }

    /// nixmox `args` (with `NIXMOX_SSH_PERSIST=0`, so no connection it
    /// opens outlives it) under strace, and the programs it started: each
    /// one's name and first arguments (`["nix", "eval", "--json"]`).
    pub fn execs(&self, args: &[&str]) -> (Output, Vec<Vec<String>>) {
        let log = self.state_dir.path().join("execs.strace");
        let mut c = Command::new("strace");
        c.args([
            "-f",
            "-z",
            "-qq",
            "-s",
            "64",
            "-e",
            "trace=execve",
            "-e",
            "signal=none",
            "-o",
        ])
        .arg(&log)
        .arg(env!("CARGO_BIN_EXE_nixmox"))
        .args(args)
        .arg("-m")
        .arg(self.manifest())
        .env("NIXMOX_SSH_PERSIST", "0");
        self.env(&mut c);
        let o = c.output().expect("strace (scripts/setup.sh installs it)");
        let text = std::fs::read_to_string(&log).expect("strace log");
        let _ = std::fs::remove_file(&log);
        let execs = started(&text);
        (o, execs)
    }

    pub fn ssh(&self, ip: &str, command: &str) -> Output {
        let dir = self.lab_dir.path();
        Command::new("ssh")
            .args(["-i", &dir.join("ssh/id_ed25519").display().to_string()])
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=accept-new",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=5",
            ])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                dir.join("ssh/known_hosts").display()
            ))
            .arg(format!("root@{ip}"))
            .arg(command)
            .output()
            .expect("ssh")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.nixmox(&["lab", "down"]);
    }
}

/// The sops binary: `NIXMOX_SOPS`, else the one scripts/setup.sh installs.
/// The programs an `strace -f -e trace=execve` log shows started: each
/// one's name and first arguments (`["nix", "eval", "--json"]`).
pub fn started(text: &str) -> Vec<Vec<String>> {
    // `pid execve("path", ["argv0", …], …) = 0`; one strace cut in two
    // by another process ends `<unfinished ...>` and goes on in a line
    // `pid <... execve resumed>) = 0`. A failed exec (a directory of
    // PATH without the program) started nothing.
    let argv = |l: &str| -> Option<Vec<String>> {
        let list = l.split_once(", [")?.1.split_once(']')?.0;
        let args: Vec<String> = list
            .split(", ")
            .take(4)
            .map(|a| a.trim_matches('"').to_string())
            .collect();
        let name = args.first()?.rsplit('/').next()?.to_string();
        Some([vec![name], args[1..].to_vec()].concat())
    };
    let mut pending = std::collections::HashMap::new();
    let mut execs = Vec::new();
    for l in text.lines() {
        let pid = l.split_whitespace().next().unwrap_or("").to_string();
        if l.contains("<... execve resumed>") {
            if let Some(a) = pending.remove(&pid).filter(|_| l.ends_with("= 0")) {
                execs.push(a);
            }
        } else if l.contains("execve(") {
            let Some(a) = argv(l) else { continue };
            if l.ends_with("<unfinished ...>") {
                pending.insert(pid, a);
            } else if l.ends_with("= 0") {
                execs.push(a);
            }
        }
    }
    execs
}

pub fn sops() -> String {
    std::env::var("NIXMOX_SOPS").unwrap_or_else(|_| "/opt/nixmox/bin/sops".into())
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
