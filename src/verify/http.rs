//! HTTPS requests through the stack's proxy, inside the process: the chain
//! verified against the lab's or the user's CA bundle and the name, every
//! request pinned to the proxy's address (so a check does not depend on the
//! machine's resolver, nor on a proxy from the environment) and bounded by
//! its timeout. Connections are kept alive and shared by every check of a
//! run that goes to the same address with the same CA bundle: a verify of
//! forty services opens a handful of TLS connections, not hundreds of
//! processes. Redirects are never followed; the caller reads them.

use rustls::pki_types::CertificateDer;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};
use ureq::Agent;

/// The most of a body a check reads: discovery documents, key sets, login
/// pages and token answers are a few KiB.
const BODY_LIMIT: u64 = 1 << 20;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased; of a repeated header, the last.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

pub struct Request<'a> {
    pub url: &'a str,
    /// Connect here instead of resolving the URL's host.
    pub pin: Option<IpAddr>,
    pub ca_file: Option<&'a str>,
    pub timeout: Duration,
}

/// A form POST: the url-encoded body and an optional Authorization header
/// value. Both stay in this process (no command line, no file).
pub struct Form<'a> {
    pub body: &'a str,
    pub authorization: Option<&'a str>,
}

/// Resolves every name to one address: `curl --resolve` for all the
/// agent's requests (each agent serves one pin).
#[derive(Debug)]
struct Pinned(IpAddr);

impl Resolver for Pinned {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("http") {
                80
            } else {
                443
            });
        let mut addrs = self.empty();
        addrs.push(SocketAddr::new(self.0, port));
        Ok(addrs)
    }
}

/// A new agent for `pin` trusting `roots`: no cookies, redirects returned.
fn agent(pin: Option<IpAddr>, roots: &[CertificateDer<'static>]) -> Agent {
    let roots: Vec<ureq::tls::Certificate<'static>> = roots
        .iter()
        .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .user_agent("nixmox-verify")
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
                .build(),
        )
        .build();
    match pin {
        Some(ip) => Agent::with_parts(config, DefaultConnector::new(), Pinned(ip)),
        None => Agent::new_with_config(config),
    }
}

/// A pin and the CA certificates as read (a new version of the bundle file
/// is a new read, hence a new agent: `serve` sees a rotated CA).
type Key = (Option<IpAddr>, usize);

/// The process's shared agents: one per pin and CA bundle, so checks of one
/// run (and of serve's lifetime) reuse their connections.
fn shared(pin: Option<IpAddr>, ca_file: Option<&str>) -> Result<Agent, String> {
    static AGENTS: OnceLock<Mutex<HashMap<Key, Agent>>> = OnceLock::new();
    let roots = super::tls::roots(ca_file)?;
    let key = (pin, Arc::as_ptr(&roots) as usize);
    let mut agents = AGENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    Ok(agents
        .entry(key)
        .or_insert_with(|| agent(pin, &roots))
        .clone())
}

/// A browser-like session: its own cookie jar, in memory, gone with it.
/// Its requests share the process's connections; the cookies are its own.
#[derive(Default)]
pub struct Session {
    jar: Mutex<cookie_store::CookieStore>,
}

impl Session {
    pub fn new() -> Session {
        Session::default()
    }

    /// A GET, or a form POST, with the session's cookies; the cookies the
    /// answer sets are kept for the next request.
    pub fn send(&self, r: &Request, form: Option<&Form>) -> Result<Response, String> {
        let agent = shared(r.pin, r.ca_file).map_err(|e| format!("{}: {e}", shown(r.url)))?;
        let url = url::Url::parse(r.url).map_err(|e| format!("{}: {e}", shown(r.url)))?;
        let mut jar = self.jar.lock().unwrap_or_else(|p| p.into_inner());
        let cookie: Vec<String> = jar
            .get_request_values(&url)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        exchange(&agent, r, form, Some((&cookie.join("; "), &mut jar, &url)))
    }
}

pub fn get(r: &Request) -> Result<Response, String> {
    send(r, None)
}

/// A GET (no form) or a form POST, without cookies. Errors name the URL
/// without its query (it may carry state the caller keeps private).
pub fn send(r: &Request, form: Option<&Form>) -> Result<Response, String> {
    let agent = shared(r.pin, r.ca_file).map_err(|e| format!("{}: {e}", shown(r.url)))?;
    exchange(&agent, r, form, None)
}

/// The URL without its query.
fn shown(url: &str) -> &str {
    url.split('?').next().unwrap_or_default()
}

/// A session's part in an exchange: the Cookie header to send, and the jar
/// (and the request's URL) the answer's cookies go to.
type Cookies<'a> = (&'a str, &'a mut cookie_store::CookieStore, &'a url::Url);

fn exchange(
    agent: &Agent,
    r: &Request,
    form: Option<&Form>,
    cookies: Option<Cookies>,
) -> Result<Response, String> {
    let url = shown(r.url);
    let limit = Some(r.timeout.max(Duration::from_secs(1)));
    let cookie = cookies.as_ref().map(|c| c.0).filter(|c| !c.is_empty());
    let answer = match form {
        None => {
            let mut req = agent.get(r.url).config().timeout_global(limit).build();
            if let Some(c) = cookie {
                req = req.header("Cookie", c);
            }
            req.call()
        }
        Some(f) => {
            let mut req = agent
                .post(r.url)
                .config()
                .timeout_global(limit)
                .build()
                .header("Content-Type", "application/x-www-form-urlencoded");
            if let Some(c) = cookie {
                req = req.header("Cookie", c);
            }
            if let Some(a) = f.authorization {
                req = req.header("Authorization", a);
            }
            req.send(f.body)
        }
    };
    let mut resp = answer.map_err(|e| format!("{url}: {}", reason(&e)))?;
    if let Some((_, jar, at)) = cookies {
        for set in resp.headers().get_all("set-cookie") {
            if let Ok(set) = set.to_str() {
                // A cookie the jar refuses (another domain, say) is not kept.
                let _ = jar.parse(set, at);
            }
        }
    }
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    resp.body_mut()
        .as_reader()
        .take(BODY_LIMIT)
        .read_to_end(&mut body)
        .map_err(|e| format!("{url}: reading the answer: {e}"))?;
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// What went wrong, in words: a certificate problem as the TLS check names
/// it, else ureq's own description.
fn reason(e: &ureq::Error) -> String {
    let tls = match e {
        ureq::Error::Rustls(t) => Some(t),
        ureq::Error::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    match (tls, e) {
        (Some(t), _) => super::tls::describe(t),
        (None, ureq::Error::Timeout(_)) => format!("no answer in time ({e})"),
        // ureq's own words would repeat the URL, query and all.
        (None, ureq::Error::BadUri(_)) => "not a URL this client can request".into(),
        (None, ureq::Error::Io(io)) => io.to_string(),
        (None, _) => e.to_string(),
    }
}
