//! The normalised manifest every later layer works from.
//!
//! Whatever shape the user wrote (single or multi proxy, `db` or `dbs`, the
//! spec's `database`/`role` spellings), it arrives here in one form, with
//! defaults applied, so the graph, the plan and the executors never look at
//! raw manifest syntax.

use ipnet::IpNet;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

pub use crate::secrets::SopsRef;

/// The name of nixmox's work directory beside the manifest.
pub const WORK_DIR_NAME: &str = ".nixmox";

/// The four services every stack needs, in their canonical deployment order.
pub const CORE_SERVICES: [&str; 4] = ["dns", "postgresql", "caddy", "authentik"];

#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// Where the manifest was read from (relative paths in it are relative to its directory).
    pub source: PathBuf,
    pub network: Network,
    /// Every service, core and application, enabled or not, sorted by name.
    pub services: Vec<Service>,
    pub options: Options,
    pub deployment_phases: Option<DeploymentPhases>,
    pub terraform: TerraformSettings,
    pub secrets: SecretsSettings,
    pub nixos: NixosSettings,
    pub verify: VerifySettings,
    pub serve: ServeSettings,
}

/// End-to-end verification (`verify = { ca_file; tls_min_days; user; }`).
#[derive(Debug, Clone, Serialize)]
pub struct VerifySettings {
    /// The CA bundle proxy certificates must chain to; `NIXMOX_CA_FILE` overrides.
    pub ca_file: Option<String>,
    /// Certificates must stay valid at least this many more days.
    pub tls_min_days: u64,
    /// The user `verify` logs in as to run each OIDC client's whole
    /// authorization-code flow; without one, that check is not run.
    pub user: Option<VerifyUser>,
}

impl Default for VerifySettings {
    fn default() -> Self {
        VerifySettings {
            ca_file: None,
            tls_min_days: 7,
            user: None,
        }
    }
}

/// `verify.user = { username; password; password_env; password_file; password_output; groups; }`.
/// The password itself never appears in the manifest: it is read from the
/// environment variable `password_env`, else from the SOPS value `password`
/// names (`{ sops = "…"; }`), else from the file `password_file` (relative
/// to the manifest's directory), else from the Terraform output named
/// `password_output`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyUser {
    pub username: String,
    /// Default `NIXMOX_VERIFY_PASSWORD`.
    pub password_env: String,
    pub password_file: Option<String>,
    pub password_output: Option<String>,
    pub password_sops: Option<SopsRef>,
    /// Groups the ID token's groups claim must contain (it may name more).
    pub groups: Vec<String>,
}

impl VerifyUser {
    pub const DEFAULT_PASSWORD_ENV: &'static str = "NIXMOX_VERIFY_PASSWORD";
}

/// How hosts are reached and their systems built (`nixos = { … }`).
#[derive(Debug, Clone, Serialize)]
pub struct NixosSettings {
    /// A flake reference; a plain path is relative to the manifest's
    /// directory. `None`: the nearest `flake.nix` at or above the manifest
    /// (see `manifest::flake`).
    pub flake: Option<String>,
    /// Extra `NIX_CONFIG` lines for every Nix command.
    pub nix_config: Option<String>,
    /// Where systems are built (`nixos.build_host`).
    pub build_host: BuildHost,
    /// Seconds one activation may take.
    pub activation_timeout: u64,
    /// Seconds a host's guard waits, after its switch and after the last
    /// sign of nixmox, for the confirmation nixmox gives once the health gate
    /// passed, before it rolls back by itself; 0 turns the guard off.
    pub confirm_timeout: u64,
    pub ssh: SshSettings,
    /// An age key file to install on every host (for SOPS), never logged.
    pub age_key_file: Option<String>,
    /// The same key from a SOPS file (`age_key = { sops = "…"; }`), instead of `age_key_file`.
    pub age_key_sops: Option<SopsRef>,
    /// Where hosts keep that key.
    pub age_key_target: String,
    /// How to run SQL as the superuser on the PostgreSQL host (for native migrations).
    pub psql: String,
}

