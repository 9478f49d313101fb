//! Generated manifests of any size, for the planning benchmark and the
//! property tests. The stacks are valid by construction and use fictional
//! addresses: they are planned, never applied.

use serde_json::{json, Map, Value};

/// A small deterministic generator (xorshift), so a seed always gives the same stack.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The address of the `i`-th host in 10.0.0.0/8, skipping the network address and the gateway.
fn address(i: usize) -> String {
    let n = i + 2;
    format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
}

/// A stack with the four core services and `apps` applications. Application
/// `k` depends on up to `max_deps` earlier applications chosen by `seed`, so
/// the graph is acyclic and has waves of varying width.
pub fn manifest(apps: usize, max_deps: usize, seed: u64) -> Value {
    let mut rng = Rng::new(seed);
    let mut core = Map::new();
    for (i, name) in crate::manifest::CORE_SERVICES.iter().enumerate() {
        core.insert(
            name.to_string(),
            json!({
                "enable": true,
                "ip": address(i),
                "hostname": format!("{name}.synth.example"),
                "vmid": 100 + i,
                "resources": { "cores": 2, "memory": 2048, "disk_gb": 16 },
            }),
        );
    }
    let mut services = Map::new();
    for k in 0..apps {
        let name = format!("app{k:05}");
        let mut deps = vec![json!("postgresql"), json!("authentik")];
        if k > 0 {
            for _ in 0..rng.below(max_deps as u64 + 1) {
                let d = rng.below(k as u64) as usize;
                let dep = json!(format!("app{d:05}"));
                if !deps.contains(&dep) {
                    deps.push(dep);
                }
            }
        }
        let ip = address(4 + k);
        services.insert(
            name.clone(),
            json!({
                "enable": true,
                "ip": ip,
                "hostname": format!("{name}.synth.example"),
                "vmid": 1000 + k,
                "depends_on": deps,
                "ports": [8080],
                "interface": {
                    "db": { "name": name, "owner": name },
                    "auth": {
                        "type": "oidc",
                        "provider": "authentik",
                        "oidc": { "redirect_uris": [format!("https://{name}.apps.synth.example/callback")] }
                    },
                    "proxy": { "domain": format!("{name}.apps.synth.example"), "upstream": format!("{ip}:8080") },
                    "health": { "readiness": format!("http://{ip}:8080/healthz") }
                }
            }),
        );
    }
    json!({
        "network": {
            "domain": "synth.example",
            "dns_server": address(0),
            "gateway": "10.0.0.1",
            "network_cidr": "10.0.0.0/8",
        },
        "core_services": core,
        "services": services,
    })
}
