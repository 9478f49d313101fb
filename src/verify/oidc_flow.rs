//! The spec's "OIDC callback success": the whole authorization-code flow of
//! one client, as the verification user (`verify.user`), through Caddy like a
//! browser — the authorization request, the login form, the consent form,
//! the redirect to the client's callback with a code (read from the
//! `Location` header, never followed to the application), then the code
//! exchanged at the token endpoint (client_secret_basic with the secret from
//! the `client_secrets` output for confidential clients; the PKCE verifier
//! for every client, the only proof a public client has) for an ID token
//! whose `iss`, `aud`, `nonce`, `exp` and configured claims (the client's
//! `username_claim` and `groups_claim`) are checked, and whose signature is
//! verified against the issuer's JWKS (`jwks_uri` of its discovery
//! document; RS256 or ES256, see [`super::jwt`]).
//!
//! Secrets — the password, the client secret, the code, the tokens — live in
//! this process's memory only (the session's cookies too, in the session's
//! own jar) and never appear in a reason: reasons
//! name the step that failed (authorization request, login, consent,
//! callback, token exchange, claim check) and what was seen there.

use super::http;
use crate::manifest::{ClientType, Oidc, VerifyUser};
use base64::Engine;
use regex::Regex;
use serde_json::Value;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

/// Where the flow runs and with what.
pub struct Flow<'a> {
    pub issuer: &'a str,
    pub authorization_endpoint: &'a str,
    pub token_endpoint: &'a str,
    /// The issuer's key set; without one the ID token cannot be trusted.
    pub jwks_uri: Option<&'a str>,
    pub client: &'a Oidc,
    /// The confidential client's secret.
    pub secret: Option<&'a str>,
    pub user: &'a VerifyUser,
    pub password: &'a str,
    pub pin: IpAddr,
    pub ca_file: Option<&'a str>,
    pub timeout: Duration,
}

impl<'a> Flow<'a> {
    /// A request of this flow: pinned to the proxy, with the CA bundle and the bound.
    fn request<'u>(&self, url: &'u str) -> http::Request<'u>
    where
        'a: 'u,
    {
        http::Request {
            url,
            pin: Some(self.pin),
            ca_file: self.ca_file,
            timeout: self.timeout,
        }
    }
}

/// At most this many requests between the authorization request and the callback.
const MAX_HOPS: usize = 12;

pub fn run(f: &Flow) -> Result<(), String> {
    let o = f.client;
    let redirect = o.redirect_uris.first().ok_or_else(|| {
        format!(
            "client {} has no redirect URI to complete a login with",
            o.client_id
        )
    })?;
    let secret = match (o.client_type, f.secret) {
        (ClientType::Confidential, Some(s)) if !s.is_empty() => Some(s),
        (ClientType::Confidential, _) => {
            return Err(format!(
                "no secret for the confidential client {}: no client_secrets output names it",
                o.client_id
            ))
        }
        (ClientType::Public, _) => None,
    };
    let verifier = b64url(&random(32)?);
    let challenge = b64url(&sha256(verifier.as_bytes()));
    let state = b64url(&random(16)?);
    let nonce = b64url(&random(16)?);
    let mut u = url::Url::parse(f.authorization_endpoint)
        .map_err(|e| format!("authorization_endpoint {}: {e}", f.authorization_endpoint))?;
    u.query_pairs_mut()
        .append_pair("client_id", &o.client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("response_type", "code")
        .append_pair("scope", &o.scopes.join(" "))
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");

    // The session's cookies, in memory, gone with the session.
    let session = http::Session::new();
    let code = browse(f, u, redirect, &state, &session)?;
    drop(session);

    let claims = redeem(
        &Endpoints {
            issuer: f.issuer,
            token_endpoint: f.token_endpoint,
            jwks_uri: f.jwks_uri,
            pin: f.pin,
            ca_file: f.ca_file,
            timeout: f.timeout,
        },
        &o.client_id,
        secret,
        &Redemption {
            code: &code,
            redirect,
            verifier: &verifier,
            nonce: &nonce,
        },
    )?;
    check_user(f, &claims).map_err(|e| format!("claim check: {e}"))
}

/// Where a code is redeemed and the ID token checked.
pub struct Endpoints<'a> {
    pub issuer: &'a str,
    pub token_endpoint: &'a str,
    pub jwks_uri: Option<&'a str>,
    pub pin: IpAddr,
    pub ca_file: Option<&'a str>,
    pub timeout: Duration,
}

