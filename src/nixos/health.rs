//! Health probes and gates: a command on the host over SSH (exit 0), an
//! `http(s)://` URL (2xx; fetched by nixmox, or on the host when it names
//! localhost), a TCP connect. Every wait is bounded.

use super::ssh::{self, SshTarget};
use crate::manifest::{Health, Probe};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// One attempt of one probe; the error says what was seen.
pub fn check(probe: &Probe, t: &SshTarget, limit: Duration) -> Result<(), String> {
    match probe {
        Probe::Command(cmd) => {
            let out = ssh::run(t, cmd, None, limit).map_err(|e| e.to_string())?;
            if out.ok() {
                Ok(())
            } else {
                let err = out.stderr.trim();
                Err(format!(
                    "`{cmd}` exited {}{}",
                    out.code
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "on a signal".into()),
                    if err.is_empty() {
                        String::new()
                    } else {
                        format!(": {err}")
                    }
                ))
            }
        }
        Probe::Tcp(target) => tcp(target, limit),
        Probe::Url(url) => http(url, t, limit),
    }
}

/// The command that runs `probe` on the host itself, when it is that kind:
/// a command, or a URL naming localhost (fetched by curl on the host).
pub fn host_command(probe: &Probe, limit: Duration) -> Option<String> {
    match probe {
        Probe::Command(cmd) => Some(cmd.clone()),
        Probe::Url(url) => {
            let parsed = url::Url::parse(url).ok()?;
            let host = parsed.host_str().unwrap_or_default();
            (host == "localhost" || host == "127.0.0.1" || host == "[::1]" || host == "::1").then(
                || {
                    format!(
                        "curl -fsS -o /dev/null --max-time {} -- {}",
                        limit.as_secs().max(1),
                        super::remote::quote(url)
                    )
                },
            )
        }
        Probe::Tcp(_) => None,
    }
}

/// The default gate's probe for one declared port of the host.
pub fn port_probe(t: &SshTarget, port: u16) -> Probe {
    Probe::Tcp(match t.address {
        std::net::IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        std::net::IpAddr::V4(v4) => format!("{v4}:{port}"),
    })
}

fn tcp(target: &str, limit: Duration) -> Result<(), String> {
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .map_err(|e| format!("{target}: {e}"))?
        .collect();
    let addr = addrs
        .first()
        .ok_or_else(|| format!("{target}: no address"))?;
    TcpStream::connect_timeout(addr, limit)
        .map(|_| ())
        .map_err(|e| format!("tcp://{target}: {e}"))
}

fn http(url: &str, t: &SshTarget, limit: Duration) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    let host = parsed.host_str().unwrap_or_default();
    let secs = limit.as_secs().max(1);
    let on_host = host_command(&Probe::Url(url.to_string()), limit);
    if on_host.is_some() || parsed.scheme() == "https" {
        // localhost means the service's host; HTTPS needs a TLS client: curl does both.
        let out = if let Some(cmd) = on_host {
            ssh::run(t, &cmd, None, limit + Duration::from_secs(2)).map_err(|e| e.to_string())?
        } else {
            let mut cmd = std::process::Command::new("curl");
            cmd.args([
                "-fsS",
                "-o",
                "/dev/null",
                "--max-time",
                &secs.to_string(),
                "--",
                url,
            ]);
            let o = crate::process::run_tool(
                cmd,
                None,
                limit + Duration::from_secs(2),
                "curl",
                "install curl",
            )
            .map_err(|e| format!("{url}: {e}"))?;
            ssh::RemoteOutput {
                code: o.code,
                stdout: String::new(),
                stderr: o.stderr,
            }
        };
        return if out.ok() {
            Ok(())
        } else {
            Err(format!("{url}: {}", out.stderr.trim()))
        };
    }
    let port = parsed.port_or_known_default().unwrap_or(80);
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, limit).map_err(|e| format!("{url}: {e}"))?;
    let _ = stream.set_read_timeout(Some(limit));
    let _ = stream.set_write_timeout(Some(limit));
    let path = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_string(),
    };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: nixmox\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("{url}: {e}"))?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).map_err(|e| format!("{url}: {e}"))?;
    let line = String::from_utf8_lossy(&head[..n]);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if (200..300).contains(&code) {
        Ok(())
    } else {
        Err(format!(
            "{url} answered {}",
            if code == 0 {
                "nothing readable".to_string()
            } else {
                code.to_string()
            }
        ))
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "host {host}: {gate} check {probe} failed after {attempts} attempt(s) in {seconds} s: {last}"
)]
pub struct GateError {
    pub host: String,
    pub gate: &'static str,
    pub probe: String,
    pub attempts: u32,
    pub seconds: u64,
    pub last: String,
}

/// Waits for `probe` to pass: at most `retries` attempts `interval` apart, and never past `timeout`.
pub fn wait(gate: &'static str, probe: &Probe, h: &Health, t: &SshTarget) -> Result<(), GateError> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(h.timeout.max(1));
    let attempts_max = h.retries.max(1);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(200));
        let per_try = left.min(Duration::from_secs(30));
        match check(probe, t, per_try) {
            Ok(()) => return Ok(()),
            Err(last) => {
                let pause = pause(attempts, h.interval);
                let next = Instant::now() + pause;
                if attempts >= attempts_max || next >= deadline {
                    return Err(GateError {
                        host: format!("{} ({})", t.name, t.address),
                        gate,
                        probe: describe(probe),
                        attempts,
                        seconds: start.elapsed().as_secs(),
                        last,
                    });
                }
                std::thread::sleep(pause);
            }
        }
    }
}

/// The pause after failed attempt `n` (from 1): a quarter second, doubling,
/// never more than `interval` seconds. A daemon that is a moment from
/// ready is seen at once; one that takes long is asked every `interval`.
fn pause(n: u32, interval: u64) -> Duration {
    let quick = Duration::from_millis(250).saturating_mul(1 << n.saturating_sub(1).min(16));
    quick.min(Duration::from_secs(interval))
}

pub fn describe(probe: &Probe) -> String {
    match probe {
        Probe::Command(c) => format!("`{c}`"),
        Probe::Url(u) => u.clone(),
        Probe::Tcp(t) => format!("tcp://{t}"),
    }
}

/// The gate after a deploy: startup, then readiness (Kubernetes' order).
/// Without probes: the host answers over SSH and its declared ports accept connections.
pub fn gate(h: &Health, ports: &[u16], t: &SshTarget) -> Result<(), GateError> {
    let mut any = false;
    for (name, probe) in [("startup", &h.startup), ("readiness", &h.readiness)] {
        if let Some(p) = probe {
            any = true;
            wait(name, p, h, t)?;
        }
    }
    if !any {
        wait("default", &Probe::Command("true".into()), h, t)?;
        for port in ports {
            wait("default", &port_probe(t, *port), h, t)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::pause;
    use std::time::Duration;

    #[test]
    fn pauses_start_short_and_stop_at_the_interval() {
        let ms = |n| pause(n, 2).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(4), ms(40)],
            [250, 500, 1000, 2000, 2000]
        );
        assert_eq!(pause(1, 0), Duration::ZERO);
    }
}