impl Default for NixosSettings {
    fn default() -> Self {
        NixosSettings {
            flake: None,
            nix_config: None,
            build_host: BuildHost::Local,
            activation_timeout: 300,
            confirm_timeout: 30,
            ssh: SshSettings::default(),
            age_key_file: None,
            age_key_sops: None,
            age_key_target: "/var/lib/sops-nix/key.txt".into(),
            psql: "runuser -u postgres -- psql".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SshSettings {
    pub user: String,
    pub port: u16,
    pub key: Option<String>,
    /// `accept-new` (default), `strict` or `off`.
    pub known_hosts: String,
    pub known_hosts_file: Option<String>,
    pub connect_timeout: u64,
    /// Idle seconds each host's connection is kept after a run, for the
    /// next one to ride on (0: every run ends its connections).
    pub persist: u64,
}

impl Default for SshSettings {
    fn default() -> Self {
        SshSettings {
            user: "root".into(),
            port: 22,
            key: None,
            known_hosts: "accept-new".into(),
            known_hosts_file: None,
            connect_timeout: 10,
            persist: crate::nixos::ssh_control::DEFAULT_PERSIST,
        }
    }
}

/// A service's own NixOS settings (`services.<n>.nixos = { … }`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServiceNixos {
    /// The flake attribute of its system; default
    /// `nixosConfigurations.<name>.config.system.build.toplevel`.
    pub attribute: Option<String>,
    pub ssh_user: Option<String>,
    pub ssh_port: Option<u16>,
    pub ssh_key: Option<String>,
    /// This host's `confirm_timeout`, instead of the stack's.
    pub confirm_timeout: Option<u64>,
    /// Where this host's system is built, instead of the stack's `build_host`.
    pub build_host: Option<BuildHost>,
    /// Extra lines of the host's env file (`nixos.env = { NAME = value; }`):
    /// plain text or a value from a SOPS file.
    pub env: BTreeMap<String, EnvValue>,
}

/// Where a system is built: the machine nixmox runs on, the host itself,
/// or a builder reached over SSH (its derivation copied there, built
/// there, its closure sent on to the host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildHost {
    Local,
    Target,
    /// Another service's host of the stack, by name.
    Service(String),
    /// `[user@]address`.
    Builder {
        user: Option<String>,
        address: std::net::IpAddr,
    },
}

impl std::fmt::Display for BuildHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildHost::Local => f.write_str("local"),
            BuildHost::Target => f.write_str("target"),
            BuildHost::Service(s) => f.write_str(s),
            BuildHost::Builder {
                user: Some(u),
                address,
            } => write!(f, "{u}@{address}"),
            BuildHost::Builder {
                user: None,
                address,
            } => write!(f, "{address}"),
        }
    }
}

/// A value of a host's env file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvValue {
    Text(String),
    Sops(SopsRef),
}

/// `nixmox serve` (`serve = { url; listen; public_read; session_hours; token_file; oidc; }`).
#[derive(Debug, Clone, Serialize)]
pub struct ServeSettings {
    /// Where browsers reach serve; its `/auth/callback` is the OIDC redirect URI.
    pub url: String,
    pub listen: std::net::SocketAddr,
    /// Reading without a login from a listen address that is not loopback.
    pub public_read: bool,
    pub session_hours: u64,
    /// A token for scripts (`Authorization: Bearer`), relative to the manifest.
    pub token_file: Option<String>,
    /// Login through the stack's own identity provider.
    pub oidc: Option<ServeOidc>,
}

/// The OIDC client nixmox registers for itself in tf:auth-core.
#[derive(Debug, Clone, Serialize)]
pub struct ServeOidc {
    pub client_id: String,
    pub provider: String,
    /// When not empty, a user must be in one of these groups to act.
    pub groups: Vec<String>,
}

/// The service name (and issuer slug) nixmox's own OIDC client is registered under.
pub const SERVE_SERVICE: &str = "nixmox";

pub const SERVE_LISTEN: &str = "127.0.0.1:8470";

impl Default for ServeSettings {
    fn default() -> Self {
        ServeSettings {
            url: format!("http://{SERVE_LISTEN}"),
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8470)),
            public_read: false,
            session_hours: 8,
            token_file: None,
            oidc: None,
        }
    }
}

/// The stack's SOPS file (`secrets = { sops_file; age_key_file; write_outputs; }`):
/// where `{ sops = "…"; }` references without a `file` read from, and where
/// Terraform outputs are written (under `<workspace>.<output>`).
#[derive(Debug, Clone, Serialize)]
pub struct SecretsSettings {
    /// Relative to the manifest's directory; a new file is encrypted with the
    /// creation rules of the `.sops.yaml` found from there.
    pub sops_file: Option<String>,
    /// The age key nixmox decrypts with when `SOPS_AGE_KEY_FILE` is not set.
    pub age_key_file: Option<String>,
    /// Whether Terraform outputs are written into `sops_file` (default true).
    pub write_outputs: bool,
}