/// What the authorization request sent, to redeem its code with.
pub struct Redemption<'a> {
    pub code: &'a str,
    pub redirect: &'a str,
    pub verifier: &'a str,
    pub nonce: &'a str,
}

/// The token exchange (client_secret_basic for a confidential client, the
/// PKCE verifier always) and the ID token's checks: `iss`, `aud`, `nonce`,
/// `exp` and its signature against the issuer's JWKS. Returns its claims.
/// The code, the secret and the tokens never leave this process but to
/// the token endpoint.
pub fn redeem(
    e: &Endpoints,
    client_id: &str,
    secret: Option<&str>,
    r: &Redemption,
) -> Result<Value, String> {
    let request = |url| http::Request {
        url,
        pin: Some(e.pin),
        ca_file: e.ca_file,
        timeout: e.timeout,
    };
    let mut body = url::form_urlencoded::Serializer::new(String::new());
    body.append_pair("grant_type", "authorization_code")
        .append_pair("code", r.code)
        .append_pair("redirect_uri", r.redirect)
        .append_pair("code_verifier", r.verifier);
    let authorization = match secret {
        Some(s) => {
            let enc =
                |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
            Some(format!(
                "Basic {}",
                b64(format!("{}:{}", enc(client_id), enc(s)).as_bytes())
            ))
        }
        None => {
            body.append_pair("client_id", client_id);
            None
        }
    };
    let body = body.finish();
    let resp = http::send(
        &request(e.token_endpoint),
        Some(&http::Form {
            body: &body,
            authorization: authorization.as_deref(),
        }),
    )
    .map_err(|err| format!("token exchange: {err}"))?;
    let doc: Value = serde_json::from_str(&resp.body).unwrap_or(Value::Null);
    if resp.status != 200 {
        return Err(format!(
            "token exchange: {} answered {}{}",
            e.token_endpoint,
            resp.status,
            oauth_error(&doc)
        ));
    }
    let id_token = doc["id_token"]
        .as_str()
        .ok_or("token exchange: the token response has no id_token")?;
    let claims = jwt_payload(id_token).map_err(|err| format!("claim check: {err}"))?;
    check_token(e.issuer, client_id, &claims, r.nonce)
        .map_err(|err| format!("claim check: {err}"))?;
    let jwks_uri = e
        .jwks_uri
        .ok_or("signature check: the discovery document has no jwks_uri")?;
    let jwks = http::get(&request(jwks_uri))
        .map_err(|err| format!("signature check: {jwks_uri}: {err}"))?;
    if jwks.status != 200 {
        return Err(format!(
            "signature check: {jwks_uri} answered {}",
            jwks.status
        ));
    }
    let jwks: Value = serde_json::from_str(&jwks.body)
        .map_err(|err| format!("signature check: {jwks_uri} is not JSON: {err}"))?;
    super::jwt::verify_signature(id_token, &jwks)
        .map_err(|err| format!("signature check: {err}"))?;
    Ok(claims)
}

/// `: error (description)` of an OAuth error answer, if it is one.
fn oauth_error(doc: &Value) -> String {
    match (doc["error"].as_str(), doc["error_description"].as_str()) {
        (Some(e), Some(d)) => format!(": {e} ({d})"),
        (Some(e), None) => format!(": {e}"),
        _ => String::new(),
    }
}

