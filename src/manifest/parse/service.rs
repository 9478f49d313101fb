//! One entry of `core_services` or `services`.

use super::interface;
use crate::manifest::decode::Obj;
use crate::manifest::diag::{Diagnostics, Path};
use crate::manifest::model::{Host, Options, Resources, Service, ServiceKind};
use crate::manifest::syntax;
use serde_json::Value;

const KEYS: &[&str] = &[
    "enable",
    "ip",
    "hostname",
    "vmid",
    "version",
    "resources",
    "onboot",
    "start",
    "depends_on",
    "tags",
    "ports",
    "interface",
    "nixos",
];

pub fn service(
    diags: &mut Diagnostics,
    path: &Path,
    name: &str,
    kind: ServiceKind,
    value: &Value,
    options: &Options,
) -> Option<Service> {
    if let Err(e) = syntax::service_name(name) {
        diags.error(path, e);
    }
    let obj = Obj::open(diags, path.clone(), value, KEYS)?;
    let enabled = obj.or(diags, "enable", true);

    let ip = match obj.raw("ip") {
        None if enabled => {
            diags.error(&obj.at("ip"), "missing required ip (the host's address)");
            None
        }
        None => None,
        Some(_) => obj.opt::<String>(diags, "ip").and_then(|t| {
            syntax::ip(&t)
                .map_err(|e| diags.error(&obj.at("ip"), e))
                .ok()
        }),
    };
    let hostname = match obj.raw("hostname") {
        None if enabled => {
            diags.error_hint(
                &obj.at("hostname"),
                "missing required hostname",
                Some(format!("a fully qualified name such as {name}.example.lan")),
            );
            None
        }
        None => None,
        Some(_) => obj.opt::<String>(diags, "hostname").inspect(|h| {
            if let Err(e) = syntax::domain(h, true) {
                diags.error(&obj.at("hostname"), e);
            }
        }),
    };
    let vmid = obj.opt::<u32>(diags, "vmid");
    if let Some(id) = vmid {
        // Proxmox accepts VM ids from 100 to 999999999.
        if !(100..=999_999_999).contains(&id) {
            diags.error(
                &obj.at("vmid"),
                format!("vmid {id} is out of range: Proxmox uses 100 to 999999999"),
            );
        }
    }
    let resources = obj
        .raw("resources")
        .and_then(|v| resources(diags, obj.at("resources"), v));
    let host = Host {
        ip,
        hostname,
        vmid,
        resources,
        onboot: obj.or(diags, "onboot", true),
        start: obj.or(diags, "start", true),
    };

    let version = obj.opt::<String>(diags, "version");
    let depends_on: Vec<String> = obj.or(diags, "depends_on", Vec::new());
    let tags: Vec<String> = obj.or(diags, "tags", Vec::new());
    for (i, tag) in tags.iter().enumerate() {
        if !crate::graph::is_tag(tag) {
            diags.error(
                &obj.at("tags").index(i),
                format!("{tag:?} is not a tag: letters, digits, '-', '_' and '.', starting with a letter or digit"),
            );
        }
    }
    let ports: Vec<u16> = obj.or(diags, "ports", Vec::new());
    for (i, port) in ports.iter().enumerate() {
        if *port == 0 {
            diags.error(&obj.at("ports").index(i), "port 0 is not a usable port");
        }
        if ports[..i].contains(port) {
            diags.error(
                &obj.at("ports").index(i),
                format!("port {port} is listed twice"),
            );
        }
    }

    let iface = match obj.raw("interface") {
        Some(v) => interface::interface(diags, obj.at("interface"), name, v, options),
        None => None,
    }
    .unwrap_or_else(|| interface::Interface::defaults(options));

    Some(Service {
        name: name.to_string(),
        kind,
        enabled,
        host,
        version,
        depends_on,
        tags,
        ports,
        auth: iface.auth,
        proxies: iface.proxies,
        databases: iface.databases,
        health: iface.health,
        terraform: iface.terraform,
        nixos: obj
            .raw("nixos")
            .and_then(|v| service_nixos(diags, obj.at("nixos"), v))
            .unwrap_or_default(),
    })
}

