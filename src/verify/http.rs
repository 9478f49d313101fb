//! HTTPS requests through the stack's proxy, by curl: it verifies the chain
//! against the lab's or the user's CA bundle and the name, and is pinned to
//! the proxy's address (`--resolve`) so the check does not depend on the
//! machine's resolver. Every request is bounded by `--max-time`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

pub struct Request<'a> {
    pub url: &'a str,
    /// Connect here instead of resolving the URL's host.
    pub pin: Option<IpAddr>,
    pub ca_file: Option<&'a str>,
    pub timeout: Duration,
    pub cookie: Option<&'a str>,
}

/// The curl argument vector: headers to stdout, body to a temp file is not
/// needed (the bodies checked are small), redirects never followed.
pub fn argv(r: &Request) -> Vec<String> {
    argv_with(r, None, false)
}

/// What a request of a browser-like session adds: a cookie jar curl reads
/// and writes, and a curl config on stdin (`--config -`) carrying whatever
/// must not appear on a command line other users can read with `ps`: a
/// form body with a password, a code or a client secret, an Authorization
/// header.
pub fn argv_with(r: &Request, jar: Option<&Path>, stdin_config: bool) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "-sS".into(),
        "-i".into(),
        "--max-time".into(),
        r.timeout.as_secs().max(1).to_string(),
    ];
    if let Some(ca) = r.ca_file {
        a.push("--cacert".into());
        a.push(ca.into());
    }
    if let (Some(ip), Ok(u)) = (r.pin, url::Url::parse(r.url)) {
        if let Some(host) = u.host_str() {
            let port = u.port_or_known_default().unwrap_or(443);
            let ip = match ip {
                IpAddr::V6(v6) => format!("[{v6}]"),
                IpAddr::V4(v4) => v4.to_string(),
            };
            a.push("--resolve".into());
            a.push(format!("{host}:{port}:{ip}"));
        }
    }
    if let Some(c) = r.cookie {
        a.push("--cookie".into());
        a.push(c.into());
    }
    if let Some(jar) = jar {
        a.push("--cookie".into());
        a.push(jar.display().to_string());
        a.push("--cookie-jar".into());
        a.push(jar.display().to_string());
    }
    if stdin_config {
        a.push("--config".into());
        a.push("-".into());
    }
    a.push("--".into());
    a.push(r.url.into());
    a
}

pub fn get(r: &Request) -> Result<Response, String> {
    let out = Command::new("curl")
        .args(argv(r))
        .output()
        .map_err(|e| format!("cannot run curl (install curl): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}",
            r.url,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| format!("{}: an answer that is not HTTP", r.url))
}

/// A form POST: the url-encoded body and an optional Authorization header
/// value, both handed to curl on stdin, never on its command line.
pub struct Form<'a> {
    pub body: &'a str,
    pub authorization: Option<&'a str>,
}

/// The curl config (`--config -`) for a form: `data-raw` makes it a POST
/// with `application/x-www-form-urlencoded`.
pub fn form_config(f: &Form) -> String {
    let q = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
    let mut c = format!("data-raw = \"{}\"\n", q(f.body));
    if let Some(a) = f.authorization {
        c.push_str(&format!("header = \"Authorization: {}\"\n", q(a)));
    }
    c
}

/// A GET (no form) or a form POST, with an optional cookie jar. Errors name
/// the URL without its query (it may carry state the caller keeps private).
pub fn send(r: &Request, jar: Option<&Path>, form: Option<&Form>) -> Result<Response, String> {
    let mut cmd = Command::new("curl");
    cmd.args(argv_with(r, jar, form.is_some()));
    let config = form.map(form_config);
    let shown = r.url.split('?').next().unwrap_or_default();
    // curl bounds itself with --max-time; the bound here is for a curl that does not.
    let out = crate::process::run_tool(
        cmd,
        config.as_deref().map(str::as_bytes),
        r.timeout + Duration::from_secs(5),
        "curl",
        "install curl",
    )
    .map_err(|e| format!("{shown}: {e}"))?;
    if out.code != Some(0) {
        return Err(format!("{shown}: {}", out.stderr.trim()));
    }
    parse(&out.stdout).ok_or_else(|| format!("{shown}: an answer that is not HTTP"))
}

/// Splits curl's `-i` output into status, headers and body.
pub fn parse(text: &str) -> Option<Response> {
    let (head, body) = text
        .split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Response {
        status,
        headers,
        body: body.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_curl_argv_and_parsing() {
        let r = Request {
            url: "https://docs.lab.test/a?b=c",
            pin: Some("10.213.0.4".parse().expect("ip")),
            ca_file: Some("/lab/ca.crt"),
            timeout: Duration::from_secs(5),
            cookie: None,
        };
        assert_eq!(
            argv(&r),
            [
                "-sS",
                "-i",
                "--max-time",
                "5",
                "--cacert",
                "/lab/ca.crt",
                "--resolve",
                "docs.lab.test:443:10.213.0.4",
                "--",
                "https://docs.lab.test/a?b=c"
            ]
        );
        let resp =
            parse("HTTP/2 302\r\nLocation: https://auth.lab.test/x\r\nX-Lab: nixmox\r\n\r\nbody")
                .expect("parse");
        assert_eq!(resp.status, 302);
        assert_eq!(resp.headers["location"], "https://auth.lab.test/x");
        assert_eq!(resp.body, "body");
    }

    #[test]
    fn session_argv_keeps_secrets_off_the_command_line() {
        let r = Request {
            url: "https://auth.lab.test/application/o/wiki/token",
            pin: Some("10.213.0.4".parse().expect("ip")),
            ca_file: Some("/lab/ca.crt"),
            timeout: Duration::from_secs(10),
            cookie: None,
        };
        let jar = Path::new("/tmp/nixmox-jar");
        assert_eq!(
            argv_with(&r, Some(jar), true),
            [
                "-sS",
                "-i",
                "--max-time",
                "10",
                "--cacert",
                "/lab/ca.crt",
                "--resolve",
                "auth.lab.test:443:10.213.0.4",
                "--cookie",
                "/tmp/nixmox-jar",
                "--cookie-jar",
                "/tmp/nixmox-jar",
                "--config",
                "-",
                "--",
                "https://auth.lab.test/application/o/wiki/token"
            ]
        );
        assert_eq!(
            form_config(&Form {
                body: "grant_type=authorization_code&code=s3cr%22t",
                authorization: Some("Basic d2lraTpzM2Ny\\ZXQ\"="),
            }),
            "data-raw = \"grant_type=authorization_code&code=s3cr%22t\"\n\
             header = \"Authorization: Basic d2lraTpzM2Ny\\\\ZXQ\\\"=\"\n"
        );
    }
}
