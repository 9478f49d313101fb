//! TLS of a proxy domain: the chain validates against the CA bundle, the
//! certificate is for that name, and it does not expire within the window.
//! openssl does the handshake; every call is bounded by `timeout`.

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

pub fn s_client_argv(ip: IpAddr, domain: &str, ca_file: &str) -> Vec<String> {
    let connect = match ip {
        IpAddr::V6(v6) => format!("[{v6}]:443"),
        IpAddr::V4(v4) => format!("{v4}:443"),
    };
    [
        "s_client",
        "-connect",
        &connect,
        "-servername",
        domain,
        "-verify_hostname",
        domain,
        "-CAfile",
        ca_file,
        "-verify_return_error",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn openssl(
    args: &[String],
    stdin: &[u8],
    limit: Duration,
) -> Result<crate::process::Finished, String> {
    let mut cmd = Command::new("openssl");
    cmd.args(args);
    crate::process::run_tool(cmd, Some(stdin), limit, "openssl", "install openssl")
}

/// Passes when the certificate served for `domain` at `ip` verifies and
/// lasts at least `min_days` more.
pub fn check(
    ip: IpAddr,
    domain: &str,
    ca_file: &str,
    min_days: u64,
    limit: Duration,
) -> Result<(), String> {
    let hello = openssl(&s_client_argv(ip, domain, ca_file), b"", limit)
        .map_err(|e| format!("{domain} at {ip}:443: {e}"))?;
    let (text, err) = (hello.stdout, hello.stderr);
    if hello.code != Some(0) {
        let reason = err
            .lines()
            .chain(text.lines())
            .find(|l| {
                l.contains("verify error")
                    || l.contains("Verify return code")
                    || l.contains("errno")
                    || l.contains("error")
            })
            .unwrap_or("the handshake failed")
            .trim()
            .to_string();
        return Err(format!("{domain} at {ip}:443: {reason}"));
    }
    let pem: String = {
        let start = text
            .find("-----BEGIN CERTIFICATE-----")
            .ok_or_else(|| format!("{domain}: no certificate was presented"))?;
        let end = text[start..]
            .find("-----END CERTIFICATE-----")
            .map(|e| start + e + 25)
            .ok_or("a truncated certificate")?;
        text[start..end].to_string()
    };
    let secs = min_days * 86_400;
    let check = openssl(
        &[
            "x509".into(),
            "-noout".into(),
            "-checkend".into(),
            secs.to_string(),
        ],
        pem.as_bytes(),
        limit,
    )?;
    if check.code != Some(0) {
        return Err(format!(
            "{domain}: the certificate expires within {min_days} days"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_s_client_argv() {
        assert_eq!(
            s_client_argv(
                "10.213.0.4".parse().expect("ip"),
                "docs.lab.test",
                "/lab/ca.crt"
            ),
            [
                "s_client",
                "-connect",
                "10.213.0.4:443",
                "-servername",
                "docs.lab.test",
                "-verify_hostname",
                "docs.lab.test",
                "-CAfile",
                "/lab/ca.crt",
                "-verify_return_error"
            ]
        );
    }
}
