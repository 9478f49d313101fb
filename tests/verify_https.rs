//! verify's in-process HTTPS and TLS checks against a real TLS server on
//! loopback (rustls, with certificates made by OpenSSL's command line): the
//! pin, the CA bundle, the name, the expiry window, redirects not followed,
//! a session's cookies kept to itself, form posts, kept-alive connections,
//! and no secret in any error.

use nixmox::verify::{http, tls};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
const T: Duration = Duration::from_secs(10);

fn openssl(dir: &Path, args: &str) {
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("cd {} && openssl {args}", dir.display()))
        .output()
        .expect("openssl (run scripts/setup.sh)");
    assert!(
        o.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A CA and a certificate for `name` it signed, lasting `days`.
fn certificates(dir: &Path, name: &str, days: u32) -> (PathBuf, PathBuf, PathBuf) {
    openssl(
        dir,
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
         -subj /CN=test-ca -keyout ca.key -out ca.crt 2>/dev/null",
    );
    openssl(
        dir,
        &format!(
            "req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN={name} \
             -keyout key.pem -out c.csr 2>/dev/null && \
             printf 'subjectAltName=DNS:{name}\\n' > ext && \
             openssl x509 -req -in c.csr -CA ca.crt -CAkey ca.key -set_serial 9 -days {days} \
             -extfile ext -out cert.pem 2>/dev/null"
        ),
    );
    (
        dir.join("ca.crt"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

/// What the server saw: connections accepted and request bodies received.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    bodies: std::sync::Mutex<Vec<String>>,
}

/// A keep-alive HTTPS server on loopback: `/set` sets a cookie and
/// redirects, `/cookie` echoes the Cookie header, a POST echoes its
/// Authorization header and body, anything else answers 200 "ok".
fn serve(cert: &Path, key: &Path) -> (u16, Arc<Seen>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = vec![CertificateDer::from_pem_file(cert).expect("cert")];
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config"),
    );
    let listener = TcpListener::bind((LOOPBACK, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            s.connections.fetch_add(1, Ordering::SeqCst);
            let (config, s) = (config.clone(), s.clone());
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).expect("conn");
                let tls = rustls::StreamOwned::new(conn, stream);
                let _ = answer_all(tls, &s);
            });
        }
    });
    (port, seen)
}

fn answer_all(
    tls: rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>,
    seen: &Seen,
) -> std::io::Result<()> {
    let mut r = BufReader::new(tls);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let (method, path) = {
            let mut w = line.split_whitespace();
            (
                w.next().unwrap_or_default().to_string(),
                w.next().unwrap_or_default().to_string(),
            )
        };
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h)?;
            if h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |k: &str| {
            headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let mut body = vec![0; header("content-length").parse().unwrap_or(0)];
        r.read_exact(&mut body)?;
        let body = String::from_utf8_lossy(&body).into_owned();
        if !body.is_empty() {
            seen.bodies.lock().expect("lock").push(body.clone());
        }
        let (status, extra, text) = match (method.as_str(), path.as_str()) {
            ("GET", "/set") => (
                "302 Found",
                "Set-Cookie: sid=s3ss10n; Path=/; Secure; HttpOnly\r\nLocation: /cookie\r\n",
                String::new(),
            ),
            ("GET", "/cookie") => ("200 OK", "", format!("cookie=[{}]", header("cookie"))),
            ("POST", _) => (
                "200 OK",
                "",
                format!("auth=[{}] body=[{body}]", header("authorization")),
            ),
            _ => ("200 OK", "X-Lab: nixmox\r\n", "ok".to_string()),
        };
        let out = r.get_mut();
        write!(
            out,
            "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\n\r\n{text}",
            text.len()
        )?;
        out.flush()?;
    }
}

struct Server {
    _dir: tempfile::TempDir,
    ca: String,
    port: u16,
    seen: Arc<Seen>,
}

fn server(name: &str, days: u32) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = certificates(dir.path(), name, days);
    let (port, seen) = serve(&cert, &key);
    Server {
        ca: ca.display().to_string(),
        _dir: dir,
        port,
        seen,
    }
}

fn request<'a>(url: &'a str, ca: &'a str) -> http::Request<'a> {
    http::Request {
        url,
        pin: Some(LOOPBACK),
        ca_file: Some(ca),
        timeout: T,
    }
}

#[test]
fn pinned_requests_keep_their_connection_and_do_not_follow_redirects() {
    let s = server("docs.verify.test", 5);
    // The name does not resolve anywhere: only the pin reaches the server.
    let url = format!("https://docs.verify.test:{}/set", s.port);
    let r = http::get(&request(&url, &s.ca)).expect("get");
    assert_eq!(r.status, 302);
    assert_eq!(r.headers["location"], "/cookie");
    let page = format!("https://docs.verify.test:{}/page", s.port);
    for _ in 0..5 {
        let r = http::get(&request(&page, &s.ca)).expect("get");
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
        assert_eq!(r.headers["x-lab"], "nixmox");
    }
    assert_eq!(
        s.seen.connections.load(Ordering::SeqCst),
        1,
        "six requests over one kept-alive connection"
    );
    // Without a session there is no cookie jar.
    let c = format!("https://docs.verify.test:{}/cookie", s.port);
    assert_eq!(
        http::get(&request(&c, &s.ca)).expect("get").body,
        "cookie=[]"
    );
}