/// From the authorization request to the callback: follows redirects within
/// the issuer's host, fills the login and consent forms, and returns the
/// code from the redirect to `redirect`.
fn browse(
    f: &Flow,
    start: url::Url,
    redirect: &str,
    state: &str,
    session: &http::Session,
) -> Result<String, String> {
    let auth_host = start.host_str().unwrap_or_default().to_string();
    let mut step = "authorization request";
    let mut next = start;
    let mut form: Option<String> = None;
    let mut logins = 0;
    for _ in 0..MAX_HOPS {
        let shown = format!(
            "{}://{}{}",
            next.scheme(),
            next.host_str().unwrap_or_default(),
            next.path()
        );
        let url = next.to_string();
        let req = f.request(&url);
        let resp = session
            .send(
                &req,
                form.as_deref()
                    .map(|body| http::Form {
                        body,
                        authorization: None,
                    })
                    .as_ref(),
            )
            .map_err(|e| format!("{step}: {e}"))?;
        form = None;
        if (300..400).contains(&resp.status) {
            let location = resp.headers.get("location").ok_or_else(|| {
                format!(
                    "{step}: {shown} answered {} without a Location",
                    resp.status
                )
            })?;
            let to = next
                .join(location)
                .map_err(|e| format!("{step}: a Location that is not a URL: {e}"))?;
            if is_callback(&to, redirect) {
                return callback(f, &to, state);
            }
            if to.host_str() != Some(auth_host.as_str()) {
                return Err(format!(
                    "{step}: redirected to {}://{}{} instead of the callback {redirect}",
                    to.scheme(),
                    to.host_str().unwrap_or_default(),
                    to.path()
                ));
            }
            next = to;
            continue;
        }
        if step == "login" && matches!(resp.status, 401 | 403) {
            return Err(format!(
                "login: signing in as {} was refused: {shown} answered {}{}",
                f.user.username,
                resp.status,
                page_error(&resp.body)
            ));
        }
        if resp.status != 200 {
            return Err(format!(
                "{step}: {shown} answered {}{}",
                resp.status,
                page_error(&resp.body)
            ));
        }
        let page = parse_form(&resp.body).ok_or_else(|| {
            format!("{step}: {shown} answered 200 with no form to fill (neither a login nor a consent page)")
        })?;
        let action = next
            .join(&page.action)
            .map_err(|e| format!("{step}: a form action that is not a URL: {e}"))?;
        if action.host_str() != Some(auth_host.as_str()) {
            return Err(format!(
                "{step}: the form at {shown} posts to another host ({})",
                action.host_str().unwrap_or_default()
            ));
        }
        let mut body = url::form_urlencoded::Serializer::new(String::new());
        if page.fields.iter().any(|i| i.kind == "password") {
            logins += 1;
            if logins > 1 {
                return Err(format!(
                    "login: signing in as {} was refused: the login page came back",
                    f.user.username
                ));
            }
            step = "login";
            let mut named_user = false;
            for i in &page.fields {
                let value = if i.kind == "password" {
                    f.password
                } else if !named_user && is_user_field(i) {
                    named_user = true;
                    &f.user.username
                } else {
                    &i.value
                };
                body.append_pair(&i.name, value);
            }
            if !named_user {
                return Err(format!(
                    "login: the login form at {shown} has no username field"
                ));
            }
        } else {
            step = "consent";
            for i in &page.fields {
                body.append_pair(&i.name, &i.value);
            }
        }
        form = Some(body.finish());
        next = action;
    }
    Err(format!(
        "{step}: no redirect to the callback {redirect} after {MAX_HOPS} requests"
    ))
}

fn is_callback(to: &url::Url, redirect: &str) -> bool {
    let Ok(r) = url::Url::parse(redirect) else {
        return false;
    };
    to.scheme() == r.scheme()
        && to.host_str() == r.host_str()
        && to.port_or_known_default() == r.port_or_known_default()
        && to.path() == r.path()
}

/// The redirect to the callback: a code and our state, or an error.
fn callback(f: &Flow, to: &url::Url, state: &str) -> Result<String, String> {
    let q: std::collections::BTreeMap<String, String> = to.query_pairs().into_owned().collect();
    if let Some(e) = q.get("error") {
        return Err(format!(
            "callback: the provider redirected with error {e}{}",
            q.get("error_description")
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ));
    }
    if q.get("state").map(String::as_str) != Some(state) {
        return Err("callback: the redirect does not carry the request's state".into());
    }
    if let Some(iss) = q.get("iss") {
        if iss != f.issuer {
            return Err(format!(
                "callback: the redirect names issuer {iss}, expected {}",
                f.issuer
            ));
        }
    }
    match q.get("code") {
        Some(c) if !c.is_empty() => Ok(c.clone()),
        _ => Err(format!(
            "callback: the redirect to {}://{}{} carries no code",
            to.scheme(),
            to.host_str().unwrap_or_default(),
            to.path()
        )),
    }
}

