//! Where a run's SSH connections live, and whether they outlive it.
//!
//! Opening a connection is most of what a look at a host costs: on OpenSSH
//! before 9.9 the default post-quantum key exchange alone is ~70 ms of the
//! control machine's CPU per host, so a re-run on a stack of forty hosts
//! spends seconds shaking hands before it asks anything. With
//! `nixos.ssh.persist = N` (default 60) each host's connection stays open N
//! idle seconds after the run, in a directory of this user's own, and a run
//! started within that time rides on it — what Ansible does with
//! `ControlPersist=60s`. `persist = 0` ends every connection with the run.
//!
//! The sockets are named by a hash of everything that decides how a
//! connection is made (user, address, port, key file, known-hosts policy
//! and file), so a run with another key or another known-hosts policy
//! never borrows a connection it would not have opened itself. The shared
//! directory is used only when it is a real directory owned by this user
//! and closed to everyone else; otherwise the run keeps private ones of its
//! own, as with `persist = 0`.

use super::ssh::SshTarget;
use crate::manifest::Manifest;
use sha2::{Digest, Sha256};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Idle seconds a connection outlives its run by default.
pub const DEFAULT_PERSIST: u64 = 60;
/// The longest a connection may be kept (an hour).
pub const MAX_PERSIST: u64 = 3600;
/// Sockets need a short path: the kernel allows 108 bytes, and ssh adds a
/// 17-character suffix while it creates one.
const MAX_DIR_LEN: usize = 64;

/// The connections of one run.
#[derive(Debug, Clone)]
pub struct Control {
    /// The directory of the sockets.
    pub dir: PathBuf,
    /// `ControlPersist`, in seconds.
    pub persist: u64,
    /// Whether the connections outlive the run (the shared directory).
    pub shared: bool,
}

impl Control {
    /// The connections for a run on `m`'s stack: `NIXMOX_SSH_PERSIST`, else
    /// `nixos.ssh.persist`, decides whether they outlive it.
    pub fn for_run(m: &Manifest) -> Result<Control, String> {
        Ok(Control::with_persist(persist(m)?))
    }

    /// The connections of a run that keeps them `persist` idle seconds.
    pub fn with_persist(persist: u64) -> Control {
        let base = base_dir();
        if persist > 0 {
            let dir = shared_dir(&base);
            match private_dir(&dir) {
                Ok(()) => {
                    return Control {
                        dir,
                        persist,
                        shared: true,
                    }
                }
                Err(why) => eprintln!(
                    "nixmox: {}: {why}; this run's SSH connections end with it",
                    dir.display()
                ),
            }
        }
        Control::private(&base)
    }

    /// The connections runs kept, when there may be any: the shared
    /// directory, if it exists and is private. Creates nothing, and is
    /// looked at whatever `persist` says now (earlier runs may have kept
    /// connections with another setting).
    pub fn kept() -> Option<Control> {
        let dir = shared_dir(&base_dir());
        is_private(&dir).ok()?;
        Some(Control {
            dir,
            persist: DEFAULT_PERSIST,
            shared: true,
        })
    }

    /// A directory of the run's own, with a name nobody can guess; its
    /// connections end with the run ([`Control::end`]).
    fn private(base: &Path) -> Control {
        let dir = tempfile::Builder::new()
            .prefix("nixmox-ssh-")
            .tempdir_in(base)
            .map(tempfile::TempDir::keep)
            .unwrap_or_else(|_| base.join(format!("nixmox-ssh-{}", std::process::id())));
        Control {
            dir,
            persist: DEFAULT_PERSIST,
            shared: false,
        }
    }

    /// The run is over: a run's own connections are ended now; shared
    /// ones stay for the next run, each until it has been idle `persist`
    /// seconds.
    pub fn end(&self) {
        if !self.shared {
            super::ssh_mux::close_all(&self.dir);
        }
    }

    /// Ends the kept connections to `targets` (hosts being destroyed or
    /// replaced: a connection to a host that is gone would only stall the
    /// next run until its keep-alives give up).
    pub fn close(targets: &[SshTarget]) {
        let sockets: Vec<PathBuf> = targets.iter().map(SshTarget::control_path).collect();
        super::ssh_mux::terminate_all(&sockets);
    }
}

