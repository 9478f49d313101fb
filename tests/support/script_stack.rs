//! A stack whose hosts run shell scripts instead of real services: the four
//! core services and some applications on lab hosts of one subnet, each
//! serving /healthz on port 8080, and a flake whose systems are tiny
//! derivations with the given script as their switch-to-configuration.
//! Shared by tests/engine.rs and benches/parallel_deploy.rs.

use serde_json::{json, Map, Value};
use std::path::Path;

pub const CORE: [&str; 4] = ["dns", "postgresql", "caddy", "authentik"];

/// The manifest: core hosts at `<net>.2`.., applications (`(name, depends_on)`)
/// at `<net>.10`.., readiness on each host's /healthz with `health_secs` to pass.
pub fn manifest(net: &str, domain: &str, apps: &[(&str, &[&str])], health_secs: u64) -> Value {
    let host = |ip: &str, name: &str| {
        json!({
            "ip": ip,
            "hostname": format!("{name}.{domain}"),
            "interface": {"health": {
                "readiness": format!("http://{ip}:8080/healthz"),
                "interval": 1, "timeout": health_secs, "retries": health_secs,
            }},
        })
    };
    let mut core = Map::new();
    for (i, n) in CORE.iter().enumerate() {
        core.insert(n.to_string(), host(&format!("{net}.{}", i + 2), n));
    }
    let mut services = Map::new();
    for (i, (n, deps)) in apps.iter().enumerate() {
        let mut s = host(&format!("{net}.{}", i + 10), n);
        s["depends_on"] = json!(deps);
        services.insert(n.to_string(), s);
    }
    json!({
        "network": {"domain": domain, "gateway": format!("{net}.1"), "network_cidr": format!("{net}.0/24")},
        "core_services": core,
        "services": services,
        "nixos": {"nix_config": "experimental-features = nix-command flakes\nsubstituters =\nsandbox = false"},
    })
}

/// `root/flake.nix`: for each host, a system whose switch-to-configuration is
/// the file `script(host)` names (relative to `root`).
pub fn write_flake(root: &Path, hosts: &[&str], script: impl Fn(&str) -> &'static str) {
    let systems: String = hosts
        .iter()
        .map(|n| {
            format!(
                "    nixosConfigurations.{n}.config.system.build.toplevel = derivation {{ name = \"nixos-system-{n}\"; system = \"x86_64-linux\"; builder = \"/bin/sh\"; switch = ./{}; args = [ \"-c\" \"/bin/mkdir -p $out/bin && /bin/cp $switch $out/bin/switch-to-configuration && /bin/chmod +x $out/bin/switch-to-configuration\" ]; }};\n",
                script(n)
            )
        })
        .collect();
    std::fs::write(
        root.join("flake.nix"),
        format!("{{\n  outputs = {{ self }}: {{\n{systems}  }};\n}}\n"),
    )
    .expect("write flake");
    // A git flake, as users keep theirs: Nix then copies only the files
    // added here, never the state or keys beside them.
    // The scripts must exist already: a git flake sees only what is added.
    let mut files: Vec<&str> = hosts.iter().map(|n| script(n)).collect();
    files.push("flake.nix");
    files.sort_unstable();
    files.dedup();
    git(root, &["init", "-q"]);
    let mut add = vec!["add", "--"];
    add.extend(files);
    git(root, &add);
}

fn git(dir: &Path, args: &[&str]) {
    let o = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git (scripts/setup.sh installs it)");
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}
