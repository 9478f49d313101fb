//! One lab host: a network namespace on the lab bridge, a private mount
//! namespace (tmpfs `/run`, its own `/nix/var/nix/profiles` and
//! `/var/lib/lab`, an empty `/root`) and an sshd, the process that holds both namespaces.

use super::net::{self, ip};
use super::{LabConfig, LabError};
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Everything inside the host's mount namespace, run by `sh -c` with the
/// paths passed as environment values (never spliced into the script).
const HOST_INIT: &str = r#"set -eu
mount -t tmpfs -o mode=0755 nixmox-run /run
mkdir -p /run/sshd /run/nixmox
chmod 0700 /run/nixmox
printf '%s\n' "$NIXMOX_LAB" > /run/nixmox/lab
mount --bind "$NIXMOX_PROFILES" /nix/var/nix/profiles
mount --bind "$NIXMOX_STATE" /var/lib/lab
# nixmox's own records on the host (its guard's rollbacks), as on a real host.
mount --bind "$NIXMOX_VARLIB" /var/lib/nixmox
# Root's home is the host's own, empty like a fresh NixOS host's: the build
# machine's shell profile would otherwise run in every SSH session.
mount -t tmpfs -o mode=0700 nixmox-home /root
hostname "$NIXMOX_HOST"
exec /usr/sbin/sshd -D -e -f "$NIXMOX_SSHD_CONFIG"
"#;

fn sshd_config(cfg: &LabConfig, name: &str, ip: Ipv4Addr) -> String {
    let host = cfg.host_dir(name);
    format!(
        "# sshd of lab host {name}\n\
         ListenAddress {ip}:22\n\
         HostKey {hostkey}\n\
         PermitRootLogin prohibit-password\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         AuthorizedKeysFile {keys}\n\
         StrictModes no\n\
         PidFile /run/sshd.pid\n\
         MaxStartups 100:30:200\n\
         MaxSessions 100\n\
         Subsystem sftp internal-sftp\n\
         # Where the lab keeps its CA and per-host state, for the systems' activation.\n\
         SetEnv LAB={lab}\n",
        lab = cfg.dir.display(),
        hostkey = host.join("ssh_host_ed25519_key").display(),
        keys = cfg.dir.join("ssh").join("authorized_keys").display(),
    )
}

