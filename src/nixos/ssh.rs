//! OpenSSH as the transport to hosts: one multiplexed connection per host,
//! batch mode, a connect timeout and a configurable known-hosts policy. The
//! argument vectors are built by pure functions and tested exactly.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// What to do with a host key not seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownHosts {
    /// Trust on first use, refuse changes (the default).
    AcceptNew,
    /// Only keys already in the known-hosts file.
    Strict,
    /// Accept anything: only for throwaway test hosts.
    Off,
}

impl KnownHosts {
    pub fn parse(text: &str) -> Option<KnownHosts> {
        match text {
            "accept-new" => Some(KnownHosts::AcceptNew),
            "strict" | "yes" => Some(KnownHosts::Strict),
            "off" | "no" => Some(KnownHosts::Off),
            _ => None,
        }
    }

    pub(super) fn option(self) -> &'static str {
        match self {
            KnownHosts::AcceptNew => "StrictHostKeyChecking=accept-new",
            KnownHosts::Strict => "StrictHostKeyChecking=yes",
            KnownHosts::Off => "StrictHostKeyChecking=no",
        }
    }
}

/// How to reach one host.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// The service's name, for messages.
    pub name: String,
    pub address: IpAddr,
    pub user: String,
    pub port: u16,
    pub key: Option<PathBuf>,
    pub known_hosts: KnownHosts,
    pub known_hosts_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// Directory for the multiplexing sockets.
    pub control_dir: PathBuf,
    /// Idle seconds the connection outlives its last command
    /// (`ControlPersist`; see [`super::ssh_control`]); 0: no shared
    /// connection at all, each command opens its own ([`SshTarget::fresh`]).
    pub persist: u64,
}

impl SshTarget {
    pub fn destination(&self) -> String {
        match self.address {
            IpAddr::V6(v6) => format!("{}@{v6}", self.user),
            IpAddr::V4(v4) => format!("{}@{v4}", self.user),
        }
    }

    /// The options every ssh invocation for this host shares (also `NIX_SSHOPTS`).
    pub fn options(&self) -> Vec<String> {
        let mut o = vec![
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("ConnectTimeout={}", self.connect_timeout.as_secs().max(1)),
            "-o".into(),
            self.known_hosts.option().into(),
        ];
        o.extend(self.multiplexing());
        o.extend(
            [
                "-o",
                "ServerAliveInterval=5",
                "-o",
                "ServerAliveCountMax=3",
                "-o",
                "LogLevel=ERROR",
                "-p",
            ]
            .map(String::from),
        );
        o.push(self.port.to_string());
        if let Some(file) = &self.known_hosts_file {
            o.push("-o".into());
            o.push(format!("UserKnownHostsFile={}", file.display()));
        }
        if let Some(key) = &self.key {
            o.push("-i".into());
            o.push(key.display().to_string());
            o.push("-o".into());
            o.push("IdentitiesOnly=yes".into());
        }
        o
    }

    /// The same host over a connection of its own, opened for the one
    /// command: what proves that a new connection can still be made (a
    /// new system that broke sshd leaves the connections opened before it
    /// working).
    pub fn fresh(&self) -> SshTarget {
        SshTarget {
            persist: 0,
            ..self.clone()
        }
    }

    /// One connection per host that every command rides on, kept
    /// `persist` idle seconds; none for a [`SshTarget::fresh`] target.
    fn multiplexing(&self) -> Vec<String> {
        if self.persist == 0 {
            return ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
                .map(String::from)
                .to_vec();
        }
        vec![
            "-o".into(),
            "ControlMaster=auto".into(),
            "-o".into(),
            // ssh expands %-tokens in the path: a literal % is doubled.
            format!(
                "ControlPath={}",
                self.control_path().display().to_string().replace('%', "%%")
            ),
            "-o".into(),
            format!("ControlPersist={}", self.persist),
        ]
    }

    /// The socket of this host's multiplexed connection.
    pub fn control_path(&self) -> PathBuf {
        self.control_dir.join(super::ssh_control::socket_name(self))
    }

    /// `ssh <options> -- <user@host> <command>`: after `--` nothing is read
    /// as an option, neither the destination nor the command.
    pub fn argv(&self, command: &str) -> Vec<String> {
        let mut a = self.options();
        a.push("--".into());
        a.push(self.destination());
        a.push(command.into());
        a
    }

    /// `NIX_SSHOPTS` for `nix copy --to ssh://…`. Nix splits it on spaces, so
    /// an option with a space in it (a key path, a known-hosts file) cannot
    /// travel there and is refused, naming it, instead of being split.
    pub fn nix_sshopts(&self) -> Result<String, String> {
        let options = self.options();
        if let Some(bad) = options.iter().find(|o| o.chars().any(char::is_whitespace)) {
            return Err(format!(
                "host {} ({}): the ssh option {} has a space in it, and nix copy passes ssh options \
                 through NIX_SSHOPTS, which Nix splits on spaces; use a key and known-hosts \
                 file (and TMPDIR) whose paths have no spaces",
                self.name,
                self.address,
                crate::manifest::syntax::quote(bad)
            ));
        }
        Ok(options.join(" "))
    }
}

