//! `interface`: how a service plugs into the stack (auth, proxy, databases,
//! health probes, Terraform).

use crate::manifest::decode::{kind_of, Obj};
use crate::manifest::diag::{did_you_mean, Diagnostics, Path};
use crate::manifest::model::{
    Auth, AuthFrom, ClientType, Database, DbMode, Health, Oidc, Options, Probe, Proxy,
    ServiceTerraform, TerraformPhase,
};
use crate::manifest::syntax;
use serde_json::Value;
use std::collections::BTreeMap;

/// What `interface` holds, before it is spread over the [`crate::manifest::Service`].
pub struct Interface {
    pub auth: Option<Auth>,
    pub proxies: Vec<Proxy>,
    pub databases: Vec<Database>,
    pub health: Health,
    pub terraform: ServiceTerraform,
}

impl Interface {
    pub fn defaults(options: &Options) -> Self {
        Interface {
            auth: None,
            proxies: Vec::new(),
            databases: Vec::new(),
            health: default_health(options),
            terraform: ServiceTerraform::default(),
        }
    }
}

pub fn interface(
    diags: &mut Diagnostics,
    path: Path,
    service: &str,
    value: &Value,
    options: &Options,
) -> Option<Interface> {
    let obj = Obj::open(
        diags,
        path,
        value,
        &["auth", "db", "dbs", "proxy", "health", "terraform"],
    )?;
    let auth = obj.raw("auth").and_then(|v| {
        auth(
            diags,
            obj.at("auth"),
            v,
            service,
            &format!("{service}-oidc"),
        )
    });
    let proxies = obj
        .raw("proxy")
        .map(|v| proxies(diags, obj.at("proxy"), service, v, auth.as_ref()))
        .unwrap_or_default();
    let mut databases = Vec::new();
    if let Some(v) = obj.raw("db") {
        databases.extend(database(diags, obj.at("db"), service, None, v));
    }
    if let Some(v) = obj.raw("dbs") {
        match v {
            Value::Object(map) => {
                for (key, entry) in map {
                    let p = obj.at("dbs").key(key);
                    databases.extend(database(diags, p, service, Some(key.clone()), entry));
                }
            }
            other => diags.error(
                &obj.at("dbs"),
                format!(
                    "expected an attribute set of databases, found {}",
                    kind_of(other)
                ),
            ),
        }
    }
    let health = obj
        .raw("health")
        .and_then(|v| health(diags, obj.at("health"), v, options))
        .unwrap_or_else(|| default_health(options));
    let terraform = obj
        .raw("terraform")
        .and_then(|v| service_terraform(diags, obj.at("terraform"), v))
        .unwrap_or_default();
    Some(Interface {
        auth,
        proxies,
        databases,
        health,
        terraform,
    })
}

const AUTH_TYPES: [&str; 2] = ["oidc", "forward_auth"];

/// The identity provider: it authenticates users itself.
const IDENTITY_PROVIDER: &str = "authentik";

fn auth(
    diags: &mut Diagnostics,
    path: Path,
    value: &Value,
    service: &str,
    default_client_id: &str,
) -> Option<Auth> {
    let obj = Obj::open(
        diags,
        path,
        value,
        &["type", "provider", "oidc", "forward_auth_upstream"],
    )?;
    let kind: String = obj.req(diags, "type", "auth type (\"oidc\" or \"forward_auth\")")?;
    let provider: String = obj.or(diags, "provider", "authentik".to_string());
    if provider != "authentik" {
        diags.error(
            &obj.at("provider"),
            format!(
                "unknown auth provider {}: only \"authentik\" is supported",
                syntax::quote(&provider)
            ),
        );
    }
    match kind.as_str() {
        "oidc" => {
            if obj.has("forward_auth_upstream") {
                diags.error(
                    &obj.at("forward_auth_upstream"),
                    "forward_auth_upstream belongs to type \"forward_auth\", not \"oidc\"",
                );
            }
            let oidc = match obj.raw("oidc") {
                Some(v) => oidc(diags, obj.at("oidc"), v, default_client_id, &provider)?,
                None => oidc(
                    diags,
                    obj.at("oidc"),
                    &Value::Object(Default::default()),
                    default_client_id,
                    &provider,
                )?,
            };
            Some(Auth::Oidc(oidc))
        }
        "forward_auth" => {
            if obj.has("oidc") {
                diags.error(
                    &obj.at("oidc"),
                    "oidc settings belong to type \"oidc\", not \"forward_auth\"",
                );
            }
            let upstream: Option<String> = obj.opt(diags, "forward_auth_upstream");
            if let Some(u) = &upstream {
                if let Err(e) = syntax::host_port(u) {
                    diags.error(&obj.at("forward_auth_upstream"), e);
                }
            }
            Some(Auth::ForwardAuth { provider, upstream })
        }
        // An older spelling: the identity provider logs users in itself,
        // so nothing stands in front of it.
        "local" if service == IDENTITY_PROVIDER => None,
        "local" => {
            diags.error_hint(
                &obj.at("type"),
                format!("auth type \"local\" on {service}: only the identity provider ({IDENTITY_PROVIDER}) logs users in itself"),
                Some("for a login in front of this service use \"forward_auth\"; for its own OIDC login, \"oidc\"; for none, leave auth out".into()),
            );
            None
        }
        other => {
            let hint = did_you_mean(other, AUTH_TYPES)
                .or_else(|| Some("allowed types: \"oidc\", \"forward_auth\"".into()));
            diags.error_hint(
                &obj.at("type"),
                format!("unknown auth type {}", syntax::quote(other)),
                hint,
            );
            None
        }
    }
}

