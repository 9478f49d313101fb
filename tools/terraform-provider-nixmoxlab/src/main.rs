//! `terraform-provider-nixmoxlab`: the lab's Terraform provider, a STAND-IN
//! for the Proxmox and Authentik providers (which cannot run here). Its
//! resources are named after what they stand in for and use the attribute
//! names those providers use where it costs little:
//!
//! - `nixmoxlab_lxc` — a lab host, standing in for a Proxmox LXC container
//!   (vmid, hostname, address, resources, onboot/start): created and
//!   removed with `nixmox lab host-up|host-down`, read back from the host
//!   itself;
//! - `nixmoxlab_provider_oauth2`, `nixmoxlab_application` and
//!   `nixmoxlab_outpost` — standing in for Authentik's OAuth2 provider,
//!   application and outpost (whose token is a sensitive attribute),
//!   managed through the admin API of the lab's identity provider (the
//!   `authentik` host).
//!
//! Provider settings (all optional): `lab_dir` (default `NIXMOX_LAB_DIR`,
//! else /var/lib/nixmox-lab), `nixmox` (the nixmox binary; default
//! `NIXMOX_BIN`, else `nixmox` on PATH), `url` (the identity provider's
//! admin API, for example http://10.213.0.5:9000), `token` (its API token,
//! sensitive: as Authentik's provider takes its bootstrap token) and
//! `token_file` (a file holding it; default the one the lab's identity
//! provider keeps in the lab directory).

mod api;
mod application;
mod lxc;
mod oauth2;
mod outpost;
mod values;

use anyhow::Result;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, Schema,
};
use tf_provider::value::{ValueEmpty, ValueString};
use tf_provider::{map, serve, Diagnostics, DynamicResource, Provider};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config<'a> {
    #[serde(borrow)]
    pub lab_dir: ValueString<'a>,
    #[serde(borrow)]
    pub nixmox: ValueString<'a>,
    #[serde(borrow)]
    pub url: ValueString<'a>,
    #[serde(borrow)]
    pub token: ValueString<'a>,
    #[serde(borrow)]
    pub token_file: ValueString<'a>,
}

/// The provider's settings once Terraform configured it.
#[derive(Debug, Clone)]
pub struct Settings {
    pub lab_dir: PathBuf,
    pub nixmox: PathBuf,
    pub url: Option<String>,
    /// Given in the configuration (wins over `token_file`).
    pub token: Option<String>,
    pub token_file: PathBuf,
}

/// Filled by `configure`, which Terraform calls after the resources exist.
#[derive(Debug, Default, Clone)]
pub struct Shared(Arc<RwLock<Option<Settings>>>);

impl Shared {
    pub fn settings(&self, diags: &mut Diagnostics) -> Option<Settings> {
        let s = self.0.read().ok().and_then(|g| g.clone());
        if s.is_none() {
            diags.root_error(
                "nixmoxlab is not configured",
                "Terraform did not configure the provider (or a setting was unknown at this point)",
            );
        }
        s
    }
}

#[derive(Debug, Default)]
pub struct LabProvider {
    shared: Shared,
}

fn optional(description: &str) -> Attribute {
    Attribute {
        attr_type: AttributeType::String,
        description: Description::plain(description),
        constraint: AttributeConstraint::Optional,
        ..Default::default()
    }
}

#[async_trait]
impl Provider for LabProvider {
    type Config<'a> = Config<'a>;
    type MetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::plain(
                    "The nixmox lab: a stand-in for the Proxmox and Authentik providers",
                ),
                attributes: map! {
                    "lab_dir" => optional("Where the lab keeps its hosts (default NIXMOX_LAB_DIR, else /var/lib/nixmox-lab)"),
                    "nixmox" => optional("The nixmox binary that creates and removes lab hosts (default NIXMOX_BIN, else nixmox)"),
                    "url" => optional("The lab identity provider's admin API, e.g. http://10.213.0.5:9000"),
                    "token" => Attribute {
                        sensitive: true,
                        ..optional("The admin API token (default: read from token_file)")
                    },
                    "token_file" => optional("A file holding the admin API token (default: the one the lab's identity provider keeps)"),
                },
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(
        &self,
        _diags: &mut Diagnostics,
        _config: Self::Config<'a>,
    ) -> Option<()> {
        Some(())
    }

    async fn configure<'a>(
        &self,
        diags: &mut Diagnostics,
        _terraform_version: String,
        config: Self::Config<'a>,
    ) -> Option<()> {
        let given = |v: &ValueString| match v {
            ValueString::Value(s) if !s.is_empty() => Some(s.to_string()),
            _ => None,
        };
        let lab_dir = PathBuf::from(
            given(&config.lab_dir)
                .or_else(|| {
                    std::env::var("NIXMOX_LAB_DIR")
                        .ok()
                        .filter(|v| !v.is_empty())
                })
                .unwrap_or_else(|| "/var/lib/nixmox-lab".into()),
        );
        let nixmox = PathBuf::from(
            given(&config.nixmox)
                .or_else(|| std::env::var("NIXMOX_BIN").ok().filter(|v| !v.is_empty()))
                .unwrap_or_else(|| "nixmox".into()),
        );
        let token_file = given(&config.token_file)
            .map(PathBuf::from)
            .unwrap_or_else(|| lab_dir.join("hosts/authentik/state/authentik/admin.token"));
        let settings = Settings {
            lab_dir,
            nixmox,
            url: given(&config.url).map(|u| u.trim_end_matches('/').to_string()),
            token: given(&config.token).map(|t| t.trim().to_string()),
            token_file,
        };
        match self.shared.0.write() {
            Ok(mut g) => *g = Some(settings),
            Err(_) => {
                diags.root_error_short("nixmoxlab: the provider's settings are unusable");
                return None;
            }
        }
        Some(())
    }

    fn get_resources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicResource>>> {
        Some(map! {
            "lxc" => lxc::Lxc { shared: self.shared.clone() },
            "provider_oauth2" => oauth2::OAuth2Provider { shared: self.shared.clone() },
            "application" => application::Application { shared: self.shared.clone() },
            "outpost" => outpost::Outpost { shared: self.shared.clone() },
        })
    }
}

fn main() -> Result<()> {
    // tf-provider captures a backtrace for every diagnostic when
    // RUST_BACKTRACE is set (Terraform passes its environment on): error
    // details must say what went wrong, not where in this binary.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve("nixmoxlab", LabProvider::default()))
}
