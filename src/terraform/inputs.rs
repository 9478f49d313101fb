//! The normalised manifest as Terraform variables, so modules get the hosts,
//! OIDC apps, proxies and databases without glue (`data "external"` + `nix
//! eval`). Only variables a module declares are passed.
//!
//! | variable | what |
//! |---|---|
//! | `network` | domain, dns_server, gateway, network_cidr, vlan_tag, ssh_keys, ldap_base_dn |
//! | `hosts` | service → { vmid, ip, hostname, kind, resources, onboot, start } |
//! | `oidc_apps` | client id → { service, client_type, redirect_uris, scopes, username_claim, groups_claim } |
//! | `proxy_apps` | `<svc>` or `<svc>-<route>` → { service, domain, path, upstream, headers, auth, forward_auth_upstream } |
//! | `databases` | name → { service, owner, host, port, mode, additional } |
//! | `service` | per-service phases: the service's own entry (as in `hosts`, plus name, ports, depends_on) |
//! | `upstream_outputs` | workspace → { output → value } of the phases that ran before |
//!
//! The RADIUS shared secret is never among them.

use crate::manifest::{Auth, ClientType, Manifest, Service};
use serde_json::{json, Map, Value};

pub fn network(m: &Manifest) -> Value {
    let n = &m.network;
    json!({
        "domain": n.domain,
        "dns_server": n.dns_server.map(|ip| ip.to_string()),
        "gateway": n.gateway.map(|ip| ip.to_string()),
        "network_cidr": n.network_cidr.map(|c| c.to_string()),
        "vlan_tag": n.vlan_tag,
        "ssh_keys": n.ssh_keys,
        "ldap_base_dn": n.outposts.ldap_base_dn,
    })
}

fn host(s: &Service) -> Value {
    let r = s.host.resources.as_ref();
    json!({
        "vmid": s.host.vmid,
        "ip": s.host.ip.map(|ip| ip.to_string()),
        "hostname": s.host.hostname,
        "kind": s.kind,
        "resources": {
            "cores": r.and_then(|r| r.cores),
            "memory": r.and_then(|r| r.memory),
            "disk_gb": r.and_then(|r| r.disk_gb),
        },
        "onboot": s.host.onboot,
        "start": s.host.start,
    })
}

pub fn hosts(m: &Manifest) -> Value {
    Value::Object(m.enabled().map(|s| (s.name.clone(), host(s))).collect())
}

pub fn oidc_apps(m: &Manifest) -> Value {
    let mut out = Map::new();
    for s in m.enabled() {
        for o in s.oidc_clients() {
            out.insert(
                o.client_id.clone(),
                json!({
                    "service": s.name,
                    "client_type": match o.client_type { ClientType::Confidential => "confidential", ClientType::Public => "public" },
                    "redirect_uris": o.redirect_uris,
                    "scopes": o.scopes,
                    "username_claim": o.username_claim,
                    "groups_claim": o.groups_claim,
                }),
            );
        }
    }
    // nixmox's own client (`serve.oidc`): the control plane sits behind the
    // SSO it deploys, registered like any application.
    if let Some(o) = &m.serve.oidc {
        out.insert(
            o.client_id.clone(),
            json!({
                "service": crate::manifest::SERVE_SERVICE,
                "client_type": "confidential",
                "redirect_uris": [format!("{}/auth/callback", m.serve.url)],
                "scopes": ["openid", "profile", "email"],
                "username_claim": "preferred_username",
                "groups_claim": "groups",
            }),
        );
    }
    Value::Object(out)
}

pub fn proxy_apps(m: &Manifest) -> Value {
    let mut out = Map::new();
    for (s, p) in m.proxies() {
        let key = match &p.name {
            Some(n) => format!("{}-{n}", s.name),
            None => s.name.clone(),
        };
        let (auth, client_id, forward_auth_upstream) = match &p.auth {
            Some(Auth::Oidc(o)) => (Some("oidc"), Some(o.client_id.clone()), None),
            Some(Auth::ForwardAuth { upstream, .. }) => {
                (Some("forward_auth"), None, upstream.clone())
            }
            None => (None, None, None),
        };
        out.insert(
            key,
            json!({
                "service": s.name,
                "domain": p.domain,
                "path": p.path,
                "upstream": p.upstream,
                "headers": p.headers,
                "auth": auth,
                "client_id": client_id,
                "forward_auth_upstream": forward_auth_upstream,
            }),
        );
    }
    Value::Object(out)
}

pub fn databases(m: &Manifest) -> Value {
    let mut out = Map::new();
    for (s, d) in m.databases() {
        out.insert(
            d.name.clone(),
            json!({
                "service": s.name,
                "owner": d.owner,
                "host": d.host,
                "port": d.port,
                "mode": d.mode,
                "additional": d.additional,
            }),
        );
    }
    Value::Object(out)
}

pub fn service(s: &Service) -> Value {
    let mut v = host(s);
    if let Value::Object(map) = &mut v {
        map.insert("name".into(), json!(s.name));
        map.insert("ports".into(), json!(s.ports));
        map.insert("depends_on".into(), json!(s.depends_on));
    }
    v
}

/// Every derived variable for one phase (`service` only for per-service phases).
pub fn derived(m: &Manifest, service_name: Option<&str>) -> Map<String, Value> {
    let mut vars = Map::new();
    vars.insert("network".into(), network(m));
    vars.insert("hosts".into(), hosts(m));
    vars.insert("oidc_apps".into(), oidc_apps(m));
    vars.insert("proxy_apps".into(), proxy_apps(m));
    vars.insert("databases".into(), databases(m));
    if let Some(s) = service_name.and_then(|n| m.service(n)) {
        vars.insert("service".into(), service(s));
    }
    vars
}