fn oidc(
    diags: &mut Diagnostics,
    path: Path,
    value: &Value,
    default_client_id: &str,
    provider: &str,
) -> Option<Oidc> {
    let obj = Obj::open(
        diags,
        path,
        value,
        &[
            "client_id",
            "client_type",
            "redirect_uris",
            "scopes",
            "username_claim",
            "groups_claim",
        ],
    )?;
    let client_id = obj.or(diags, "client_id", default_client_id.to_string());
    check_client_id(diags, &obj.at("client_id"), &client_id);
    let client_type = match obj.opt::<String>(diags, "client_type").as_deref() {
        None | Some("confidential") => ClientType::Confidential,
        Some("public") => ClientType::Public,
        Some(other) => {
            diags.error(
                &obj.at("client_type"),
                format!(
                    "unknown client_type {}: expected \"confidential\" or \"public\"",
                    syntax::quote(other)
                ),
            );
            ClientType::Confidential
        }
    };
    let redirect_uris: Vec<String> = obj.or(diags, "redirect_uris", Vec::new());
    for (i, uri) in redirect_uris.iter().enumerate() {
        if let Err(e) = syntax::http_url(uri) {
            diags.error(&obj.at("redirect_uris").index(i), e);
        } else if uri.contains('*') {
            diags.warning(
                &obj.at("redirect_uris").index(i),
                format!("{} has a '*', but Authentik compares redirect URIs strictly: it matches no real callback; give each callback URL in full", syntax::quote(uri)),
            );
        }
    }
    if redirect_uris.is_empty() {
        diags.warning(&obj.at("redirect_uris"), "no redirect_uris: the OIDC client cannot complete a login and verify cannot check its callbacks");
    }
    let scopes: Vec<String> = obj.or(
        diags,
        "scopes",
        vec!["openid".into(), "email".into(), "profile".into()],
    );
    for (i, scope) in scopes.iter().enumerate() {
        if scope.is_empty()
            || scope
                .chars()
                .any(|c| c.is_whitespace() || c == '"' || c == '\\')
        {
            diags.error(
                &obj.at("scopes").index(i),
                format!("{} is not a valid OAuth scope", syntax::quote(scope)),
            );
        }
    }
    if !scopes.iter().any(|s| s == "openid") {
        diags.warning(
            &obj.at("scopes"),
            "scopes lack \"openid\": the provider will not issue an ID token",
        );
    }
    Some(Oidc {
        provider: provider.to_string(),
        client_id,
        client_type,
        redirect_uris,
        scopes,
        username_claim: obj.or(diags, "username_claim", "preferred_username".to_string()),
        groups_claim: obj.or(diags, "groups_claim", "groups".to_string()),
    })
}

const PROXY_KEYS: &[&str] = &[
    "domain",
    "path",
    "upstream",
    "headers",
    "tls",
    "authz",
    "extra_config",
    "auth",
];