#[derive(Debug)]
pub struct RemoteOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl RemoteOutput {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("host {name} ({address}): cannot run ssh: {message}")]
    Spawn {
        name: String,
        address: IpAddr,
        message: String,
    },
    #[error("host {name} ({address}): `{command}` did not finish within {seconds} s")]
    Timeout {
        name: String,
        address: IpAddr,
        command: String,
        seconds: u64,
    },
    #[error("host {name} ({address}) cannot be reached over SSH: {message}. Check that it is up and that port {port} accepts the key")]
    Unreachable {
        name: String,
        address: IpAddr,
        port: u16,
        message: String,
    },
    #[error("host {name} ({address}): `{command}` printed more than {mib} MiB on its {stream}; nixmox stopped it")]
    Flood {
        name: String,
        address: IpAddr,
        command: String,
        stream: &'static str,
        mib: usize,
    },
}

/// Runs `command` on the host, feeding `stdin`, within `limit`. Exit code 255
/// is ssh's own failure (the host could not be reached).
pub fn run(
    t: &SshTarget,
    command: &str,
    stdin: Option<&[u8]>,
    limit: Duration,
) -> Result<RemoteOutput, SshError> {
    let _ = std::fs::create_dir_all(&t.control_dir);
    let mut cmd = Command::new("ssh");
    cmd.args(t.argv(command));
    let done = crate::process::run(cmd, stdin, limit).map_err(|e| match e {
        crate::process::Bounded::Timeout => SshError::Timeout {
            name: t.name.clone(),
            address: t.address,
            command: first_word(command),
            seconds: limit.as_secs(),
        },
        crate::process::Bounded::Spawn(e) => SshError::Spawn {
            name: t.name.clone(),
            address: t.address,
            message: e.to_string(),
        },
        crate::process::Bounded::TooMuch { stream } => SshError::Flood {
            name: t.name.clone(),
            address: t.address,
            command: first_word(command),
            stream,
            mib: crate::process::MAX_OUTPUT >> 20,
        },
    })?;
    let result = RemoteOutput {
        code: done.code,
        stdout: done.stdout,
        stderr: done.stderr,
    };
    // What was sent on stdin (env files, SQL) is never logged, only the command and its output.
    crate::report::runlog::append(
        "ssh.log",
        &format!("[{} {}] {command}", t.name, t.address),
        result.code,
        &result.stdout,
        &result.stderr,
    );
    if result.code == Some(255) {
        return Err(SshError::Unreachable {
            name: t.name.clone(),
            address: t.address,
            port: t.port,
            message: result.stderr.trim().to_string(),
        });
    }
    Ok(result)
}

fn first_word(command: &str) -> String {
    command
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SshTarget {
        SshTarget {
            name: "wiki".into(),
            address: "10.213.0.10".parse().expect("ip"),
            user: "root".into(),
            port: 22,
            key: Some("/lab/ssh/id_ed25519".into()),
            known_hosts: KnownHosts::AcceptNew,
            known_hosts_file: Some("/lab/ssh/known_hosts".into()),
            connect_timeout: Duration::from_secs(5),
            control_dir: "/tmp/nixmox-ssh".into(),
            persist: 60,
        }
    }

    #[test]
    fn exact_ssh_argv() {
        assert_eq!(
            target().argv("readlink -f /run/current-system"),
            [
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=5",
                "-o",
                "StrictHostKeyChecking=accept-new",
                "-o",
                "ControlMaster=auto",
                "-o",
                "ControlPath=/tmp/nixmox-ssh/f6807305e11a3c63",
                "-o",
                "ControlPersist=60",
                "-o",
                "ServerAliveInterval=5",
                "-o",
                "ServerAliveCountMax=3",
                "-o",
                "LogLevel=ERROR",
                "-p",
                "22",
                "-o",
                "UserKnownHostsFile=/lab/ssh/known_hosts",
                "-i",
                "/lab/ssh/id_ed25519",
                "-o",
                "IdentitiesOnly=yes",
                "--",
                "root@10.213.0.10",
                "readlink -f /run/current-system"
            ]
        );
        assert!(target()
            .nix_sshopts()
            .expect("no spaces")
            .contains("-p 22 -o UserKnownHostsFile=/lab/ssh/known_hosts"));
        let spaced = SshTarget {
            key: Some("/home/me/my keys/id".into()),
            ..target()
        };
        let e = spaced.nix_sshopts().expect_err("a space in a key path");
        assert!(
            e.contains("\"/home/me/my keys/id\"") && e.contains("NIX_SSHOPTS"),
            "{e}"
        );
        // A fresh target opens a connection of its own.
        let fresh = target().fresh().options().join(" ");
        assert!(
            fresh.contains("-o ControlMaster=no -o ControlPath=none")
                && !fresh.contains("ControlPersist"),
            "{fresh}"
        );
        // Another key or known-hosts policy: another connection.
        let other_key = SshTarget {
            key: Some("/other/id".into()),
            ..target()
        };
        assert_ne!(other_key.control_path(), target().control_path());
        let strict = SshTarget {
            known_hosts: KnownHosts::Strict,
            ..target()
        };
        assert_ne!(strict.control_path(), target().control_path());
        // A % in the directory reaches ssh doubled (it expands %-tokens).
        let percent = SshTarget {
            control_dir: "/tmp/a%b".into(),
            ..target()
        };
        assert!(percent
            .options()
            .iter()
            .any(|o| o.starts_with("ControlPath=/tmp/a%%b/")));
        assert_eq!(KnownHosts::parse("strict"), Some(KnownHosts::Strict));
        assert_eq!(KnownHosts::parse("maybe"), None);
    }
}