#[test]
fn a_session_keeps_its_cookies_to_itself_and_posts_forms() {
    let s = server("auth.verify.test", 5);
    let set = format!("https://auth.verify.test:{}/set", s.port);
    let cookie = format!("https://auth.verify.test:{}/cookie", s.port);
    let (one, two) = (http::Session::new(), http::Session::new());
    assert_eq!(
        one.send(&request(&set, &s.ca), None).expect("set").status,
        302
    );
    let got = one.send(&request(&cookie, &s.ca), None).expect("cookie");
    assert_eq!(got.body, "cookie=[sid=s3ss10n]");
    let other = two.send(&request(&cookie, &s.ca), None).expect("cookie");
    assert_eq!(other.body, "cookie=[]", "another session sees no cookie");
    let form = http::Form {
        body: "grant_type=authorization_code&code=c0de",
        authorization: Some("Basic d2lraTpzM2NyZXQ="),
    };
    let token = format!("https://auth.verify.test:{}/token", s.port);
    let r = http::send(&request(&token, &s.ca), Some(&form)).expect("post");
    assert_eq!(
        r.body,
        "auth=[Basic d2lraTpzM2NyZXQ=] body=[grant_type=authorization_code&code=c0de]"
    );
}

#[test]
fn certificate_problems_are_named_and_secrets_are_not() {
    let s = server("docs.verify.test", 5);
    let elsewhere = server("docs.verify.test", 5);
    // Another name than the certificate's.
    let url = format!("https://board.verify.test:{}/", s.port);
    let e = http::get(&request(&url, &s.ca)).expect_err("a wrong name passed");
    assert!(
        e.contains("mismatch") && e.contains("board.verify.test"),
        "{e}"
    );
    // A CA that did not sign it; a form with a secret is not sent.
    let url = format!("https://docs.verify.test:{}/token?state=st4te", s.port);
    let form = http::Form {
        body: "code=sup3rs3cr3t",
        authorization: Some("Basic c2VjcmV0LWhlYWRlcg=="),
    };
    let e = http::send(&request(&url, &elsewhere.ca), Some(&form)).expect_err("wrong CA passed");
    assert!(e.contains("verify failed"), "{e}");
    for secret in ["sup3rs3cr3t", "c2VjcmV0LWhlYWRlcg", "st4te"] {
        assert!(!e.contains(secret), "{e}");
    }
    assert!(s.seen.bodies.lock().expect("lock").is_empty());
    // Nothing listening: the URL (without its query) and what happened.
    let closed = TcpListener::bind((LOOPBACK, 0)).expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let url = format!("https://docs.verify.test:{port}/?state=st4te");
    let e = http::get(&request(&url, &s.ca)).expect_err("a closed port answered");
    assert!(
        e.starts_with(&format!("https://docs.verify.test:{port}/:")),
        "{e}"
    );
    assert!(!e.contains("st4te"), "{e}");
    // A CA bundle that is not one.
    let bad = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(bad.path(), "not a certificate\n").expect("write");
    let bad = bad.path().display().to_string();
    let e = http::get(&request(&url, &bad)).expect_err("a bad bundle");
    assert!(e.contains(&bad) && e.contains("no certificate"), "{e}");
}

#[test]
fn the_tls_check_names_the_name_the_issuer_and_the_expiry_window() {
    let s = server("docs.verify.test", 2);
    let other = server("docs.verify.test", 2);
    let at = SocketAddr::new(LOOPBACK, s.port);
    assert_eq!(tls::check_at(at, "docs.verify.test", &s.ca, 1, T), Ok(()));
    let e = tls::check_at(at, "docs.verify.test", &s.ca, 3, T).expect_err("expires in 2 days");
    assert_eq!(e, "docs.verify.test: the certificate expires within 3 days");
    let e = tls::check_at(at, "board.verify.test", &s.ca, 1, T).expect_err("wrong name");
    assert!(
        e.contains("board.verify.test") && e.contains("mismatch"),
        "{e}"
    );
    let e = tls::check_at(at, "docs.verify.test", &other.ca, 1, T).expect_err("wrong CA");
    assert!(
        e.contains("verify failed") && e.contains(&at.to_string()),
        "{e}"
    );
}

#[test]
fn a_rotated_ca_bundle_is_read_again() {
    let s = server("docs.verify.test", 5);
    let other = server("docs.verify.test", 5);
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().join("ca.crt");
    let bundle_text = bundle.display().to_string();
    std::fs::copy(&other.ca, &bundle).expect("copy");
    let url = format!("https://docs.verify.test:{}/page", s.port);
    let e = http::get(&request(&url, &bundle_text)).expect_err("another CA passed");
    assert!(e.contains("verify failed"), "{e}");
    // The bundle now names the server's CA (another version of the file).
    std::thread::sleep(Duration::from_millis(20));
    std::fs::copy(&s.ca, &bundle).expect("copy");
    let r = http::get(&request(&url, &bundle_text)).expect("the new CA");
    assert_eq!(r.status, 200);
}
