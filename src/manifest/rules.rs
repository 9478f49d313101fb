//! Rules that span more than one value: references between services,
//! uniqueness, addressing, and agreement with the user's stated phase order.

use super::diag::{did_you_mean, Diagnostics, Path};
use super::model::{Auth, Manifest, Service, ServiceKind, CORE_SERVICES};
use super::syntax;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

pub fn check(diags: &mut Diagnostics, m: &mut Manifest) {
    core_services(diags, m);
    dependencies(diags, m);
    uniqueness(diags, m);
    addressing(diags, m);
    proxies(diags, m);
    databases(diags, m);
    deployment_phases(diags, m);
    build_hosts(diags, m);
    fill_forward_auth(m);
}

/// A builder named by service must be an enabled service with an address.
fn build_hosts(diags: &mut Diagnostics, m: &Manifest) {
    let named = std::iter::once((Path::root().key("nixos"), &m.nixos.build_host)).chain(
        m.enabled().filter_map(|s| {
            s.nixos
                .build_host
                .as_ref()
                .map(|b| (service_path(s).key("nixos"), b))
        }),
    );
    for (at, b) in named {
        let crate::manifest::BuildHost::Service(name) = b else {
            continue;
        };
        if !m
            .service(name)
            .is_some_and(|s| s.enabled && s.host.ip.is_some())
        {
            let names: Vec<&str> = m.enabled().map(|s| s.name.as_str()).collect();
            diags.error_hint(
                &at.key("build_host"),
                format!("{name:?} is no enabled service with an ip to build on"),
                suggest(diags, name, &names),
            );
        }
    }
}

/// `core_services.dns` or `services.wiki`, for messages about a service.
pub fn service_path(s: &Service) -> Path {
    let group = match s.kind {
        ServiceKind::Core => "core_services",
        ServiceKind::Application => "services",
    };
    Path::root().key(group).key(&s.name)
}

fn core_services(diags: &mut Diagnostics, m: &Manifest) {
    let mut seen: HashMap<&str, ServiceKind> = HashMap::new();
    for s in &m.services {
        if let Some(other) = seen.insert(&s.name, s.kind) {
            if other != s.kind {
                diags.error(
                    &service_path(s),
                    format!(
                        "service '{}' is declared both in core_services and in services: keep one",
                        s.name
                    ),
                );
            }
        }
    }
    for name in CORE_SERVICES {
        let core_path = Path::root().key("core_services").key(name);
        match m.services.iter().find(|s| s.name == name && s.kind == ServiceKind::Core) {
            Some(s) if !s.enabled => diags.error(&core_path.key("enable"), format!("core service '{name}' is disabled: dns, postgresql, caddy and authentik are always required")),
            Some(_) => {}
            None if m.services.iter().any(|s| s.name == name) => diags.error(
                &Path::root().key("services").key(name),
                format!("'{name}' is a core service: declare it under core_services"),
            ),
            None => diags.error(&core_path, format!("missing core service '{name}': dns, postgresql, caddy and authentik are always required")),
        }
    }
}

/// A suggestion for a misspelt name, unless so many errors were found that
/// no more are shown (then the comparison would only cost time).
fn suggest(diags: &Diagnostics, word: &str, names: &[&str]) -> Option<String> {
    (!diags.errors_full())
        .then(|| did_you_mean(word, names.iter().copied()))
        .flatten()
}

/// Linear in the length of every list: a manifest with a huge `depends_on`
/// is checked in about the time it takes to read it.
fn dependencies(diags: &mut Diagnostics, m: &Manifest) {
    let names: Vec<&str> = m.services.iter().map(|s| s.name.as_str()).collect();
    for s in &m.services {
        let base = service_path(s).key("depends_on");
        let mut seen = std::collections::HashSet::with_capacity(s.depends_on.len());
        for (i, dep) in s.depends_on.iter().enumerate() {
            let at = base.index(i);
            if !seen.insert(dep.as_str()) {
                diags.warning(&at, format!("'{dep}' is listed twice"));
                continue;
            }
            if *dep == s.name {
                diags.error(&at, format!("service '{}' depends on itself", s.name));
                continue;
            }
            let Some(target) = m.service(dep) else {
                let hint = suggest(diags, dep, &names);
                diags.error_hint(&at, format!("unknown service {}", syntax::quote(dep)), hint);
                continue;
            };
            if s.enabled && !target.enabled {
                diags.error_hint(
                    &at,
                    format!("depends on '{dep}', which is disabled"),
                    Some(format!("enable '{dep}' or disable '{}'", s.name)),
                );
            }
            if s.kind == ServiceKind::Core && target.kind == ServiceKind::Application {
                diags.error(&at, format!("core service '{}' depends on application '{dep}': core services deploy before every application", s.name));
            }
        }
    }
}