/// Both proxy forms: a single route (it has `domain`), or a map of named routes.
fn proxies(
    diags: &mut Diagnostics,
    path: Path,
    service: &str,
    value: &Value,
    service_auth: Option<&Auth>,
) -> Vec<Proxy> {
    let Value::Object(map) = value else {
        diags.error(
            &path,
            format!("expected an attribute set, found {}", kind_of(value)),
        );
        return Vec::new();
    };
    if map.is_empty() {
        diags.error(
            &path,
            "empty proxy: give domain, path and upstream, or named sub-proxies",
        );
        return Vec::new();
    }
    // The single form names its fields at the top; the map form names routes.
    // A route may be called `auth` or `headers`, so only a route-defining field
    // or a plain (non-attrset) value under a field name marks the single form.
    let single = ["domain", "upstream", "path"]
        .iter()
        .any(|k| map.contains_key(*k))
        || map
            .iter()
            .any(|(k, v)| PROXY_KEYS.contains(&k.as_str()) && !v.is_object());
    if single {
        return proxy(diags, path, service, None, value, service_auth)
            .into_iter()
            .collect();
    }
    let mut out = Vec::new();
    for (name, entry) in map {
        let p = path.key(name);
        if let Err(e) = syntax::service_name(name) {
            diags.error(&p, e.replace("service name", "sub-proxy name"));
        }
        out.extend(proxy(
            diags,
            p,
            service,
            Some(name.clone()),
            entry,
            service_auth,
        ));
    }
    out
}

fn proxy(
    diags: &mut Diagnostics,
    path: Path,
    service: &str,
    name: Option<String>,
    value: &Value,
    service_auth: Option<&Auth>,
) -> Option<Proxy> {
    let obj = Obj::open(diags, path, value, PROXY_KEYS)?;
    let domain: Option<String> = obj.req(diags, "domain", "domain");
    if let Some(d) = &domain {
        if let Err(e) = syntax::domain(d, true) {
            diags.error(&obj.at("domain"), e);
        }
    }
    let route_path: String = obj.or(diags, "path", "/".to_string());
    if !route_path.starts_with('/') || route_path.chars().any(char::is_whitespace) {
        diags.error(
            &obj.at("path"),
            format!(
                "{} is not a URL path: it must start with '/' and contain no spaces",
                syntax::quote(&route_path)
            ),
        );
    }
    let upstream: Option<String> = obj.req(diags, "upstream", "upstream (host:port)");
    if let Some(u) = &upstream {
        if let Err(e) = syntax::host_port(u) {
            diags.error(&obj.at("upstream"), e);
        }
    }
    let headers: BTreeMap<String, String> = obj.or(diags, "headers", BTreeMap::new());
    for header in headers.keys() {
        if header.is_empty()
            || !header
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
        {
            diags.error(
                &obj.at("headers").key(header),
                format!("{} is not a valid HTTP header name", syntax::quote(header)),
            );
        }
    }
    let tls = flexible(diags, &obj, "tls");
    let authz = flexible(diags, &obj, "authz");
    // Caddy directives, one per line: line breaks are its syntax.
    let extra_config = obj
        .opt::<crate::manifest::decode::Text>(diags, "extra_config")
        .map(|t| t.0);
    let default_client = match &name {
        Some(n) => format!("{service}-{n}-oidc"),
        None => format!("{service}-oidc"),
    };
    let (route_auth, auth_from) = match obj.raw("auth") {
        Some(Value::String(word)) if word == "inherit" => {
            match service_auth {
                Some(a) => (Some(a.clone()), AuthFrom::Service),
                None => {
                    diags.warning(&obj.at("auth"), format!("auth = \"inherit\", but service {service} has no auth: this route is open"));
                    (None, AuthFrom::Unset)
                }
            }
        }
        Some(Value::String(word)) if word == "none" => (None, AuthFrom::Open),
        Some(Value::String(other)) => {
            let hint = did_you_mean(other, ["inherit", "none"]);
            diags.error_hint(
                &obj.at("auth"),
                format!("a route's auth is an attribute set, \"inherit\" (the service's) or \"none\" (open), not {}", syntax::quote(other)),
                hint,
            );
            (None, AuthFrom::Unset)
        }
        Some(v) => match auth(diags, obj.at("auth"), v, service, &default_client) {
            Some(a) => (Some(a), AuthFrom::Route),
            // `type = "local"` on the identity provider: nothing in front.
            None => (None, AuthFrom::Open),
        },
        None => match (service_auth, &name) {
            (Some(a), Some(route)) => {
                diags.warning(
                    &obj.at("auth"),
                    format!(
                        "route {route} declares no auth, so it takes the service's {} auth: write auth = \"inherit\" to say so, or auth = \"none\" for an endpoint machines call (a push API such as Loki's must not be put behind a login)",
                        auth_kind(a)
                    ),
                );
                (Some(a.clone()), AuthFrom::Service)
            }
            (Some(a), None) => (Some(a.clone()), AuthFrom::Service),
            (None, _) => (None, AuthFrom::Unset),
        },
    };
    Some(Proxy {
        name,
        domain: domain?,
        path: route_path,
        upstream: upstream?,
        headers,
        tls,
        authz,
        extra_config,
        auth: route_auth,
        auth_from,
    })
}

