//! Command lines for the lab's network, as pure functions (each tested as an
//! exact argument vector), and a runner that names what failed.

use super::LabError;
use std::net::Ipv4Addr;
use std::process::Command;

pub const BRIDGE: &str = "nmxlab0";

/// The namespace of a lab host.
pub fn netns(host: &str) -> String {
    format!("nixmox-{host}")
}

/// The root-side veth of the host at `ip`: unique per address, within the 15-byte limit.
pub fn veth(ip: Ipv4Addr) -> String {
    format!("nmx{:08x}", u32::from(ip))
}

pub fn peer(ip: Ipv4Addr) -> String {
    format!("{}p", veth(ip))
}

fn v(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Blocks the subnet before anything else exists: a lab address never follows the default route.
pub fn unreachable_route(subnet: &str) -> Vec<String> {
    v(&["route", "replace", "unreachable", subnet, "metric", "4000"])
}

pub fn delete_unreachable_route(subnet: &str) -> Vec<String> {
    v(&["route", "del", "unreachable", subnet, "metric", "4000"])
}

pub fn add_bridge() -> Vec<String> {
    v(&["link", "add", BRIDGE, "type", "bridge"])
}

pub fn bridge_address(gateway: Ipv4Addr, prefix: u8) -> Vec<String> {
    v(&[
        "addr",
        "replace",
        &format!("{gateway}/{prefix}"),
        "dev",
        BRIDGE,
    ])
}

pub fn link_up(dev: &str) -> Vec<String> {
    v(&["link", "set", dev, "up"])
}

pub fn delete_link(dev: &str) -> Vec<String> {
    v(&["link", "del", dev])
}

pub fn add_netns(host: &str) -> Vec<String> {
    v(&["netns", "add", &netns(host)])
}

pub fn delete_netns(host: &str) -> Vec<String> {
    v(&["netns", "del", &netns(host)])
}

pub fn add_veth(ip: Ipv4Addr) -> Vec<String> {
    v(&[
        "link",
        "add",
        &veth(ip),
        "type",
        "veth",
        "peer",
        "name",
        &peer(ip),
    ])
}

pub fn move_peer(ip: Ipv4Addr, host: &str) -> Vec<String> {
    v(&["link", "set", &peer(ip), "netns", &netns(host)])
}

pub fn attach(ip: Ipv4Addr) -> Vec<String> {
    v(&["link", "set", &veth(ip), "master", BRIDGE, "up"])
}

/// Run inside the host's namespace: rename the peer to eth0, address it, bring it and lo up.
pub fn inside(host: &str, args: &[&str]) -> Vec<String> {
    let mut a = v(&["netns", "exec", &netns(host), "ip"]);
    a.extend(v(args));
    a
}

/// Runs `ip` with `args`.
pub fn ip(args: &[String]) -> Result<String, LabError> {
    run("ip", args)
}

pub fn run(program: &str, args: &[String]) -> Result<String, LabError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| LabError::new(format!("cannot run {program}: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LabError::new(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A new ed25519 key pair without a passphrase at `path` (`path.pub` beside it).
pub fn ssh_keygen(path: &std::path::Path, comment: &str) -> Result<(), LabError> {
    let args: Vec<String> = ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"]
        .iter()
        .map(|s| s.to_string())
        .chain([path.display().to_string()])
        .collect();
    run("ssh-keygen", &args).map(|_| ())
}

/// True when `ip link show dev` finds the device.
pub fn link_exists(dev: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", dev])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn netns_exists(host: &str) -> bool {
    std::path::Path::new("/run/netns")
        .join(netns(host))
        .exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_command_lines() {
        let ip: Ipv4Addr = "10.213.0.10".parse().expect("ip");
        assert_eq!(veth(ip), "nmx0ad5000a");
        assert!(peer(ip).len() <= 15);
        assert_eq!(
            unreachable_route("10.213.0.0/24"),
            [
                "route",
                "replace",
                "unreachable",
                "10.213.0.0/24",
                "metric",
                "4000"
            ]
        );
        assert_eq!(
            add_veth(ip),
            [
                "link",
                "add",
                "nmx0ad5000a",
                "type",
                "veth",
                "peer",
                "name",
                "nmx0ad5000ap"
            ]
        );
        assert_eq!(
            move_peer(ip, "wiki"),
            ["link", "set", "nmx0ad5000ap", "netns", "nixmox-wiki"]
        );
        assert_eq!(
            inside("wiki", &["link", "set", "lo", "up"]),
            [
                "netns",
                "exec",
                "nixmox-wiki",
                "ip",
                "link",
                "set",
                "lo",
                "up"
            ]
        );
        assert_eq!(
            bridge_address("10.213.0.1".parse().expect("ip"), 24),
            ["addr", "replace", "10.213.0.1/24", "dev", "nmxlab0"]
        );
    }
}