/// What every ID token must say: who issued it, for whom, to which request, until when.
fn check_token(issuer: &str, client_id: &str, c: &Value, nonce: &str) -> Result<(), String> {
    if c["iss"] != issuer {
        return Err(format!("iss is {}, expected {issuer}", c["iss"]));
    }
    let aud_ok = match &c["aud"] {
        Value::String(a) => *a == client_id,
        Value::Array(a) => a.iter().any(|x| *x == client_id),
        _ => false,
    };
    if !aud_ok {
        return Err(format!("aud is {}, expected {client_id}", c["aud"]));
    }
    if c["nonce"] != nonce {
        return Err("the nonce is not the request's".into());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match c["exp"].as_u64() {
        Some(exp) if exp > now => {}
        Some(exp) => return Err(format!("the ID token expired ({exp}, now {now})")),
        None => return Err("the ID token has no exp".into()),
    }
    Ok(())
}

/// The verification user's own claims: its name and groups.
fn check_user(f: &Flow, c: &Value) -> Result<(), String> {
    let o = f.client;
    let claim = &o.username_claim;
    match &c[claim.as_str()] {
        Value::Null => {
            return Err(format!(
                "no {claim} claim in the ID token (claims: {})",
                claim_names(c)
            ))
        }
        v if *v == f.user.username.as_str() => {}
        v => return Err(format!("{claim} is {v}, expected {:?}", f.user.username)),
    }
    let claim = &o.groups_claim;
    if !f.user.groups.is_empty() {
        let groups: Vec<&str> = match &c[claim.as_str()] {
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            Value::String(s) => vec![s.as_str()],
            Value::Null => {
                return Err(format!(
                    "no {claim} claim in the ID token (claims: {})",
                    claim_names(c)
                ))
            }
            v => return Err(format!("{claim} is {v}, expected a list of groups")),
        };
        let missing: Vec<&str> = f
            .user
            .groups
            .iter()
            .map(String::as_str)
            .filter(|g| !groups.contains(g))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "{claim} is {groups:?}, missing {}",
                missing.join(", ")
            ));
        }
    }
    Ok(())
}

fn claim_names(c: &Value) -> String {
    c.as_object()
        .map(|m| m.keys().cloned().collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// The payload of a compact JWS, decoded (not verified).
pub fn jwt_payload(token: &str) -> Result<Value, String> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(format!(
            "the ID token is not a signed JWT ({} parts)",
            parts.len()
        ));
    }
    let header: Value = b64url_decode(parts[0])
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the ID token's header is not base64url JSON")?;
    if header["alg"] == "none" || header["alg"].is_null() {
        return Err(format!("the ID token is unsigned (alg {})", header["alg"]));
    }
    b64url_decode(parts[1])
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(Value::is_object)
        .ok_or_else(|| "the ID token's payload is not base64url JSON".into())
}

/// A short reason from an error page: an OAuth error, a page title or heading.
fn page_error(body: &str) -> String {
    let doc: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let e = oauth_error(&doc);
    if !e.is_empty() {
        return e;
    }
    static RE: OnceLock<Regex> = OnceLock::new();
    let re =
        RE.get_or_init(|| Regex::new(r"(?is)<(?:title|h1|p)[^>]*>([^<]{1,200})<").expect("regex"));
    re.captures_iter(body)
        .filter_map(|c| c.get(1).map(|m| m.as_str().trim().to_string()))
        .filter(|t| !t.is_empty())
        .last()
        .map(|t| format!(" ({})", unescape(&t)))
        .unwrap_or_default()
}

#[derive(Debug, PartialEq)]
pub struct Field {
    pub name: String,
    pub kind: String,
    pub value: String,
}

#[derive(Debug, PartialEq)]
pub struct PageForm {
    pub action: String,
    pub fields: Vec<Field>,
}