/// Ip, vmid, hostname and OIDC client id must each be unique among enabled services.
fn uniqueness(diags: &mut Diagnostics, m: &Manifest) {
    let mut ips: BTreeMap<IpAddr, &str> = BTreeMap::new();
    let mut vmids: BTreeMap<u32, &str> = BTreeMap::new();
    let mut hostnames: BTreeMap<String, &str> = BTreeMap::new();
    let mut clients: BTreeMap<&str, &str> = BTreeMap::new();
    if let Some(o) = &m.serve.oidc {
        clients.insert(&o.client_id, "nixmox serve");
        if let Some(s) = m
            .service(crate::manifest::SERVE_SERVICE)
            .filter(|s| s.enabled)
        {
            diags.error_hint(
                &service_path(s),
                "a service named 'nixmox' takes the issuer nixmox's own login (serve.oidc) is registered under",
                Some("rename the service, or remove serve.oidc".into()),
            );
        }
    }
    for s in m.enabled() {
        let p = service_path(s);
        if let Some(ip) = s.host.ip {
            if let Some(first) = ips.insert(ip, &s.name) {
                diags.error(
                    &p.key("ip"),
                    format!("ip {ip} is already used by service '{first}'"),
                );
            }
        }
        if let Some(id) = s.host.vmid {
            if let Some(first) = vmids.insert(id, &s.name) {
                diags.error(
                    &p.key("vmid"),
                    format!("vmid {id} is already used by service '{first}'"),
                );
            }
        }
        if let Some(h) = &s.host.hostname {
            if let Some(first) = hostnames.insert(dns_key(h), &s.name) {
                diags.error(
                    &p.key("hostname"),
                    format!("hostname {h} is already used by service '{first}'"),
                );
            }
        }
        let mut auths: Vec<(Path, &Auth)> = Vec::new();
        if let Some(a) = &s.auth {
            auths.push((p.key("interface").key("auth"), a));
        }
        for proxy in &s.proxies {
            // A proxy without its own auth inherits the service's: one client, not two.
            let Some(a) = proxy.auth.as_ref().filter(|a| s.auth.as_ref() != Some(*a)) else {
                continue;
            };
            let mut at = p.key("interface").key("proxy");
            if let Some(name) = &proxy.name {
                at = at.key(name);
            }
            auths.push((at.key("auth"), a));
        }
        for (at, auth) in auths {
            if let Auth::Oidc(o) = auth {
                if let Some(first) = clients.insert(&o.client_id, &s.name) {
                    diags.error(
                        &at.key("oidc").key("client_id"),
                        format!(
                            "OIDC client id '{}' is already used by service '{first}'",
                            o.client_id
                        ),
                    );
                }
            }
        }
    }
}

fn addressing(diags: &mut Diagnostics, m: &Manifest) {
    let net = m.network.network_cidr;
    for s in m.enabled() {
        let p = service_path(s);
        let Some(ip) = s.host.ip else { continue };
        if let Some(net) = net {
            if !net.contains(&ip) {
                diags.error(
                    &p.key("ip"),
                    format!("ip {ip} is outside network_cidr {net}"),
                );
            } else if net.prefix_len() < net.max_prefix_len() - 1
                && (ip == net.network() || ip == net.broadcast())
            {
                diags.error(
                    &p.key("ip"),
                    format!(
                        "ip {ip} is the network's {} address, not a host address",
                        if ip == net.network() {
                            "network"
                        } else {
                            "broadcast"
                        }
                    ),
                );
            }
        }
        if m.network.gateway == Some(ip) {
            diags.error(&p.key("ip"), format!("ip {ip} is the gateway's address"));
        }
        if let Some(h) = &s.host.hostname {
            let domain = dns_key(&m.network.domain);
            if !domain.is_empty() && !dns_key(h).ends_with(&format!(".{domain}")) {
                diags.warning(
                    &p.key("hostname"),
                    format!("hostname {h} is outside the stack's domain {domain}"),
                );
            }
        }
    }
    if let (Some(dns), Some(server)) = (
        m.service("dns").and_then(|s| s.host.ip),
        m.network.dns_server,
    ) {
        if dns != server {
            diags.warning(
                &Path::root().key("network").key("dns_server"),
                format!("dns_server {server} is not the dns service's ip {dns}"),
            );
        }
    }
}

