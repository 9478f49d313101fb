//! `nixmoxlab_lxc`: a lab host, standing in for a Proxmox LXC container.
//!
//! The host is real: a network namespace with its own address and sshd,
//! made by `nixmox lab host-up <name> <ip>` and removed by `host-down`.
//! What Proxmox would hold of the container (vmid, hostname, address,
//! cores, memory, disk, onboot, start) is kept beside the host in
//! `<lab_dir>/hosts/<name>/lxc.json`. Read looks at both: a host whose
//! namespace is gone is gone (Terraform plans to create it again); a record
//! changed by hand is drift.

use crate::values::{attr, known, need_text, optional, string, text};
use crate::Shared;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tf_provider::schema::{AttributeConstraint, AttributeType, Block, Description, Schema};
use tf_provider::value::{Value, ValueBool, ValueEmpty, ValueNumber, ValueString};
use tf_provider::{map, AttributePath, Diagnostics, Resource};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State<'a> {
    #[serde(borrow)]
    pub id: ValueString<'a>,
    #[serde(borrow)]
    pub name: ValueString<'a>,
    pub vmid: ValueNumber,
    #[serde(borrow)]
    pub hostname: ValueString<'a>,
    #[serde(borrow)]
    pub ip: ValueString<'a>,
    pub cores: ValueNumber,
    pub memory: ValueNumber,
    pub disk_gb: ValueNumber,
    pub onboot: ValueBool,
    pub start: ValueBool,
}

/// What the lab keeps of a container beside its host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    name: String,
    vmid: i64,
    hostname: String,
    ip: String,
    cores: Option<i64>,
    memory: Option<i64>,
    disk_gb: Option<i64>,
    onboot: Option<bool>,
    start: Option<bool>,
}

impl Record {
    fn state<'a>(self) -> State<'a> {
        State {
            id: string(self.name.clone()),
            name: string(self.name),
            vmid: Value::Value(self.vmid),
            hostname: string(self.hostname),
            ip: string(self.ip),
            cores: optional(self.cores),
            memory: optional(self.memory),
            disk_gb: optional(self.disk_gb),
            onboot: optional(self.onboot),
            start: optional(self.start),
        }
    }

    fn from_state(diags: &mut Diagnostics, s: &State) -> Option<Record> {
        let vmid = known(&s.vmid);
        if vmid.is_none() {
            diags.error_short("vmid must be known here", AttributePath::new("vmid"));
        }
        Some(Record {
            name: need_text(diags, &s.name, "name")?,
            vmid: vmid?,
            hostname: need_text(diags, &s.hostname, "hostname")?,
            ip: need_text(diags, &s.ip, "ip")?,
            cores: known(&s.cores),
            memory: known(&s.memory),
            disk_gb: known(&s.disk_gb),
            onboot: known(&s.onboot),
            start: known(&s.start),
        })
    }
}

pub struct Lxc {
    pub shared: Shared,
}

/// Lab host names become namespace and directory names: what nixmox itself allows.
fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn record_path(lab_dir: &Path, name: &str) -> PathBuf {
    lab_dir.join("hosts").join(name).join("lxc.json")
}

/// The host is there: its namespace exists.
fn host_exists(name: &str) -> bool {
    Path::new("/run/netns")
        .join(format!("nixmox-{name}"))
        .exists()
}

fn write_record(diags: &mut Diagnostics, lab_dir: &Path, r: &Record) -> Option<()> {
    let path = record_path(lab_dir, &r.name);
    let tmp = path.with_extension("json.tmp");
    let result = serde_json::to_vec_pretty(r)
        .map_err(std::io::Error::other)
        .and_then(|bytes| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&tmp, bytes)
        })
        .and_then(|_| std::fs::rename(&tmp, &path));
    if let Err(e) = result {
        diags.root_error(
            format!("lab host {}: cannot write its record", r.name),
            format!("{}: {e}", path.display()),
        );
        return None;
    }
    Some(())
}

/// `nixmox lab host-up|host-down <name> <ip>`.
fn lab(diags: &mut Diagnostics, settings: &crate::Settings, verb: &str, r: &Record) -> Option<()> {
    let out = std::process::Command::new(&settings.nixmox)
        .args(["lab", verb, "--", &r.name, &r.ip])
        .env("NIXMOX_LAB_DIR", &settings.lab_dir)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(()),
        Ok(o) => {
            diags.root_error(
                format!(
                    "lab host {}: `nixmox lab {verb}` failed ({})",
                    r.name, o.status
                ),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
            );
            None
        }
        Err(e) => {
            diags.root_error(
                format!(
                    "lab host {}: cannot run {}",
                    r.name,
                    settings.nixmox.display()
                ),
                format!("{e}; set nixmox in the provider block, or NIXMOX_BIN"),
            );
            None
        }
    }
}