fn auth_kind(a: &Auth) -> &'static str {
    match a {
        Auth::Oidc(_) => "oidc",
        Auth::ForwardAuth { .. } => "forward_auth",
    }
}

/// `tls` and `authz` are written as booleans, strings or small attribute sets.
fn flexible(diags: &mut Diagnostics, obj: &Obj, key: &str) -> Option<Value> {
    let v = obj.raw(key)?;
    match v {
        Value::Bool(_) | Value::String(_) | Value::Object(_) => Some(v.clone()),
        other => {
            diags.error(
                &obj.at(key),
                format!(
                    "expected a boolean, a string or an attribute set, found {}",
                    kind_of(other)
                ),
            );
            None
        }
    }
}

const DB_KEYS: &[&str] = &[
    "host",
    "name",
    "database",
    "owner",
    "role",
    "port",
    "mode",
    "migrations",
    "schema_files",
    "additionaldbs",
    "password",
];

/// The core service that is the database server.
const DATABASE_SERVER: &str = "postgresql";

fn database(
    diags: &mut Diagnostics,
    path: Path,
    service: &str,
    key: Option<String>,
    value: &Value,
) -> Option<Database> {
    let obj = Obj::open(diags, path, value, DB_KEYS)?;
    let mode_text: Option<String> = obj.opt(diags, "mode");
    if mode_text.as_deref() == Some("standalone") {
        // An older spelling for "this is the server itself".
        if service == DATABASE_SERVER {
            diags.warning(&obj.at("mode"), "mode \"standalone\" marks the database server itself: there is no database to create, so this entry is ignored (leave it out)");
        } else {
            diags.error_hint(
                &obj.at("mode"),
                format!("database mode \"standalone\" on {service}: it marks the database server itself ({DATABASE_SERVER})"),
                Some("a service's own database is \"terraform\" (its Terraform owns the schema) or \"native-migration\" (nixmox applies its migrations)".into()),
            );
        }
        return None;
    }
    let name = aliased(diags, &obj, "name", "database")?;
    let owner = match aliased_opt(diags, &obj, "owner", "role") {
        Some(o) => o,
        None => name.clone(),
    };
    for (k, v) in [("name", &name), ("owner", &owner)] {
        if let Err(e) = syntax::sql_name(v) {
            let at = if obj.has(k) {
                k
            } else if k == "name" {
                "database"
            } else {
                "role"
            };
            diags.error(&obj.at(at), e);
        }
    }
    // A SOPS reference is taken (for verify's login check); a plaintext
    // password is not, and only the fact is reported, never the value.
    let password = match obj.raw("password") {
        Some(v) if crate::secrets::SopsRef::is_ref(v) => obj.opt(diags, "password"),
        Some(_) => {
            diags.warning(&obj.at("password"), "a plaintext password in the manifest is ignored: name its place in a SOPS file instead, password = { sops = \"section.key\"; }");
            None
        }
        None => None,
    };
    let host: Option<String> = obj.opt(diags, "host");
    if let Some(h) = &host {
        if syntax::ip(h).is_err() && syntax::domain(h, false).is_err() {
            diags.error(
                &obj.at("host"),
                format!(
                    "{} is neither an IP address nor a host name",
                    syntax::quote(h)
                ),
            );
        }
    }
    let port: u16 = obj.or(diags, "port", 5432);
    if port == 0 {
        diags.error(&obj.at("port"), "port 0 is not a usable port");
    }
    let mode = match mode_text.as_deref() {
        None => None,
        Some("terraform") => Some(DbMode::Terraform),
        Some("native-migration") => Some(DbMode::NativeMigration),
        Some(other) => {
            let hint = did_you_mean(other, ["terraform", "native-migration"]);
            diags.error_hint(
                &obj.at("mode"),
                format!(
                    "unknown database mode {}: expected \"terraform\" or \"native-migration\"",
                    syntax::quote(other)
                ),
                hint,
            );
            None
        }
    };
    // `schema_files` is an older spelling of `migrations`.
    let migrations_key = match (obj.has("migrations"), obj.has("schema_files")) {
        (true, true) => {
            diags.error(
                &obj.at("schema_files"),
                "migrations and schema_files are two spellings of one field: give one (migrations)",
            );
            "migrations"
        }
        (false, true) => "schema_files",
        _ => "migrations",
    };
    let migrations: Vec<String> = obj.or(diags, migrations_key, Vec::new());
    for (i, m) in migrations.iter().enumerate() {
        if m.trim().is_empty() {
            diags.error(&obj.at(migrations_key).index(i), "empty migration path");
        } else if let Err(e) = syntax::argument(m) {
            diags.error(&obj.at(migrations_key).index(i), e);
        }
    }
    if !migrations.is_empty() && mode == Some(DbMode::Terraform) {
        diags.warning(&obj.at(migrations_key), "migrations are applied by nixmox only in mode \"native-migration\"; with \"terraform\" the service's Terraform owns the schema");
    }
    let additional: Vec<String> = obj.or(diags, "additionaldbs", Vec::new());
    for (i, db) in additional.iter().enumerate() {
        if let Err(e) = syntax::sql_name(db) {
            diags.error(&obj.at("additionaldbs").index(i), e);
        }
    }
    Some(Database {
        key,
        name,
        owner,
        host,
        port,
        mode,
        migrations,
        additional,
        password,
    })
}

