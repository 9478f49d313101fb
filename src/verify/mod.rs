//! End-to-end verification (phase 4d and `nixmox verify`), per service, from
//! its manifest interfaces: names resolve through the stack's DNS, TLS
//! validates, the proxy routes (with its headers, and forward auth sending
//! strangers to the SSO domain), OIDC clients accept their redirect URIs and
//! reject others, and databases accept their owners. Every check is bounded
//! and says what it saw.
//!
//! Where `verify.user` is configured, each OIDC client's whole
//! authorization-code flow runs too ([`oidc_flow`]).

pub mod dns;
pub mod http;
pub mod jwt;
pub mod oidc_flow;
pub mod tls;

use crate::manifest::{Auth, Manifest, Service};
use serde::Serialize;
use std::net::IpAddr;
use std::time::Duration;

/// Where verification gets what it cannot find in the manifest.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The CA bundle proxy certificates must chain to (`verify.ca_file`, `NIXMOX_CA_FILE`).
    pub ca_file: Option<String>,
    pub tls_min_days: u64,
    /// Database passwords by role, from outputs or the environment.
    pub db_passwords: std::collections::BTreeMap<String, String>,
    pub timeout: Duration,
    /// Confidential clients' secrets by client id, from a `client_secrets` output.
    pub client_secrets: std::collections::BTreeMap<String, Secret>,
    /// The verification user (`verify.user`) and where its password came from.
    pub user: Option<crate::manifest::VerifyUser>,
    pub password: Option<Secret>,
    /// Why there is no password, when there is none (never the password).
    pub password_missing: String,
}

/// A secret held in memory: its `Debug` never shows it.
#[derive(Clone, Default, PartialEq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub service: String,
    pub check: &'static str,
    pub target: String,
    pub ok: bool,
    /// Not run, for a reason given in `reason`: `ok` is false, yet it does
    /// not fail the run; it is counted apart from passed and failed checks.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl Check {
    /// Ran and did not pass (a check not run is neither passed nor failed).
    pub fn failed(&self) -> bool {
        !self.ok && !self.skipped
    }
}

/// A verify step's verdict on its checks: what passed (and what was not
/// run) when none failed, else what failed.
pub fn verdict(checks: &[Check]) -> Result<String, String> {
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c.failed())
        .map(|c| format!("{} {}: {}", c.check, c.target, c.reason))
        .collect();
    if !failed.is_empty() {
        return Err(format!("verify failed: {}", failed.join("; ")));
    }
    let passed = checks.iter().filter(|c| c.ok).count();
    let mut detail = format!("health and {passed} end-to-end check(s) passed");
    if let Some(first) = checks.iter().find(|c| c.skipped) {
        let skipped = checks.iter().filter(|c| c.skipped).count();
        detail.push_str(&format!(
            ", {skipped} not run ({} {}: {})",
            first.check, first.target, first.reason
        ));
    }
    Ok(detail)
}

fn result(service: &str, check: &'static str, target: String, r: Result<(), String>) -> Check {
    match r {
        Ok(()) => Check {
            service: service.into(),
            check,
            target,
            ok: true,
            skipped: false,
            reason: String::new(),
        },
        Err(reason) => Check {
            service: service.into(),
            check,
            target,
            ok: false,
            skipped: false,
            reason,
        },
    }
}

pub fn caddy(m: &Manifest) -> Option<IpAddr> {
    m.service("caddy").and_then(|c| c.host.ip)
}

/// The domain in front of the identity provider: authentik's proxy.
pub fn auth_domain(m: &Manifest) -> Option<String> {
    m.service("authentik")
        .and_then(|a| a.proxies.first())
        .map(|p| p.domain.clone())
}