#[async_trait]
impl Resource for Lxc {
    type State<'a> = State<'a>;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        use AttributeConstraint::{Computed, Optional, Required};
        use AttributeType::{Bool, Number, String};
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::plain(
                    "A lab host: a STAND-IN for a Proxmox LXC container (proxmox_lxc)",
                ),
                attributes: map! {
                    "id" => attr(String, Computed, "The host's name"),
                    "name" => attr(String, Required, "The lab host (its service); changing it replaces the host"),
                    "vmid" => attr(Number, Required, "The container's id; changing it replaces the host"),
                    "hostname" => attr(String, Required, "The host's fully qualified name"),
                    "ip" => attr(String, Required, "The host's address on the lab network; changing it replaces the host"),
                    "cores" => attr(Number, Optional, "CPU cores (recorded: lab hosts share the machine)"),
                    "memory" => attr(Number, Optional, "Memory in MiB (recorded)"),
                    "disk_gb" => attr(Number, Optional, "Root disk in GiB (recorded)"),
                    "onboot" => attr(Bool, Optional, "Start with the node (recorded)"),
                    "start" => attr(Bool, Optional, "Start after creation (recorded)"),
                },
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        if let Some(name) = text(&config.name) {
            if !safe_name(&name) {
                diags.error_short(
                    "name must be lowercase letters, digits, '-' and '_', starting with a letter",
                    AttributePath::new("name"),
                );
            }
        }
        if let Some(ip) = text(&config.ip) {
            if ip.parse::<std::net::Ipv4Addr>().is_err() {
                diags.error_short("ip must be an IPv4 address", AttributePath::new("ip"));
            }
        }
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let Some(settings) = self.shared.settings(diags) else {
            return Some((state, private));
        };
        let Some(name) = text(&state.name).filter(|n| safe_name(n)) else {
            return Some((state, private));
        };
        if !host_exists(&name) {
            return None;
        }
        let path = record_path(&settings.lab_dir, &name);
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Record>(&bytes) {
                Ok(r) => Some((r.state(), private)),
                Err(e) => {
                    diags.root_error(
                        format!("lab host {name}: its record is unreadable"),
                        format!("{}: {e}", path.display()),
                    );
                    Some((state, private))
                }
            },
            // A host without its record was not made by this provider: create it anew.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                diags.root_error(
                    format!("lab host {name}: cannot read its record"),
                    format!("{}: {e}", path.display()),
                );
                Some((state, private))
            }
        }
    }

    async fn plan_create<'a>(
        &self,
        _diags: &mut Diagnostics,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let mut planned = proposed;
        planned.id = planned.name.clone();
        Some((planned, Default::default()))
    }

    async fn plan_update<'a>(
        &self,
        _diags: &mut Diagnostics,
        prior: Self::State<'a>,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        prior_private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>, Vec<AttributePath>)> {
        let mut replace = Vec::new();
        if proposed.name != prior.name {
            replace.push(AttributePath::new("name"));
        }
        if proposed.vmid != prior.vmid {
            replace.push(AttributePath::new("vmid"));
        }
        if proposed.ip != prior.ip {
            replace.push(AttributePath::new("ip"));
        }
        Some((proposed, prior_private, replace))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        prior_private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::PrivateState<'a>> {
        Some(prior_private)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        planned_private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let settings = self.shared.settings(diags)?;
        let record = Record::from_state(diags, &planned)?;
        lab(diags, &settings, "host-up", &record)?;
        write_record(diags, &settings.lab_dir, &record)?;
        Some((record.state(), planned_private))
    }

    async fn update<'a>(
        &self,
        diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        planned_private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let settings = self.shared.settings(diags)?;
        let record = Record::from_state(diags, &planned)?;
        write_record(diags, &settings.lab_dir, &record)?;
        Some((record.state(), planned_private))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        _planned_private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<()> {
        let settings = self.shared.settings(diags)?;
        let record = Record::from_state(diags, &prior)?;
        lab(diags, &settings, "host-down", &record)?;
        let _ = std::fs::remove_file(record_path(&settings.lab_dir, &record.name));
        Some(())
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let settings = self.shared.settings(diags)?;
        if !safe_name(&id) || !host_exists(&id) {
            diags.root_error_short(format!("no lab host {id} to import"));
            return None;
        }
        let bytes = std::fs::read(record_path(&settings.lab_dir, &id)).ok()?;
        let r: Record = serde_json::from_slice(&bytes).ok()?;
        Some((r.state(), Default::default()))
    }
}