impl Default for SecretsSettings {
    fn default() -> Self {
        SecretsSettings {
            sops_file: None,
            age_key_file: None,
            write_outputs: true,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Network {
    pub domain: String,
    pub dns_server: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
    pub network_cidr: Option<IpNet>,
    pub vlan_tag: Option<u16>,
    /// Login name → authorised public keys.
    pub ssh_keys: BTreeMap<String, Vec<String>>,
    pub outposts: Outposts,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Outposts {
    pub ldap_base_dn: Option<String>,
    pub radius: Option<Radius>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Radius {
    /// A secret: never printed, logged or serialised.
    #[serde(skip)]
    pub shared_secret: Option<String>,
    pub client_networks: Vec<IpNet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    Core,
    Application,
}

#[derive(Debug, Clone, Serialize)]
pub struct Service {
    pub name: String,
    pub kind: ServiceKind,
    pub enabled: bool,
    pub host: Host,
    pub version: Option<String>,
    pub depends_on: Vec<String>,
    /// Labels to select services by (`--on @tag`).
    pub tags: Vec<String>,
    pub ports: Vec<u16>,
    pub auth: Option<Auth>,
    pub proxies: Vec<Proxy>,
    pub databases: Vec<Database>,
    pub health: Health,
    pub terraform: ServiceTerraform,
    pub nixos: ServiceNixos,
}

/// The machine a service runs on (a Proxmox LXC/VM; a namespace in the lab).
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    /// Always set for enabled services (validation demands it); a disabled
    /// service may leave it out.
    pub ip: Option<IpAddr>,
    pub hostname: Option<String>,
    pub vmid: Option<u32>,
    pub resources: Option<Resources>,
    pub onboot: bool,
    pub start: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Resources {
    pub cores: Option<u32>,
    /// MiB.
    pub memory: Option<u32>,
    pub disk_gb: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Auth {
    Oidc(Oidc),
    /// Caddy asks Authentik's outpost at `upstream` before passing a request on;
    /// when the manifest leaves it out, validation fills in the authentik host's port 9000.
    ForwardAuth {
        provider: String,
        upstream: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Oidc {
    pub provider: String,
    pub client_id: String,
    pub client_type: ClientType,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub username_claim: String,
    pub groups_claim: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientType {
    Confidential,
    Public,
}

/// One reverse-proxy route, flattened from either proxy form.
#[derive(Debug, Clone, Serialize)]
pub struct Proxy {
    /// The sub-proxy's name in the multi form; `None` for the single form.
    pub name: Option<String>,
    pub domain: String,
    pub path: String,
    pub upstream: String,
    pub headers: BTreeMap<String, String>,
    pub tls: Option<Value>,
    pub authz: Option<Value>,
    pub extra_config: Option<String>,
    /// The auth guarding this route (see [`AuthFrom`]).
    pub auth: Option<Auth>,
    /// Where `auth` comes from.
    pub auth_from: AuthFrom,
}

/// Where a route's auth comes from. A route's `auth` is an attribute set
/// (its own), `"inherit"` (the service's, stated) or `"none"` (open even
/// when the service has auth); a route that says nothing takes the
/// service's, which validation warns about for named routes, because a
/// push or API endpoint behind a login breaks its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthFrom {
    /// The route's own `auth` block.
    Route,
    /// The service's `auth`, by `auth = "inherit"` or by saying nothing.
    Service,
    /// `auth = "none"`: open.
    Open,
    /// Neither the route nor the service has auth.
    Unset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DbMode {
    Terraform,
    NativeMigration,
}

/// One PostgreSQL database a service owns.
#[derive(Debug, Clone, Serialize)]
pub struct Database {
    /// The entry's key under `dbs`; `None` for `db`.
    pub key: Option<String>,
    pub name: String,
    pub owner: String,
    pub host: Option<String>,
    pub port: u16,
    pub mode: Option<DbMode>,
    pub migrations: Vec<String>,
    pub additional: Vec<String>,
    /// The owner's password for `verify`'s login check, from a SOPS file.
    pub password: Option<SopsRef>,
}

/// A probe: a command run on the service's host, or a URL fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "target", rename_all = "lowercase")]
pub enum Probe {
    Command(String),
    Url(String),
    /// `tcp://host:port`: a connection is accepted.
    Tcp(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub startup: Option<Probe>,
    pub liveness: Option<Probe>,
    pub readiness: Option<Probe>,
    /// Seconds between attempts.
    pub interval: u64,
    /// Seconds a gate may wait in all.
    pub timeout: u64,
    pub retries: u32,
}

/// Terraform wiring for one phase: what the spec calls `interface.terraform`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TerraformPhase {
    pub modules: Vec<String>,
    pub variables: BTreeMap<String, Value>,
    pub targets: Vec<String>,
    pub apply_order: Vec<String>,
}

impl TerraformPhase {
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }
}

/// A service's Terraform: the top level of `interface.terraform` feeds
/// `tf:service-infra`, its `config` block feeds `tf:service-config`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServiceTerraform {
    pub infra: TerraformPhase,
    pub config: TerraformPhase,
}

/// The stack-wide Terraform roots (`terraform = { … }` at the top level).
#[derive(Debug, Clone, Serialize)]
pub struct TerraformSettings {
    pub binary: String,
    /// The directory holding the user's Terraform tree (relative to the
    /// manifest's directory): a root module runs in a copy of it, so
    /// relative paths between roots and shared modules keep working.
    pub root: Option<String>,
    pub infra: TerraformPhase,
    pub auth_core: TerraformPhase,
    /// Seconds Terraform waits for a state lock.
    pub lock_timeout: u64,
    /// Seconds one Terraform command may run before nixmox interrupts it.
    pub timeout: u64,
    pub retry: TerraformRetry,
}

/// Which failures are retried: attempts in all, the first wait, and regular
/// expressions matched against Terraform's diagnostics (`None`: the defaults).
#[derive(Debug, Clone, Serialize)]
pub struct TerraformRetry {
    pub attempts: u32,
    pub backoff_seconds: u64,
    pub patterns: Option<Vec<String>>,
}

impl Default for TerraformRetry {
    fn default() -> Self {
        TerraformRetry {
            attempts: 3,
            backoff_seconds: 2,
            patterns: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Options {
    pub health_check_timeout: u64,
    pub retry_attempts: u32,
    pub retry_delay: u64,
    pub enable_rollback: bool,
    pub enable_health_monitoring: bool,
    pub enable_dependency_graphing: bool,
    pub enable_deployment_logging: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            health_check_timeout: 300,
            retry_attempts: 3,
            retry_delay: 10,
            enable_rollback: true,
            enable_health_monitoring: true,
            enable_dependency_graphing: true,
            enable_deployment_logging: true,
        }
    }
}

/// The user's own statement of the order, checked against the graph.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeploymentPhases {
    pub tf_infra: Vec<String>,
    pub nix_core: Vec<String>,
    pub tf_auth_core: Vec<String>,
    pub services: Vec<String>,
}

impl Manifest {
    /// The manifest's directory: relative paths in the manifest are relative to it.
    pub fn dir(&self) -> PathBuf {
        let dir = self
            .source
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
    }

    /// Where nixmox keeps its files for this manifest (state, Terraform
    /// homes, run logs): `NIXMOX_STATE_DIR`, else `.nixmox` beside the manifest.
    pub fn work_dir(&self) -> PathBuf {
        match std::env::var_os("NIXMOX_STATE_DIR").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => self.dir().join(WORK_DIR_NAME),
        }
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services
            .binary_search_by(|s| s.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.services[i])
    }

    pub fn enabled(&self) -> impl Iterator<Item = &Service> {
        self.services.iter().filter(|s| s.enabled)
    }

    /// Every proxy route of every enabled service, with its owner.
    pub fn proxies(&self) -> impl Iterator<Item = (&Service, &Proxy)> {
        self.enabled()
            .flat_map(|s| s.proxies.iter().map(move |p| (s, p)))
    }

    /// Every database of every enabled service, with its owner.
    pub fn databases(&self) -> impl Iterator<Item = (&Service, &Database)> {
        self.enabled()
            .flat_map(|s| s.databases.iter().map(move |d| (s, d)))
    }
}

impl Service {
    pub fn is_core(&self) -> bool {
        self.kind == ServiceKind::Core
    }

    /// The OIDC clients this service needs registered: its own, plus those of
    /// routes with their own OIDC auth (a route inheriting the service's shares its client).
    pub fn oidc_clients(&self) -> Vec<&Oidc> {
        let own = self.auth.as_ref();
        let routes = self
            .proxies
            .iter()
            .filter_map(|p| p.auth.as_ref())
            .filter(|a| Some(*a) != own);
        let mut out: Vec<&Oidc> = Vec::new();
        for auth in own.into_iter().chain(routes) {
            if let Auth::Oidc(o) = auth {
                if !out.iter().any(|seen| seen.client_id == o.client_id) {
                    out.push(o);
                }
            }
        }
        out
    }
}