/// Creates the host (idempotent: an existing, answering host is left alone).
pub fn up(cfg: &LabConfig, name: &str, addr: Ipv4Addr) -> Result<(), LabError> {
    crate::manifest::syntax::service_name(name).map_err(LabError::new)?;
    if net::netns_exists(name) && ssh_answers(addr, Duration::from_millis(300)) {
        return Ok(());
    }
    // A half-made host from an interrupted run is removed first.
    down(cfg, name, addr)?;
    let dir = cfg.host_dir(name);
    for sub in ["profiles", "state", "nixmox"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| {
            LabError::new(format!("cannot create {}: {e}", dir.join(sub).display()))
        })?;
    }
    for point in ["/var/lib/lab", "/var/lib/nixmox"] {
        std::fs::create_dir_all(point)
            .map_err(|e| LabError::new(format!("cannot create the mount point {point}: {e}")))?;
    }
    let key = dir.join("ssh_host_ed25519_key");
    if !key.exists() {
        net::ssh_keygen(&key, &format!("root@{name}"))?;
    }
    let config = dir.join("sshd_config");
    std::fs::write(&config, sshd_config(cfg, name, addr))
        .map_err(|e| LabError::new(format!("cannot write {}: {e}", config.display())))?;

    ip(&net::add_netns(name))?;
    ip(&net::add_veth(addr))?;
    ip(&net::move_peer(addr, name))?;
    ip(&net::attach(addr))?;
    let peer = net::peer(addr);
    ip(&net::inside(name, &["link", "set", &peer, "name", "eth0"]))?;
    ip(&net::inside(
        name,
        &[
            "addr",
            "add",
            &format!("{addr}/{}", cfg.prefix),
            "dev",
            "eth0",
        ],
    ))?;
    // A host made anew keeps its link address (derived from its IP address,
    // locally administered), so the other hosts' neighbour caches stay right
    // for it; it also announces itself (gratuitous ARP) when its link comes up.
    let [a, b, c, d] = addr.octets();
    let mac = format!("02:6e:{a:02x}:{b:02x}:{c:02x}:{d:02x}");
    ip(&net::inside(
        name,
        &["link", "set", "eth0", "address", &mac],
    ))?;
    net::run(
        "ip",
        &[
            "netns".into(),
            "exec".into(),
            net::netns(name),
            "sysctl".into(),
            "-q".into(),
            "-w".into(),
            "net.ipv4.conf.eth0.arp_notify=1".into(),
        ],
    )?;
    ip(&net::inside(name, &["link", "set", "eth0", "up"]))?;
    ip(&net::inside(name, &["link", "set", "lo", "up"]))?;

    let log = std::fs::File::create(dir.join("sshd.log"))
        .map_err(|e| LabError::new(format!("cannot create the sshd log: {e}")))?;
    let log2 = log.try_clone().map_err(|e| LabError::new(e.to_string()))?;
    Command::new("setsid")
        .args([
            "-f",
            "ip",
            "netns",
            "exec",
            &net::netns(name),
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            HOST_INIT,
        ])
        .env("NIXMOX_PROFILES", dir.join("profiles"))
        .env("NIXMOX_STATE", dir.join("state"))
        .env("NIXMOX_VARLIB", dir.join("nixmox"))
        .env("NIXMOX_HOST", name)
        .env("NIXMOX_LAB", &cfg.dir)
        .env("NIXMOX_SSHD_CONFIG", &config)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .status()
        .map_err(|e| LabError::new(format!("cannot start the sshd of {name}: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if ssh_answers(addr, Duration::from_millis(200)) {
            return publish_host_key(cfg, addr, &key.with_extension("pub"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
    Err(LabError::new(format!(
        "host {name} ({addr}): sshd did not answer within 20 s; its log says: {}",
        log.trim()
    )))
}

/// A host made anew has a new host key, as a re-created container has: the
/// lab, which made it, records that key in its known_hosts in place of any
/// older one for the address (as a provisioning system reports a new
/// machine's keys), so strict host-key checking keeps working. Hosts made
/// side by side take turns on the file.
fn publish_host_key(
    cfg: &LabConfig,
    addr: Ipv4Addr,
    public: &std::path::Path,
) -> Result<(), LabError> {
    use std::os::unix::io::AsRawFd;
    let known = cfg.known_hosts();
    let key = std::fs::read_to_string(public)
        .map_err(|e| LabError::new(format!("cannot read {}: {e}", public.display())))?;
    let key: Vec<&str> = key.split_whitespace().take(2).collect();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(known.with_extension("lock"))
        .map_err(|e| LabError::new(format!("cannot lock {}: {e}", known.display())))?;
    // SAFETY: flock on a file this function holds open; released when it is closed.
    unsafe {
        libc::flock(lock.as_raw_fd(), libc::LOCK_EX);
    }
    if known.exists() {
        let _ = Command::new("ssh-keygen")
            .arg("-R")
            .arg(addr.to_string())
            .arg("-f")
            .arg(&known)
            .output();
        let _ = std::fs::remove_file(known.with_extension("old"));
    }
    let mut text = std::fs::read_to_string(&known).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("{addr} {}\n", key.join(" ")));
    std::fs::write(&known, text)
        .map_err(|e| LabError::new(format!("cannot write {}: {e}", known.display())))
}

/// Removes the host: its processes, namespace, link and directory.
pub fn down(cfg: &LabConfig, name: &str, addr: Ipv4Addr) -> Result<(), LabError> {
    kill_all(name);
    if net::netns_exists(name) {
        ip(&net::delete_netns(name))?;
    }
    // Deleting the namespace takes the veth pair with it, a moment later.
    let veth = net::veth(addr);
    if net::link_exists(&veth) {
        if let Err(e) = ip(&net::delete_link(&veth)) {
            if net::link_exists(&veth) {
                return Err(e);
            }
        }
    }
    let dir = cfg.host_dir(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| LabError::new(format!("cannot remove {}: {e}", dir.display())))?;
    }
    Ok(())
}

/// Every process in the host's network namespace gets SIGTERM, then SIGKILL.
fn kill_all(name: &str) {
    let pids = |_: ()| -> Vec<String> {
        Command::new("ip")
            .args(["netns", "pids", &net::netns(name)])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    for signal in ["-TERM", "-KILL"] {
        let list = pids(());
        if list.is_empty() {
            return;
        }
        let _ = Command::new("kill").arg(signal).args(&list).output();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !pids(()).is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn ssh_answers(addr: Ipv4Addr, timeout: Duration) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from((addr, 22)), timeout).is_ok()
}

#[derive(Debug, Serialize)]
pub struct HostStatus {
    pub name: String,
    pub ip: String,
    pub namespace: bool,
    pub ssh: bool,
    pub processes: usize,
}

pub fn status(name: &str, addr: Ipv4Addr) -> HostStatus {
    let processes = Command::new("ip")
        .args(["netns", "pids", &net::netns(name)])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .count()
        })
        .unwrap_or(0);
    HostStatus {
        name: name.to_string(),
        ip: addr.to_string(),
        namespace: net::netns_exists(name),
        ssh: ssh_answers(addr, Duration::from_millis(300)),
        processes,
    }
}

/// `ssh` options for reaching lab hosts as root with the lab's key.
pub fn ssh_options(cfg: &LabConfig) -> Vec<String> {
    vec![
        "-i".into(),
        cfg.ssh_key().display().to_string(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "StrictHostKeyChecking=accept-new".into(),
        "-o".into(),
        format!("UserKnownHostsFile={}", cfg.known_hosts().display()),
        "-o".into(),
        "ConnectTimeout=5".into(),
        "-o".into(),
        "LogLevel=ERROR".into(),
    ]
}

/// Runs a command on a lab host over SSH.
pub fn ssh(cfg: &LabConfig, addr: Ipv4Addr, command: &str) -> Result<String, LabError> {
    let mut args = ssh_options(cfg);
    args.push(format!("root@{addr}"));
    args.push(command.to_string());
    net::run("ssh", &args)
}