fn proxies(diags: &mut Diagnostics, m: &Manifest) {
    let hostnames: HashMap<String, &str> = m
        .enabled()
        .filter_map(|s| {
            s.host
                .hostname
                .as_ref()
                .map(|h| (dns_key(h), s.name.as_str()))
        })
        .collect();
    let mut routes: BTreeMap<(String, String), &str> = BTreeMap::new();
    let caddy = m.service("caddy").filter(|c| c.enabled);
    for s in m.enabled() {
        for proxy in &s.proxies {
            let mut at = service_path(s).key("interface").key("proxy");
            if let Some(n) = &proxy.name {
                at = at.key(n);
            }
            let domain = dns_key(&proxy.domain);
            let route = (domain.clone(), normalise_path(&proxy.path));
            if let Some(first) = routes.insert(route, &s.name) {
                diags.error(
                    &at.key("domain"),
                    format!(
                        "proxy domain {}{} is already routed by service '{first}'",
                        proxy.domain, proxy.path
                    ),
                );
            }
            if let Some(owner) = hostnames.get(&domain) {
                diags.warning(&at.key("domain"), format!("proxy domain {} is also the hostname of service '{owner}': DNS can point it at the host or at Caddy, not both; the proxy wins", proxy.domain));
            }
            if let Ok((host, port)) = syntax::host_port(&proxy.upstream) {
                let loopback = host.eq_ignore_ascii_case("localhost")
                    || host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                let own = loopback
                    || s.host.ip.is_some_and(|ip| host.parse::<IpAddr>() == Ok(ip))
                    || s.host
                        .hostname
                        .as_deref()
                        .is_some_and(|h| h.eq_ignore_ascii_case(&host));
                let on_caddy = caddy.is_some_and(|c| {
                    c.name == s.name || (c.host.ip.is_some() && c.host.ip == s.host.ip)
                });
                if loopback && !on_caddy {
                    diags.warning(
                        &at.key("upstream"),
                        format!(
                            "upstream {} is a loopback address, but Caddy runs on {}: from there it reaches Caddy's own host, not {}'s; use {}:{port}",
                            proxy.upstream,
                            caddy.and_then(|c| c.host.hostname.clone()).unwrap_or_else(|| "the caddy host".into()),
                            s.name,
                            s.host.ip.map(|ip| ip.to_string()).unwrap_or_else(|| "the service's address".into()),
                        ),
                    );
                }
                if own && s.ports.is_empty() {
                    diags.warning(
                        &at.key("upstream"),
                        format!("upstream port {port} is on a service that declares no ports: its default health gate cannot check it; add ports = [ {port} ]"),
                    );
                } else if own && !s.ports.contains(&port) {
                    diags.warning(
                        &at.key("upstream"),
                        format!(
                            "upstream port {port} is not in the service's ports {:?}",
                            s.ports
                        ),
                    );
                }
            }
        }
    }
}

/// A DNS name as DNS compares it: case-insensitive, the root's trailing dot optional.
fn dns_key(name: &str) -> String {
    syntax::dns_name(name)
}

fn normalise_path(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.into()
    }
}