/// `nixos.env = { NAME = "text"; SECRET = { sops = "…"; }; }`: lines of the
/// host's env file. Names are shell variable names and may not take the
/// `NIXMOX_` prefix nixmox's own values use.
fn env(
    diags: &mut Diagnostics,
    obj: &Obj,
) -> std::collections::BTreeMap<String, crate::manifest::model::EnvValue> {
    use crate::manifest::model::EnvValue;
    let mut out = std::collections::BTreeMap::new();
    let Some(raw) = obj.raw("env") else {
        return out;
    };
    let Some(map) = raw.as_object() else {
        diags.error(
            &obj.at("env"),
            format!(
                "expected an attribute set of NAME = value, found {}",
                crate::manifest::decode::kind_of(raw)
            ),
        );
        return out;
    };
    for (name, v) in map {
        let at = obj.at("env").key(name);
        if !super::is_env_name(name) {
            diags.error(
                &at,
                format!(
                    "{} is not an environment variable name (letters, digits and _, not starting with a digit)",
                    crate::manifest::syntax::quote(name)
                ),
            );
            continue;
        }
        if name.starts_with("NIXMOX_") {
            diags.error(
                &at,
                "names starting with NIXMOX_ are nixmox's own (Terraform outputs); choose another",
            );
            continue;
        }
        let value = if crate::secrets::SopsRef::is_ref(v) {
            crate::manifest::decode::Decode::decode(diags, &at, v).map(EnvValue::Sops)
        } else {
            <String as crate::manifest::decode::Decode>::decode(diags, &at, v).map(EnvValue::Text)
        };
        if let Some(value) = value {
            out.insert(name.clone(), value);
        }
    }
    out
}

fn service_nixos(
    diags: &mut Diagnostics,
    path: Path,
    value: &Value,
) -> Option<crate::manifest::model::ServiceNixos> {
    let obj = Obj::open(
        diags,
        path,
        value,
        &["attribute", "ssh", "env", "confirm_timeout", "build_host"],
    )?;
    let mut out = crate::manifest::model::ServiceNixos {
        attribute: obj.opt(diags, "attribute"),
        build_host: super::build_host::build_host(diags, &obj),
        confirm_timeout: obj.opt(diags, "confirm_timeout"),
        env: env(diags, &obj),
        ..Default::default()
    };
    if let Some(Err(e)) = out.attribute.as_deref().map(|a| {
        crate::manifest::syntax::argument(a).and_then(|_| {
            if a.chars().any(char::is_whitespace) {
                Err(format!(
                    "{} is not a flake attribute path: it has a space",
                    crate::manifest::syntax::quote(a)
                ))
            } else {
                Ok(())
            }
        })
    }) {
        diags.error(&obj.at("attribute"), e);
    }
    if let Some(v) = obj.raw("ssh") {
        if let Some(ssh) = Obj::open(diags, obj.at("ssh"), v, &["user", "port", "key"]) {
            out.ssh_user = ssh.opt(diags, "user");
            out.ssh_port = ssh.opt(diags, "port");
            out.ssh_key = ssh.opt(diags, "key");
            if let Some(Err(e)) = out
                .ssh_user
                .as_deref()
                .map(crate::manifest::syntax::user_name)
            {
                diags.error(&ssh.at("user"), e);
            }
            if let Some(Err(e)) = out
                .ssh_key
                .as_deref()
                .map(crate::manifest::syntax::ssh_file)
            {
                diags.error(&ssh.at("key"), e);
            }
        }
    }
    Some(out)
}

/// A size in `unit_mib`s (MiB for memory, GiB for disks): a number, or a
/// string with a unit as older manifests write them (`memory = "2GB"`),
/// which must come to a whole number of the field's unit.
fn size(diags: &mut Diagnostics, obj: &Obj, key: &str, unit_mib: u64) -> Option<u32> {
    let Value::String(text) = obj.raw(key)? else {
        return obj.opt(diags, key);
    };
    let converted = syntax::size_mib(text, unit_mib).and_then(|mib| {
        if mib % unit_mib != 0 {
            return Err(format!(
                "{} is {mib} MiB, not a whole number of GiB",
                syntax::quote(text)
            ));
        }
        u32::try_from(mib / unit_mib)
            .map_err(|_| format!("{} is out of range", syntax::quote(text)))
    });
    match converted {
        Ok(v) => Some(v),
        Err(e) => {
            diags.error(&obj.at(key), e);
            None
        }
    }
}

fn resources(diags: &mut Diagnostics, path: Path, value: &Value) -> Option<Resources> {
    let obj = Obj::open(diags, path, value, &["cores", "memory", "disk_gb"])?;
    let r = Resources {
        cores: obj.opt(diags, "cores"),
        memory: size(diags, &obj, "memory", 1),
        disk_gb: size(diags, &obj, "disk_gb", 1024),
    };
    for (key, value, min, max, unit) in [
        ("cores", r.cores, 1, 1024, "cores"),
        ("memory", r.memory, 16, 16 * 1024 * 1024, "MiB"),
        ("disk_gb", r.disk_gb, 1, 1024 * 1024, "GiB"),
    ] {
        if let Some(v) = value {
            if !(min..=max).contains(&v) {
                diags.error(
                    &obj.at(key),
                    format!("{v} {unit} is out of range: expected {min} to {max}"),
                );
            }
        }
    }
    Some(r)
}