/// `NIXMOX_SSH_PERSIST` if set, else the manifest's `nixos.ssh.persist`.
pub fn persist(m: &Manifest) -> Result<u64, String> {
    match std::env::var("NIXMOX_SSH_PERSIST") {
        Ok(text) if !text.is_empty() => parse_persist(&text).ok_or_else(|| {
            format!(
                "NIXMOX_SSH_PERSIST={}: expected whole seconds from 0 to {MAX_PERSIST} \
                 (0 ends each run's SSH connections with it)",
                crate::manifest::syntax::quote(&text)
            )
        }),
        _ => Ok(m.nixos.ssh.persist),
    }
}

fn parse_persist(text: &str) -> Option<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|s| *s <= MAX_PERSIST)
}

/// The socket of one host's connection in `dir`: a hash of how the
/// connection is made, 16 hex digits (short, for the socket path limit).
pub fn socket_name(t: &SshTarget) -> String {
    let mut h = Sha256::new();
    for part in [
        t.user.as_str(),
        &t.address.to_string(),
        &t.port.to_string(),
        &t.key
            .as_ref()
            .map(|k| k.display().to_string())
            .unwrap_or_default(),
        t.known_hosts.option(),
        &t.known_hosts_file
            .as_ref()
            .map(|k| k.display().to_string())
            .unwrap_or_default(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `$XDG_RUNTIME_DIR` (a per-user tmpfs) when set, else the temporary
/// directory; /tmp when that path is long or has a space in it (ssh
/// options travel through NIX_SSHOPTS, which Nix splits on spaces).
fn base_dir() -> PathBuf {
    let usable = |p: &Path| {
        let text = p.to_string_lossy();
        p.is_absolute()
            && text.len() <= MAX_DIR_LEN - 24
            && !text.chars().any(|c| c.is_whitespace() || c == '%')
            && p.is_dir()
    };
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| usable(p))
        .or_else(|| Some(std::env::temp_dir()).filter(|p| usable(p)))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// The directory every run of this user keeps its connections in.
fn shared_dir(base: &Path) -> PathBuf {
    base.join(format!("nixmox-ssh-{}", euid()))
}

/// Creates `dir` (mode 0700) unless it exists; either way it must then
/// pass [`is_private`].
fn private_dir(dir: &Path) -> Result<(), String> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create it ({e})")),
    }
    is_private(dir)
}

/// `dir` is a directory, not a link, owned by this user and closed to all
/// others: a socket in a directory someone else controls could be theirs.
fn is_private(dir: &Path) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("cannot read it ({e})"))?;
    if !meta.file_type().is_dir() {
        return Err("it is not a directory".into());
    }
    if meta.uid() != euid() {
        return Err(format!(
            "it belongs to uid {}, not to this user",
            meta.uid()
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "others may use it (mode {:o}); `chmod 700` it to keep connections between runs",
            meta.permissions().mode() & 0o777
        ));
    }
    Ok(())
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persist_is_whole_seconds_within_an_hour() {
        assert_eq!(parse_persist("0"), Some(0));
        assert_eq!(parse_persist(" 60 "), Some(60));
        assert_eq!(parse_persist("3600"), Some(3600));
        for bad in ["3601", "-1", "1.5", "60s", "", "ten"] {
            assert_eq!(parse_persist(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_a_private_directory_of_this_user_is_shared() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ok = tmp.path().join("mine");
        private_dir(&ok).expect("created private");
        assert_eq!(
            std::fs::metadata(&ok).expect("meta").permissions().mode() & 0o777,
            0o700
        );
        private_dir(&ok).expect("again: it exists and is private");

        let open = tmp.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let e = private_dir(&open).expect_err("others may enter");
        assert!(e.contains("mode 755") && e.contains("chmod 700"), "{e}");

        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&ok, &link).expect("symlink");
        assert!(private_dir(&link)
            .expect_err("a link")
            .contains("not a directory"));

        let file = tmp.path().join("file");
        std::fs::write(&file, "").expect("file");
        assert!(private_dir(&file).is_err());
    }
}