fn databases(diags: &mut Diagnostics, m: &Manifest) {
    let pg = m.service("postgresql");
    let pg_ip = pg.and_then(|s| s.host.ip);
    let pg_host = pg.and_then(|s| s.host.hostname.clone());
    let mut owners: BTreeMap<&str, &str> = BTreeMap::new();
    for s in m.enabled() {
        for db in &s.databases {
            let at = match &db.key {
                Some(k) => service_path(s).key("interface").key("dbs").key(k),
                None => service_path(s).key("interface").key("db"),
            };
            for name in std::iter::once(&db.name).chain(&db.additional) {
                if let Some(first) = owners.insert(name, &s.name) {
                    if first != s.name || db.additional.contains(name) {
                        diags.error(
                            &at,
                            format!("database '{name}' is already declared by service '{first}'"),
                        );
                    } else {
                        diags.error(
                            &at,
                            format!("database '{name}' is declared twice in this service"),
                        );
                    }
                }
            }
            if let Some(h) = &db.host {
                let on_pg = pg_ip.is_some_and(|ip| h.parse::<IpAddr>() == Ok(ip))
                    || pg_host
                        .as_deref()
                        .is_some_and(|p| p.eq_ignore_ascii_case(h));
                if !on_pg && pg_ip.is_some() {
                    diags.warning(
                        &at.key("host"),
                        format!("database host {h} is not the postgresql service's address"),
                    );
                }
            }
        }
    }
}

fn deployment_phases(diags: &mut Diagnostics, m: &Manifest) {
    let Some(phases) = &m.deployment_phases else {
        return;
    };
    let base = Path::root().key("deployment_phases");
    let names: Vec<&str> = m.services.iter().map(|s| s.name.as_str()).collect();
    let lists: [(&str, &Vec<String>, Option<ServiceKind>); 4] = [
        ("tf_infra", &phases.tf_infra, None),
        ("nix_core", &phases.nix_core, Some(ServiceKind::Core)),
        ("tf_auth_core", &phases.tf_auth_core, None),
        ("services", &phases.services, Some(ServiceKind::Application)),
    ];
    for (key, list, kind) in lists {
        let at = base.key(key);
        // Where each name first stands in the list: one pass, then lookups.
        let mut position: HashMap<&str, usize> = HashMap::with_capacity(list.len());
        for (i, name) in list.iter().enumerate() {
            position.entry(name.as_str()).or_insert(i);
        }
        for (i, name) in list.iter().enumerate() {
            let Some(s) = m.service(name) else {
                let hint = suggest(diags, name, &names);
                diags.error_hint(
                    &at.index(i),
                    format!("unknown service {}", syntax::quote(name)),
                    hint,
                );
                continue;
            };
            if position.get(name.as_str()) != Some(&i) {
                diags.error(&at.index(i), format!("'{name}' is listed twice"));
                continue;
            }
            if let Some(kind) = kind {
                if s.kind != kind {
                    let (is, belongs) = match s.kind {
                        ServiceKind::Core => ("a core service", "nix_core"),
                        ServiceKind::Application => ("an application", "services"),
                    };
                    diags.error(
                        &at.index(i),
                        format!("'{name}' is {is}: it belongs in deployment_phases.{belongs}"),
                    );
                }
            }
            if !s.enabled {
                diags.warning(
                    &at.index(i),
                    format!("'{name}' is disabled and will not be deployed"),
                );
            }
            // Order must respect dependencies: a service may not come before one it depends on.
            let mut later: Vec<(usize, &str)> = s
                .depends_on
                .iter()
                .filter_map(|d| position.get(d.as_str()).map(|p| (*p, d.as_str())))
                .filter(|(p, _)| *p > i)
                .collect();
            later.sort_unstable();
            later.dedup();
            for (_, dep) in later {
                diags.error(
                    &at.index(i),
                    format!("'{name}' is listed before '{dep}', which it depends on"),
                );
            }
        }
        if let Some(kind) = kind {
            for s in m.enabled().filter(|s| s.kind == kind) {
                if !position.contains_key(s.name.as_str()) {
                    diags.warning(&at, format!("'{}' is enabled but not listed here; nixmox deploys it in dependency order", s.name));
                }
            }
        }
    }
}

fn fill_forward_auth(m: &mut Manifest) {
    let Some(ip) = m.service("authentik").and_then(|s| s.host.ip) else {
        return;
    };
    let default = match ip {
        IpAddr::V4(v4) => format!("{v4}:9000"),
        IpAddr::V6(v6) => format!("[{v6}]:9000"),
    };
    for s in &mut m.services {
        let auths = s
            .auth
            .iter_mut()
            .chain(s.proxies.iter_mut().filter_map(|p| p.auth.as_mut()));
        for auth in auths {
            if let Auth::ForwardAuth {
                upstream: upstream @ None,
                ..
            } = auth
            {
                *upstream = Some(default.clone());
            }
        }
    }
}