fn attrs(tag: &str) -> std::collections::BTreeMap<String, String> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r#"([A-Za-z_:][-A-Za-z0-9_:.]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))"#)
            .expect("regex")
    });
    re.captures_iter(tag)
        .map(|c| {
            let v = c
                .get(2)
                .or_else(|| c.get(3))
                .or_else(|| c.get(4))
                .map(|m| m.as_str())
                .unwrap_or_default();
            (c[1].to_ascii_lowercase(), unescape(v))
        })
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The first POST form of a page: its action and named inputs (a browser
/// submits the first submit button's name too).
pub fn parse_form(html: &str) -> Option<PageForm> {
    static FORM: OnceLock<Regex> = OnceLock::new();
    static INPUT: OnceLock<Regex> = OnceLock::new();
    let form = FORM.get_or_init(|| Regex::new(r"(?is)<form\b([^>]*)>(.*?)</form>").expect("regex"));
    let input = INPUT.get_or_init(|| Regex::new(r"(?is)<(input|button)\b([^>]*)>").expect("regex"));
    for c in form.captures_iter(html) {
        let fa = attrs(&c[1]);
        if fa.get("method").map(|m| m.to_ascii_lowercase()) != Some("post".into()) {
            continue;
        }
        let mut fields = Vec::new();
        let mut submitted = false;
        for i in input.captures_iter(&c[2]) {
            let a = attrs(&i[2]);
            let Some(name) = a.get("name").filter(|n| !n.is_empty()) else {
                continue;
            };
            let button = i[1].eq_ignore_ascii_case("button");
            let kind = a
                .get("type")
                .map(|t| t.to_ascii_lowercase())
                .unwrap_or_else(|| {
                    if button {
                        "submit".into()
                    } else {
                        "text".into()
                    }
                });
            if kind == "submit" || kind == "image" {
                if submitted {
                    continue;
                }
                submitted = true;
            }
            if matches!(kind.as_str(), "checkbox" | "radio") && !a.contains_key("checked") {
                continue;
            }
            fields.push(Field {
                name: name.clone(),
                kind,
                value: a.get("value").cloned().unwrap_or_default(),
            });
        }
        return Some(PageForm {
            action: fa.get("action").cloned().unwrap_or_default(),
            fields,
        });
    }
    None
}

fn is_user_field(i: &Field) -> bool {
    let n = i.name.to_ascii_lowercase();
    matches!(i.kind.as_str(), "text" | "email")
        && ["user", "login", "uid", "email", "name"]
            .iter()
            .any(|k| n.contains(k))
}

pub fn random(n: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(b)
}

/// Standard base64 with padding (HTTP Basic credentials).
pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Base64url without padding (PKCE, JWT).
pub fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// Decodes base64url, with or without padding; `None` on anything else.
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

/// SHA-256, for the PKCE S256 challenge.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_of_rfc7636() {
        // RFC 7636, appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            b64url(&sha256(verifier.as_bytes())),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(
            b64url(&sha256(b"")),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
        // Two blocks.
        let long = [b'a'; 100];
        assert_eq!(
            sha256(&long)[..4],
            [0x28, 0x16, 0x59, 0x78],
            "sha256 of 100 'a'"
        );
    }

    #[test]
    fn base64_both_ways() {
        assert_eq!(b64(b"wiki-oidc:s3cret"), "d2lraS1vaWRjOnMzY3JldA==");
        assert_eq!(b64(b"ab"), "YWI=");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(b64url_decode("-_8").expect("decode"), [0xfb, 0xff]);
        assert_eq!(b64url_decode("eyJhIjoxfQ").expect("decode"), br#"{"a":1}"#);
        assert_eq!(b64url_decode("a b"), None);
    }

    #[test]
    fn jwt_payload_is_decoded_and_unsigned_tokens_refused() {
        let h = b64url(br#"{"alg":"RS256","kid":"k"}"#);
        let p = b64url(br#"{"iss":"https://auth/x/","aud":"wiki-oidc"}"#);
        let v = jwt_payload(&format!("{h}.{p}.sig")).expect("payload");
        assert_eq!(v["aud"], "wiki-oidc");
        let none = b64url(br#"{"alg":"none"}"#);
        assert!(jwt_payload(&format!("{none}.{p}."))
            .expect_err("unsigned")
            .contains("unsigned"));
        assert!(jwt_payload("abc").is_err());
    }

    #[test]
    fn forms_are_read_like_a_browser() {
        let html = r#"<!doctype html><form method="get" action="/search"><input name="q"></form>
<form autocomplete="off" action="/application/o/wiki/interaction/U1/login?a=1&amp;b=2" METHOD="post">
  <input type="hidden" name="prompt" value="login"/>
  <input required type="text" name="username" placeholder="Username">
  <input type="password" name="password">
  <input type="checkbox" name="remember">
  <button type="submit" name="go" value="1">Sign in</button>
  <button type="submit" name="other" value="2">No</button>
</form>"#;
        let f = parse_form(html).expect("form");
        assert_eq!(f.action, "/application/o/wiki/interaction/U1/login?a=1&b=2");
        let names: Vec<(&str, &str, &str)> = f
            .fields
            .iter()
            .map(|i| (i.name.as_str(), i.kind.as_str(), i.value.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("prompt", "hidden", "login"),
                ("username", "text", ""),
                ("password", "password", ""),
                ("go", "submit", "1")
            ]
        );
        assert!(is_user_field(&f.fields[1]));
        assert!(!is_user_field(&f.fields[0]));
        assert_eq!(parse_form("<p>nothing</p>"), None);
        assert_eq!(
            page_error("<title>Sign-in</title><p>Invalid username or password</p>"),
            " (Invalid username or password)"
        );
        assert_eq!(
            page_error(
                r#"{"error":"invalid_grant","error_description":"grant request is invalid"}"#
            ),
            ": invalid_grant (grant request is invalid)"
        );
    }

    #[test]
    fn callbacks_are_matched_without_their_query() {
        let to = url::Url::parse("https://jot.lab.test/callback?code=c&state=s").expect("url");
        assert!(is_callback(&to, "https://jot.lab.test/callback"));
        assert!(!is_callback(&to, "https://jot.lab.test/other"));
        assert!(!is_callback(&to, "https://evil.test/callback"));
    }
}