fn expect_ip(m: &Manifest, name: &str, want: IpAddr, t: Duration) -> Result<(), String> {
    let server = m
        .network
        .dns_server
        .ok_or("no dns_server in the manifest")?;
    let got = dns::resolve(server, name, t).map_err(|e| format!("{name} at {server}: {e}"))?;
    if got.iter().any(|ip| IpAddr::V4(*ip) == want) {
        Ok(())
    } else if got.is_empty() {
        Err(format!("{name} has no A record at {server}"))
    } else {
        Err(format!(
            "{name} resolves to {} at {server}, expected {want}",
            got.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Every check of one service.
pub fn service(m: &Manifest, s: &Service, ctx: &Context) -> Vec<Check> {
    let t = ctx.timeout;
    let mut out = Vec::new();
    // Names are checked through the manifest's own DNS server, when it names one.
    let dns = m.network.dns_server.is_some();
    if let (Some(h), Some(ip), true) = (&s.host.hostname, s.host.ip, dns) {
        out.push(result(
            &s.name,
            "dns",
            format!("{h} -> {ip}"),
            expect_ip(m, h, ip, t),
        ));
    }
    let proxy_ip = caddy(m);
    for p in &s.proxies {
        let Some(cip) = proxy_ip else { break };
        if dns {
            out.push(result(
                &s.name,
                "dns",
                format!("{} -> {cip}", p.domain),
                expect_ip(m, &p.domain, cip, t),
            ));
        }
        match &ctx.ca_file {
            Some(ca) => out.push(result(
                &s.name,
                "tls",
                p.domain.clone(),
                tls::check(cip, &p.domain, ca, ctx.tls_min_days, t),
            )),
            None => out.push(result(
                &s.name,
                "tls",
                p.domain.clone(),
                Err("no CA bundle to verify against: set verify.ca_file or NIXMOX_CA_FILE".into()),
            )),
        }
        let url = format!("https://{}{}", p.domain, p.path);
        let req = http::Request {
            url: &url,
            pin: Some(cip),
            ca_file: ctx.ca_file.as_deref(),
            timeout: t,
        };
        let forward = matches!(p.auth, Some(Auth::ForwardAuth { .. }));
        let r = http::get(&req).and_then(|resp| {
            if forward {
                let to = resp.headers.get("location").cloned().unwrap_or_default();
                let sso = auth_domain(m).unwrap_or_default();
                return if (300..400).contains(&resp.status) && !sso.is_empty() && to.contains(&sso) {
                    Ok(())
                } else {
                    Err(format!("an unauthenticated request got {} (location {to:?}), expected a redirect to {sso}", resp.status))
                };
            }
            if resp.status >= 500 {
                return Err(format!("{url} answered {}: the upstream {} is not reached", resp.status, p.upstream));
            }
            for name in p.headers.keys() {
                if !resp.headers.contains_key(&name.to_ascii_lowercase()) {
                    return Err(format!("{url}: header {name} is missing"));
                }
            }
            Ok(())
        });
        out.push(result(
            &s.name,
            if forward { "forward-auth" } else { "proxy" },
            url.clone(),
            r,
        ));
    }
    for o in s.oidc_clients() {
        out.extend(oidc(m, s, o, ctx));
    }
    for db in &s.databases {
        for name in std::iter::once(&db.name).chain(&db.additional) {
            let host = db
                .host
                .clone()
                .or_else(|| {
                    m.service("postgresql")
                        .and_then(|p| p.host.ip.map(|i| i.to_string()))
                })
                .unwrap_or_default();
            let target = format!("{}@{host}:{}/{name}", db.owner, db.port);
            out.push(result(
                &s.name,
                "database",
                target,
                database(
                    &host,
                    db.port,
                    name,
                    &db.owner,
                    ctx.db_passwords.get(&db.owner),
                    t,
                ),
            ));
        }
    }
    out
}

fn database(
    host: &str,
    port: u16,
    db: &str,
    user: &str,
    password: Option<&String>,
    t: Duration,
) -> Result<(), String> {
    let mut config = postgres::Config::new();
    config
        .host(host)
        .port(port)
        .dbname(db)
        .user(user)
        .connect_timeout(t)
        .application_name("nixmox-verify");
    if let Some(p) = password {
        config.password(p);
    }
    let mut client = config.connect(postgres::NoTls).map_err(|e| {
        // Never the password, only what went wrong.
        let msg = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_else(|| e.to_string());
        format!("cannot log in as {user}: {msg}")
    })?;
    let row = client
        .query_one("SELECT 1", &[])
        .map_err(|e| format!("SELECT 1 failed: {e}"))?;
    if row.get::<_, i32>(0) == 1 {
        Ok(())
    } else {
        Err("SELECT 1 did not return 1".into())
    }
}

/// PKCE for the authorization requests (public clients must send it).
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn oidc(m: &Manifest, s: &Service, o: &crate::manifest::Oidc, ctx: &Context) -> Vec<Check> {
    let t = ctx.timeout;
    let mut out = Vec::new();
    let (Some(domain), Some(cip)) = (auth_domain(m), caddy(m)) else {
        out.push(result(
            &s.name,
            "oidc",
            o.client_id.clone(),
            Err("no proxy domain in front of authentik to reach the issuer".into()),
        ));
        return out;
    };
    let issuer = format!("https://{domain}/application/o/{}/", s.name);
    let discovery_url = format!("{issuer}.well-known/openid-configuration");
    let req = http::Request {
        url: &discovery_url,
        pin: Some(cip),
        ca_file: ctx.ca_file.as_deref(),
        timeout: t,
    };
    let doc = http::get(&req).and_then(|r| {
        if r.status != 200 {
            return Err(format!("{discovery_url} answered {}", r.status));
        }
        let v: serde_json::Value = serde_json::from_str(&r.body)
            .map_err(|e| format!("the discovery document is not JSON: {e}"))?;
        if v["issuer"] != issuer.as_str() {
            return Err(format!(
                "the discovery document names issuer {}, expected {issuer}",
                v["issuer"]
            ));
        }
        let authorization = v["authorization_endpoint"]
            .as_str()
            .map(str::to_string)
            .ok_or("the discovery document has no authorization_endpoint")?;
        Ok((
            authorization,
            v["token_endpoint"].as_str().map(str::to_string),
            v["jwks_uri"].as_str().map(str::to_string),
        ))
    });
    let (endpoint, token_endpoint, jwks_uri) = match doc {
        Ok(e) => {
            out.push(result(&s.name, "oidc-discovery", issuer.clone(), Ok(())));
            e
        }
        Err(e) => {
            out.push(result(&s.name, "oidc-discovery", issuer, Err(e)));
            return out;
        }
    };
    let authorize = |redirect: &str| -> Result<http::Response, String> {
        let mut u = url::Url::parse(&endpoint)
            .map_err(|e| format!("authorization_endpoint {endpoint}: {e}"))?;
        u.query_pairs_mut()
            .append_pair("client_id", &o.client_id)
            .append_pair("redirect_uri", redirect)
            .append_pair("response_type", "code")
            .append_pair("scope", &o.scopes.join(" "))
            .append_pair("state", "nixmox-verify")
            .append_pair("nonce", "nixmox-verify")
            .append_pair("code_challenge", CHALLENGE)
            .append_pair("code_challenge_method", "S256");
        let url = u.to_string();
        http::get(&http::Request {
            url: &url,
            pin: Some(cip),
            ca_file: ctx.ca_file.as_deref(),
            timeout: t,
        })
    };
    for uri in &o.redirect_uris {
        let r = authorize(uri).and_then(|resp| {
            let location = resp.headers.get("location").cloned().unwrap_or_default();
            if (300..400).contains(&resp.status) && !location.contains("error=") {
                Ok(())
            } else {
                Err(format!(
                    "client {} with redirect URI {uri}: answered {} {location}",
                    o.client_id, resp.status
                ))
            }
        });
        out.push(result(
            &s.name,
            "oidc-redirect",
            format!("{} {uri}", o.client_id),
            r,
        ));
    }
    let foreign = "https://attacker.invalid/callback";
    let r = authorize(foreign).and_then(|resp| {
        if resp.status == 400 || resp.body.contains("invalid_redirect_uri") {
            Ok(())
        } else {
            Err(format!(
                "client {} accepted the foreign redirect URI {foreign} (answered {})",
                o.client_id, resp.status
            ))
        }
    });
    out.push(result(
        &s.name,
        "oidc-foreign-redirect",
        format!("{} {foreign}", o.client_id),
        r,
    ));
    if let Some(user) = &ctx.user {
        let target = format!("{} as {}", o.client_id, user.username);
        let Some(password) = &ctx.password else {
            out.push(Check {
                service: s.name.clone(),
                check: "oidc-login",
                target,
                ok: false,
                skipped: true,
                reason: format!(
                    "not run: no password for the verification user: {}",
                    ctx.password_missing
                ),
            });
            return out;
        };
        let r = match &token_endpoint {
            None => Err("the discovery document has no token_endpoint".to_string()),
            Some(token_endpoint) => oidc_flow::run(&oidc_flow::Flow {
                issuer: &issuer,
                authorization_endpoint: &endpoint,
                token_endpoint,
                jwks_uri: jwks_uri.as_deref(),
                client: o,
                secret: ctx.client_secrets.get(&o.client_id).map(|s| s.0.as_str()),
                user,
                password: &password.0,
                pin: cip,
                ca_file: ctx.ca_file.as_deref(),
                timeout: t,
            }),
        };
        out.push(result(&s.name, "oidc-login", target, r));
    }
    out
}

impl Context {
    /// From the manifest, the environment (`NIXMOX_CA_FILE`,
    /// `NIXMOX_DB_PASSWORD_<ROLE>`, `verify.user.password_env`) and the
    /// Terraform outputs (any output named `db_passwords`: an object of role
    /// → password; `client_secrets`: client id → secret; the one named
    /// `verify.user.password_output`).
    pub fn new(
        m: &Manifest,
        outputs: &std::collections::BTreeMap<String, crate::terraform::Outputs>,
    ) -> Context {
        let mut db_passwords = std::collections::BTreeMap::new();
        let mut client_secrets = std::collections::BTreeMap::new();
        let user = m.verify.user.clone();
        let (mut password, mut password_missing) = match &user {
            Some(u) => password_of(m, u),
            None => (None, String::new()),
        };
        for o in outputs.values() {
            if let Some(serde_json::Value::Object(map)) =
                o.0.get("client_secrets").map(|x| &x.value)
            {
                for (id, secret) in map {
                    if let Some(secret) = secret.as_str().filter(|s| !s.is_empty()) {
                        client_secrets.insert(id.clone(), Secret(secret.to_string()));
                    }
                }
            }
            if password.is_none() {
                let named = user.as_ref().and_then(|u| u.password_output.as_deref());
                if let Some(pw) = named
                    .and_then(|n| o.0.get(n))
                    .and_then(|x| x.value.as_str())
                    .filter(|p| !p.is_empty())
                {
                    password = Some(Secret(pw.to_string()));
                    password_missing.clear();
                }
            }
            if let Some(serde_json::Value::Object(map)) = o.0.get("db_passwords").map(|x| &x.value)
            {
                for (role, pw) in map {
                    if let Some(pw) = pw.as_str() {
                        db_passwords.insert(role.clone(), pw.to_string());
                    }
                }
            }
        }
        for (_, db) in m.databases() {
            // The manifest's SOPS reference, unless the environment says otherwise (below).
            if let Some(pw) = db
                .password
                .as_ref()
                .and_then(|r| crate::secrets::sops::resolve(m, r).ok())
            {
                db_passwords.insert(db.owner.clone(), pw.text());
            }
            let var = format!(
                "NIXMOX_DB_PASSWORD_{}",
                db.owner
                    .to_ascii_uppercase()
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            );
            if let Ok(pw) = std::env::var(&var) {
                db_passwords.insert(db.owner.clone(), pw);
            }
        }
        Context {
            ca_file: std::env::var("NIXMOX_CA_FILE")
                .ok()
                .filter(|v| !v.is_empty())
                .or_else(|| m.verify.ca_file.clone()),
            tls_min_days: m.verify.tls_min_days,
            db_passwords,
            timeout: Duration::from_secs(10),
            client_secrets,
            user,
            password,
            password_missing,
        }
    }
}

/// The most a password file may hold.
const PASSWORD_FILE_LIMIT: u64 = 4096;

/// The verification user's password from `password_env`, else
/// `password_file`; else why there is none (so far: `password_output` is
/// looked up among the outputs afterwards).
fn password_of(m: &Manifest, u: &crate::manifest::VerifyUser) -> (Option<Secret>, String) {
    if let Some(pw) = std::env::var(&u.password_env)
        .ok()
        .filter(|p| !p.is_empty())
    {
        return (Some(Secret(pw)), String::new());
    }
    let mut why = vec![format!("{} is not set", u.password_env)];
    if let Some(r) = &u.password_sops {
        match crate::secrets::sops::resolve(m, r) {
            Ok(s) if !s.text().is_empty() => return (Some(Secret(s.text())), String::new()),
            Ok(_) => why.push(format!("verify.user.password ({r}) is empty")),
            Err(e) => why.push(format!("verify.user.password ({r}): {e}")),
        }
    }
    if let Some(file) = &u.password_file {
        let path = m.dir().join(file);
        match crate::files::read_regular(&path, PASSWORD_FILE_LIMIT, "verify.user.password_file") {
            Ok(bytes) => {
                // The first line, as password files are written (`echo pw > file`).
                let text = String::from_utf8_lossy(&bytes);
                let pw = text
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches('\r');
                if !pw.is_empty() {
                    return (Some(Secret(pw.to_string())), String::new());
                }
                why.push(format!(
                    "verify.user.password_file {} is empty",
                    path.display()
                ));
            }
            Err(e) => why.push(e),
        }
    }
    if let Some(o) = &u.password_output {
        why.push(format!(
            "no Terraform output {o} yet (apply the stack first)"
        ));
    }
    (None, why.join("; "))
}

/// Services checked at once by [`all`]. The checks run inside nixmox, but
/// each costs the service's proxy, identity provider and application CPU
/// (TLS handshakes, a login flow): in the lab, 8 or 16 at once finished 23
/// services no sooner than 4.
pub const SERVICES_AT_ONCE: usize = 4;

/// Every service's checks, [`SERVICES_AT_ONCE`] services side by side; the
/// result in the order of `services`, whatever order they finished in.
pub fn all(m: &Manifest, services: &[String], ctx: &Context) -> Vec<Check> {
    let chosen: Vec<&Service> = services.iter().filter_map(|n| m.service(n)).collect();
    crate::bounded::map(&chosen, SERVICES_AT_ONCE, |s| service(m, s, ctx))
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ok: bool, skipped: bool, reason: &str) -> Check {
        Check {
            service: "wiki".into(),
            check: if skipped { "oidc-login" } else { "dns" },
            target: "t".into(),
            ok,
            skipped,
            reason: reason.into(),
        }
    }

    #[test]
    fn a_check_not_run_is_neither_passed_nor_failed() {
        let skipped = check(false, true, "not run: no password");
        assert!(!skipped.failed() && !skipped.ok);
        let passed = [check(true, false, ""), check(true, false, "")];
        assert_eq!(
            verdict(&passed),
            Ok("health and 2 end-to-end check(s) passed".into())
        );
        let some_not_run = [check(true, false, ""), skipped.clone()];
        assert_eq!(
            verdict(&some_not_run),
            Ok("health and 1 end-to-end check(s) passed, 1 not run (oidc-login t: not run: no password)".into())
        );
        let failing = [check(false, false, "no A record"), skipped];
        assert_eq!(
            verdict(&failing),
            Err("verify failed: dns t: no A record".into())
        );
    }
}