/// A field that the spec spells two ways; exactly one must be given.
fn aliased(diags: &mut Diagnostics, obj: &Obj, key: &str, alias: &str) -> Option<String> {
    let found = aliased_opt(diags, obj, key, alias);
    if found.is_none() && !obj.has(key) && !obj.has(alias) {
        diags.error(
            &obj.at(key),
            format!("missing required {key} (or its spelling {alias})"),
        );
    }
    found
}

fn aliased_opt(diags: &mut Diagnostics, obj: &Obj, key: &str, alias: &str) -> Option<String> {
    let a: Option<String> = obj.opt(diags, key);
    let b: Option<String> = obj.opt(diags, alias);
    match (a, b) {
        (Some(a), Some(b)) if a != b => {
            diags.error(&obj.at(alias), format!("{key} and {alias} are two spellings of one field and disagree ({} vs {}): give one", syntax::quote(&a), syntax::quote(&b)));
            None
        }
        (a, b) => a.or(b),
    }
}

fn default_health(options: &Options) -> Health {
    Health {
        startup: None,
        liveness: None,
        readiness: None,
        interval: options.retry_delay,
        timeout: options.health_check_timeout,
        retries: options.retry_attempts,
    }
}

fn health(diags: &mut Diagnostics, path: Path, value: &Value, options: &Options) -> Option<Health> {
    let obj = Obj::open(
        diags,
        path,
        value,
        &[
            "startup",
            "liveness",
            "readiness",
            "interval",
            "timeout",
            "retries",
        ],
    )?;
    let d = default_health(options);
    let h = Health {
        startup: probe(diags, &obj, "startup"),
        liveness: probe(diags, &obj, "liveness"),
        readiness: probe(diags, &obj, "readiness"),
        interval: obj.or(diags, "interval", d.interval),
        timeout: obj.or(diags, "timeout", d.timeout),
        retries: obj.or(diags, "retries", d.retries),
    };
    check_timing(diags, &obj.at("interval"), h.interval, false);
    check_timing(diags, &obj.at("timeout"), h.timeout, true);
    if h.retries > 1000 {
        diags.error(&obj.at("retries"), "at most 1000 retries are allowed");
    }
    if h.interval > h.timeout {
        diags.warning(
            &obj.at("interval"),
            format!(
                "interval ({}s) is longer than timeout ({}s): only one attempt fits",
                h.interval, h.timeout
            ),
        );
    }
    Some(h)
}

/// Seconds for waits: every wait is bounded, so zero and absurd values are refused.
pub fn check_timing(diags: &mut Diagnostics, path: &Path, seconds: u64, is_timeout: bool) {
    const DAY: u64 = 86_400;
    if is_timeout && seconds == 0 {
        diags.error(
            path,
            "a timeout of 0 seconds would fail every check: give at least 1",
        );
    } else if seconds > DAY {
        diags.error(
            path,
            format!("{seconds} seconds is more than a day: waits are bounded to at most {DAY}"),
        );
    }
}

