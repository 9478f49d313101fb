//! The `network` block: addressing, SSH keys and Authentik outposts.

use crate::manifest::decode::Obj;
use crate::manifest::diag::{Diagnostics, Path};
use crate::manifest::model::{Network, Outposts, Radius};
use crate::manifest::syntax;
use ipnet::IpNet;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;

const KEYS: &[&str] = &[
    "domain",
    "dns_server",
    "gateway",
    "network_cidr",
    "vlan_tag",
    "ssh_keys",
    "outposts",
];

/// Stands in for a network block that could not be read, so later rules can run.
pub fn placeholder() -> Network {
    Network {
        domain: String::new(),
        dns_server: None,
        gateway: None,
        network_cidr: None,
        vlan_tag: None,
        ssh_keys: BTreeMap::new(),
        outposts: Outposts::default(),
    }
}

pub fn network(diags: &mut Diagnostics, path: Path, value: &Value) -> Option<Network> {
    let obj = Obj::open(diags, path, value, KEYS)?;
    let domain: String = obj
        .req(diags, "domain", "domain (the stack's base DNS domain)")
        .unwrap_or_default();
    if !domain.is_empty() {
        if let Err(e) = syntax::domain(&domain, false) {
            diags.error(&obj.at("domain"), e);
        }
    }
    let dns_server = address(diags, &obj, "dns_server");
    let gateway = address(diags, &obj, "gateway");
    let network_cidr = obj.opt::<String>(diags, "network_cidr").and_then(|text| {
        cidr(&text)
            .map_err(|e| diags.error(&obj.at("network_cidr"), e))
            .ok()
    });
    let vlan_tag = obj.opt::<u16>(diags, "vlan_tag");
    if let Some(tag) = vlan_tag {
        if !(1..=4094).contains(&tag) {
            diags.error(
                &obj.at("vlan_tag"),
                format!("VLAN tag {tag} is out of range: expected 1 to 4094"),
            );
        }
    }
    let ssh_keys: BTreeMap<String, Vec<String>> = obj.or(diags, "ssh_keys", BTreeMap::new());
    for (user, keys) in &ssh_keys {
        let user_path = obj.at("ssh_keys").key(user);
        if !user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            || user.is_empty()
        {
            diags.error(
                &user_path,
                format!("{} is not a valid login name", syntax::quote(user)),
            );
        }
        for (i, key) in keys.iter().enumerate() {
            // A warning only: placeholder keys are common in shared manifests,
            // and the hosts themselves reject what OpenSSH cannot read.
            if let Err(e) = syntax::ssh_public_key(key) {
                diags.warning(&user_path.index(i), e);
            }
        }
    }
    let outposts = obj
        .raw("outposts")
        .and_then(|v| outposts(diags, obj.at("outposts"), v))
        .unwrap_or_default();
    if let (Some(net), Some(gw)) = (network_cidr, gateway) {
        if !net.contains(&gw) {
            diags.error(
                &obj.at("gateway"),
                format!("gateway {gw} is outside network_cidr {net}"),
            );
        } else if net.prefix_len() + 1 < net.max_prefix_len()
            && (gw == net.network() || gw == net.broadcast())
        {
            diags.error(
                &obj.at("gateway"),
                format!(
                    "gateway {gw} is the {} address of network_cidr {net}, not a host address",
                    if gw == net.network() {
                        "network"
                    } else {
                        "broadcast"
                    }
                ),
            );
        }
    }
    Some(Network {
        domain,
        dns_server,
        gateway,
        network_cidr,
        vlan_tag,
        ssh_keys,
        outposts,
    })
}

fn address(diags: &mut Diagnostics, obj: &Obj, key: &str) -> Option<IpAddr> {
    let text: String = obj.opt(diags, key)?;
    syntax::ip(&text)
        .map_err(|e| diags.error(&obj.at(key), e))
        .ok()
}

/// A network in CIDR notation; host bits set (`10.0.0.5/24`) are a mistake worth naming.
pub fn cidr(text: &str) -> Result<IpNet, String> {
    let net: IpNet = text.parse().map_err(|_| {
        format!(
            "{} is not a network in CIDR notation such as 10.0.0.0/24",
            syntax::quote(text)
        )
    })?;
    if net.trunc() != net {
        return Err(format!(
            "{} has host bits set: the network is {}",
            syntax::quote(text),
            net.trunc()
        ));
    }
    Ok(net)
}

/// A secret that reads like the text left in a template rather than one
/// generated: short, or a well-known stand-in word.
fn looks_like_placeholder(secret: &str) -> bool {
    let lower = secret.to_ascii_lowercase();
    let words = [
        "changeme",
        "change-me",
        "change_me",
        "secret",
        "password",
        "placeholder",
        "example",
        "todo",
        "fixme",
        "xxx",
        "testing",
        "radius",
        "default",
    ];
    secret.chars().count() < 16
        || words.iter().any(|w| lower.contains(w))
        || secret.starts_with('<')
        || secret
            .chars()
            .all(|c| c == secret.chars().next().unwrap_or(c))
}

fn outposts(diags: &mut Diagnostics, path: Path, value: &Value) -> Option<Outposts> {
    let obj = Obj::open(diags, path, value, &["ldap", "radius"])?;
    let ldap_base_dn = obj.raw("ldap").and_then(|v| {
        let ldap = Obj::open(diags, obj.at("ldap"), v, &["base_dn"])?;
        let dn: String = ldap.req(diags, "base_dn", "base_dn")?;
        if !dn.contains('=') {
            diags.error(
                &ldap.at("base_dn"),
                format!(
                    "{} is not an LDAP DN such as dc=example,dc=lan",
                    syntax::quote(&dn)
                ),
            );
        }
        Some(dn)
    });
    let radius = obj.raw("radius").and_then(|v| {
        let r = Obj::open(
            diags,
            obj.at("radius"),
            v,
            &["shared_secret", "client_networks"],
        )?;
        // The secret is only type-checked: its value must never reach a message.
        let shared_secret: Option<String> = r.opt(diags, "shared_secret");
        match shared_secret.as_deref() {
            Some("") => diags.error(&r.at("shared_secret"), "the RADIUS shared secret is empty"),
            Some(secret) if looks_like_placeholder(secret) => diags.warning(
                &r.at("shared_secret"),
                "the RADIUS shared secret looks like a placeholder, and it is written in plaintext in the manifest: generate a long random one and keep it in your SOPS file",
            ),
            Some(_) => diags.warning(
                &r.at("shared_secret"),
                "the RADIUS shared secret is written in plaintext in the manifest, which is reviewed and shared as code: keep it in your SOPS file",
            ),
            None => {}
        }
        let texts: Vec<String> = r.or(diags, "client_networks", Vec::new());
        let mut client_networks = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            match cidr(text) {
                Ok(net) if net.prefix_len() == 0 => {
                    diags.warning(
                        &r.at("client_networks").index(i),
                        format!("{text} lets any address send RADIUS requests: list the networks of your access points and switches"),
                    );
                    client_networks.push(net);
                }
                Ok(net) => client_networks.push(net),
                Err(e) => diags.error(&r.at("client_networks").index(i), e),
            }
        }
        Some(Radius {
            shared_secret,
            client_networks,
        })
    });
    Some(Outposts {
        ldap_base_dn,
        radius,
    })
}
