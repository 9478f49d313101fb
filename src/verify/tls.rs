//! TLS of a proxy domain: the chain validates against the CA bundle, the
//! certificate is for that name, and the chain still validates `min_days`
//! from now (a certificate, or its CA, expiring within the window fails).
//! The handshake happens inside the process (rustls, ring), bounded by the
//! timeout; the CA bundles read are kept for the process's lifetime, per
//! file version.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// Where Debian, Ubuntu, Arch and NixOS (and `SSL_CERT_FILE`) keep the
/// system's CA bundle, used when no bundle is named.
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

type Roots = Arc<Vec<CertificateDer<'static>>>;
/// A file's version: its path, size and modification time.
type Version = (String, u64, Option<SystemTime>);

/// The certificates of `ca_file`, or of the system's bundle when there is
/// none. Read once per file version (path, size, modification time).
pub fn roots(ca_file: Option<&str>) -> Result<Roots, String> {
    let path = match ca_file {
        Some(p) => p.to_string(),
        None => std::env::var("SSL_CERT_FILE")
            .ok()
            .filter(|p| std::path::Path::new(p).is_file())
            .or_else(|| {
                SYSTEM_BUNDLES
                    .iter()
                    .find(|p| std::path::Path::new(p).is_file())
                    .map(|p| p.to_string())
            })
            .ok_or(
                "no CA bundle: name one (verify.ca_file or NIXMOX_CA_FILE) or install ca-certificates",
            )?,
    };
    let meta =
        std::fs::metadata(&path).map_err(|e| format!("cannot read the CA bundle {path}: {e}"))?;
    let version = (path.clone(), meta.len(), meta.modified().ok());
    static READ: OnceLock<Mutex<HashMap<Version, Roots>>> = OnceLock::new();
    let mut read = READ
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(r) = read.get(&version) {
        return Ok(r.clone());
    }
    let certs = CertificateDer::pem_file_iter(&path)
        .map_err(|e| format!("cannot read the CA bundle {path}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the CA bundle {path} is not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!("the CA bundle {path} holds no certificate"));
    }
    let r = Arc::new(certs);
    read.insert(version, r.clone());
    Ok(r)
}

/// rustls on ring, which nixmox already links for its ID-token checks
/// (rustls's other provider, aws-lc-rs, needs a C and assembler build).
/// ring has no post-quantum key exchange, hence rustls's deprecation note;
/// these are checks of the stack's own proxy, not a long-lived secret channel.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Verifies as usual, then once more as of `ahead` from now: a chain that
/// will have expired by then fails with [`EXPIRES_SOON`].
#[derive(Debug)]
struct Window {
    inner: Arc<WebPkiServerVerifier>,
    ahead: Duration,
}

const EXPIRES_SOON: &str = "nixmox: expires within the window";

impl ServerCertVerifier for Window {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        let later = UnixTime::since_unix_epoch(Duration::from_secs(
            now.as_secs().saturating_add(self.ahead.as_secs()),
        ));
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, later)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            )) => Err(rustls::Error::General(EXPIRES_SOON.into())),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A handshake failure in words a user can act on.
pub fn describe(e: &rustls::Error) -> String {
    use CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "certificate name mismatch: the certificate served is for another name".into()
            }
            C::UnknownIssuer => {
                "certificate verify failed: it does not chain to a CA of the bundle".into()
            }
            C::Expired | C::ExpiredContext { .. } => {
                "certificate verify failed: the certificate has expired".into()
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "certificate verify failed: the certificate is not valid yet".into()
            }
            C::BadSignature => "certificate verify failed: a bad signature in the chain".into(),
            other => format!("certificate verify failed: {other:?}"),
        },
        rustls::Error::AlertReceived(a) => format!("the server refused the handshake ({a:?})"),
        rustls::Error::General(s) if s == EXPIRES_SOON => "the certificate expires soon".into(),
        other => format!("the TLS handshake failed: {other}"),
    }
}

/// Passes when the certificate served for `domain` at `ip`, port 443,
/// verifies and its chain lasts at least `min_days` more.
pub fn check(
    ip: IpAddr,
    domain: &str,
    ca_file: &str,
    min_days: u64,
    limit: Duration,
) -> Result<(), String> {
    check_at(SocketAddr::new(ip, 443), domain, ca_file, min_days, limit)
}

/// [`check`] at any address.
pub fn check_at(
    addr: SocketAddr,
    domain: &str,
    ca_file: &str,
    min_days: u64,
    limit: Duration,
) -> Result<(), String> {
    let at = format!("{domain} at {addr}");
    let roots = roots(Some(ca_file))?;
    let provider = provider();
    let mut store = rustls::RootCertStore::empty();
    let (_, ignored) = store.add_parsable_certificates(roots.iter().cloned());
    if store.is_empty() {
        return Err(format!(
            "{at}: the CA bundle {ca_file} holds no usable CA ({ignored} certificates ignored)"
        ));
    }
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .map_err(|e| format!("{at}: {e}"))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("{at}: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Window {
            inner,
            ahead: Duration::from_secs(min_days.saturating_mul(86_400)),
        }))
        .with_no_client_auth();
    let name = ServerName::try_from(domain.to_string())
        .map_err(|_| format!("{domain} is not a name a certificate can be for"))?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| format!("{at}: {e}"))?;
    let mut sock = TcpStream::connect_timeout(&addr, limit)
        .map_err(|e| format!("{at}: cannot connect: {e}"))?;
    sock.set_read_timeout(Some(limit))
        .and_then(|()| sock.set_write_timeout(Some(limit)))
        .map_err(|e| format!("{at}: {e}"))?;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            let tls = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
            return Err(match tls {
                Some(rustls::Error::General(s)) if s == EXPIRES_SOON => {
                    format!("{domain}: the certificate expires within {min_days} days")
                }
                Some(t) => format!("{at}: {}", describe(t)),
                None if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
                {
                    format!("{at}: no TLS handshake within {} s", limit.as_secs())
                }
                None => format!("{at}: the TLS handshake failed: {e}"),
            });
        }
    }
    // Close politely; whether the close arrives does not matter.
    conn.send_close_notify();
    let _ = conn.write_tls(&mut sock);
    Ok(())
}