fn probe(diags: &mut Diagnostics, obj: &Obj, key: &str) -> Option<Probe> {
    // A command is shell code by design: it may span lines.
    let text = obj.opt::<crate::manifest::decode::Text>(diags, key)?.0;
    let at = obj.at(key);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        diags.error(
            &at,
            "empty health probe: give a shell command or an http(s):// URL",
        );
        return None;
    }
    match url_scheme(trimmed).as_deref() {
        None => {}
        Some("http") | Some("https") => {
            return syntax::http_url(trimmed)
                .map(|_| Probe::Url(trimmed.to_string()))
                .map_err(|e| diags.error(&at, e))
                .ok();
        }
        Some("tcp") => {
            let target = &trimmed["tcp://".len()..];
            return syntax::host_port(target)
                .map(|_| Probe::Tcp(target.to_string()))
                .map_err(|e| diags.error(&at, e))
                .ok();
        }
        // Any other scheme is a mistake, never a shell command by accident.
        Some(scheme) => {
            diags.error_hint(
                &at,
                format!(
                    "{} is a {scheme}:// URL: a probe is an http://, https:// or tcp:// URL, or a shell command",
                    syntax::quote(trimmed)
                ),
                Some("a command that must start like a URL can be written `exec <command>`".into()),
            );
            return None;
        }
    }
    Some(Probe::Command(text))
}

/// The scheme of text that starts like a URL (`scheme://`), lowercased.
fn url_scheme(text: &str) -> Option<String> {
    let (scheme, _) = text.split_once("://")?;
    let mut chars = scheme.chars();
    (chars.next()?.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then(|| scheme.to_ascii_lowercase())
}

fn service_terraform(
    diags: &mut Diagnostics,
    path: Path,
    value: &Value,
) -> Option<ServiceTerraform> {
    let infra = terraform_phase(diags, path.clone(), value, true)?;
    let config = match value.get("config").filter(|v| !v.is_null()) {
        Some(v) => terraform_phase(diags, path.key("config"), v, false).unwrap_or_default(),
        None => TerraformPhase::default(),
    };
    Some(ServiceTerraform { infra, config })
}

/// `{ modules; variables; targets; apply_order; }` (plus `config` at service level).
pub fn terraform_phase(
    diags: &mut Diagnostics,
    path: Path,
    value: &Value,
    allow_config: bool,
) -> Option<TerraformPhase> {
    let keys: &[&str] = if allow_config {
        &["modules", "variables", "targets", "apply_order", "config"]
    } else {
        &["modules", "variables", "targets", "apply_order"]
    };
    let obj = Obj::open(diags, path, value, keys)?;
    let phase = TerraformPhase {
        modules: obj.or(diags, "modules", Vec::new()),
        variables: obj.or(diags, "variables", BTreeMap::new()),
        targets: obj.or(diags, "targets", Vec::new()),
        apply_order: obj.or(diags, "apply_order", Vec::new()),
    };
    for (i, m) in phase.modules.iter().enumerate() {
        if m.trim().is_empty() {
            diags.error(&obj.at("modules").index(i), "empty module path");
        } else if let Err(e) = syntax::argument(m) {
            diags.error(&obj.at("modules").index(i), e);
        }
    }
    for name in phase.variables.keys() {
        let ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            diags.error(
                &obj.at("variables").key(name),
                format!(
                    "{} is not a valid Terraform variable name",
                    syntax::quote(name)
                ),
            );
        }
    }
    for (key, list) in [
        ("targets", &phase.targets),
        ("apply_order", &phase.apply_order),
    ] {
        for (i, t) in list.iter().enumerate() {
            if t.trim().is_empty() || t.chars().any(char::is_whitespace) {
                diags.error(
                    &obj.at(key).index(i),
                    format!("{} is not a Terraform resource address", syntax::quote(t)),
                );
            }
        }
    }
    if phase.modules.is_empty() && (!phase.apply_order.is_empty() || !phase.variables.is_empty()) {
        diags.warning(
            &obj.at("modules"),
            "variables or apply_order are given but no modules: nothing will be applied",
        );
    }
    Some(phase)
}

/// An OIDC client id: it becomes a Terraform map key and a URL parameter.
pub fn check_client_id(diags: &mut Diagnostics, path: &Path, client_id: &str) {
    if client_id.is_empty()
        || !client_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        diags.error(
            path,
            format!(
                "{} is not a valid client id: use letters, digits, '-', '_' and '.'",
                syntax::quote(client_id)
            ),
        );
    }
}
