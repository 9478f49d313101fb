//! One look at a host, in one SSH round trip: which system it runs, the hash
//! of the environment it was given, and whether its probes pass right now.
//! It is what a re-run asks of every host, so it asks everything at once:
//! each round trip to a host costs a session on its sshd, and a run that
//! changes nothing is mostly made of such questions.

use super::health;
use super::remote::{self, quote};
use super::ssh::{self, SshTarget};
use crate::manifest::{Health, Probe};
use std::time::Duration;

/// Where a deploy leaves the hash of the environment file it wrote.
pub const ENV_HASH_FILE: &str = "/run/nixmox/env.hash";

/// Separates the parts of the answer; no store path or hash contains it.
const MARK: &str = "--nixmox-glance--";

/// What one look saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glance {
    /// The running system's store path; empty on a fresh host.
    pub current: String,
    /// The environment hash beside `/run/nixmox/env`; empty when there is none.
    pub env_hash: String,
    /// Every probe (startup, readiness, liveness, or the default gate) passed, once.
    pub healthy: bool,
    /// Guards still waiting for a decision (a run killed before it confirmed).
    pub pending: Vec<String>,
    /// The host's records of rolling itself back, not reported yet.
    pub records: Vec<super::guard::Record>,
}

impl Glance {
    /// Nothing about the host needs nixmox's attention but, perhaps, its system.
    pub fn settled(&self) -> bool {
        self.pending.is_empty() && self.records.is_empty()
    }
}

/// The probes a look runs, in order: the gate's (startup and readiness, or
/// none and the default gate) and liveness.
fn probes(h: &Health) -> Vec<&Probe> {
    [&h.startup, &h.readiness, &h.liveness]
        .into_iter()
        .flatten()
        .collect()
}

/// The remote script: current system, env hash, the guards' state (those
/// waiting for a decision, records of rollbacks not reported yet), then
/// `ok`/`fail` for each command run on the host, each bounded by `timeout`
/// when the host has it.
pub fn script(commands: &[String], limit_secs: u64) -> String {
    let mut s = format!(
        "{}; echo {MARK}; cat {} 2>/dev/null; echo; echo {MARK}; {}; echo {MARK}",
        remote::current_system(),
        quote(ENV_HASH_FILE),
        guards_script(),
    );
    for c in commands {
        s.push_str(&format!(
            "; if timeout {limit_secs} \"${{SHELL:-sh}}\" -c {} >/dev/null 2>&1 </dev/null; \
             then echo ok; else echo fail; fi",
            quote(c)
        ));
    }
    s
}

/// Lists the guards waiting for a decision and the unreported records.
fn guards_script() -> String {
    format!(
        "for d in {run}/guard-*; do if [ -d \"$d\" ] && [ ! -d \"$d/decided\" ]; then echo \"pending ${{d##*/}}\"; fi; done; \
         for f in {rec}/guard-*; do case $f in *.reported|*.tmp) ;; *) if [ -f \"$f\" ]; then echo \"record ${{f##*/}} $(tr '\\n' ' ' < \"$f\")\"; fi ;; esac; done",
        run = remote::RUN_DIR,
        rec = super::guard::RECORDS,
    )
}

/// Reads the script's answer; `None` when it is not one.
pub fn parse(stdout: &str, commands: usize) -> Option<Glance> {
    let sep = format!("{MARK}\n");
    let mut parts = stdout.split(sep.as_str());
    let current = parts.next()?.trim().to_string();
    let env_hash = parts.next()?.trim().to_string();
    let mut pending = Vec::new();
    let mut records = Vec::new();
    for line in parts.next()?.lines() {
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("pending"), Some(id), None) => pending.push(id.to_string()),
            (Some("record"), Some(id), Some(rest)) => {
                let text = rest.split(' ').collect::<Vec<_>>().join("\n");
                records.extend(super::guard::Record::parse(id, &text));
            }
            _ => {}
        }
    }
    let verdicts: Vec<&str> = parts.next()?.lines().map(str::trim).collect();
    if verdicts.len() != commands || verdicts.iter().any(|v| *v != "ok" && *v != "fail") {
        return None;
    }
    // The running system goes into later command lines: a store path or nothing.
    if !current.is_empty() && super::build::store_path(&current).is_err() {
        return None;
    }
    Some(Glance {
        current,
        env_hash,
        healthy: verdicts.iter().all(|v| *v == "ok"),
        pending,
        records,
    })
}

/// Looks at a host once. The probes that run on the host go into the one
/// round trip; TCP and remote URL probes are tried from here.
pub fn glance(t: &SshTarget, h: &Health, ports: &[u16]) -> Result<Glance, String> {
    let limit = Duration::from_secs(h.timeout.clamp(1, 10));
    let all = probes(h);
    let commands: Vec<String> = all
        .iter()
        .filter_map(|p| health::host_command(p, limit))
        .collect();
    let out = ssh::run(
        t,
        &script(&commands, limit.as_secs()),
        None,
        limit + Duration::from_secs(10),
    )
    .map_err(|e| e.to_string())?;
    if !out.ok() {
        return Err(format!(
            "looking at host {} ({}) failed: {}",
            t.name,
            t.address,
            out.stderr.trim()
        ));
    }
    let mut seen = parse(&out.stdout, commands.len()).ok_or_else(|| {
        format!(
            "host {} ({}) gave an answer nixmox cannot read",
            t.name, t.address
        )
    })?;
    let mut healthy = seen.healthy;
    for p in all
        .iter()
        .filter(|p| health::host_command(p, limit).is_none())
    {
        healthy &= health::check(p, t, limit).is_ok();
    }
    // Without startup and readiness probes the gate is SSH (answered) and the ports.
    if h.startup.is_none() && h.readiness.is_none() {
        for port in ports {
            healthy &= health::check(&health::port_probe(t, *port), t, limit).is_ok();
        }
    }
    seen.healthy = healthy;
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_is_exact() {
        assert_eq!(
            script(&["test -e /run/x".into()], 5),
            format!(
                "if [ -e /run/current-system ]; then readlink -f /run/current-system; fi; echo --nixmox-glance--; \
                 cat '/run/nixmox/env.hash' 2>/dev/null; echo; echo --nixmox-glance--; {}; echo --nixmox-glance--; \
                 if timeout 5 \"${{SHELL:-sh}}\" -c 'test -e /run/x' >/dev/null 2>&1 </dev/null; \
                 then echo ok; else echo fail; fi",
                guards_script()
            )
        );
    }

    fn seen(current: &str, env_hash: &str, healthy: bool) -> Glance {
        Glance {
            current: current.into(),
            env_hash: env_hash.into(),
            healthy,
            pending: vec![],
            records: vec![],
        }
    }

    #[test]
    fn parses_answers() {
        let m = MARK;
        let sys = format!("/nix/store/{}-sys", "a".repeat(32));
        assert_eq!(
            parse(&format!("{sys}\n{m}\nabc\n{m}\n{m}\nok\nok\n"), 2),
            Some(seen(&sys, "abc", true))
        );
        // Anything but a store path where the system should be: not an answer.
        assert_eq!(parse(&format!("/etc/passwd\n{m}\n\n{m}\n{m}\n"), 0), None);
        assert_eq!(
            parse(&format!("{m}\n\n{m}\n{m}\nok\nfail\n"), 2),
            Some(seen("", "", false))
        );
        assert_eq!(
            parse(&format!("{sys}\n{m}\n\n{m}\n{m}\n"), 0),
            Some(seen(&sys, "", true))
        );
        // Too few verdicts, garbage, or no marks at all: not an answer.
        assert_eq!(parse(&format!("x\n{m}\n\n{m}\n{m}\nok\n"), 2), None);
        assert_eq!(parse(&format!("x\n{m}\n\n{m}\n{m}\nmaybe\n"), 1), None);
        assert_eq!(parse("motd banner\n", 0), None);
        // Guards waiting, and a record of a rollback.
        let g = parse(
            &format!("{sys}\n{m}\n\n{m}\npending guard-1\nrecord guard-0 time=5 from=/a to=/b generation=41 timeout=30 status=0 \n{m}\n"),
            0,
        )
        .expect("an answer");
        assert_eq!(g.pending, ["guard-1"]);
        assert_eq!(g.records.len(), 1);
        assert_eq!(g.records[0].generation, Some(41));
        assert!(!g.settled());
    }

    /// The script through a real shell: a passing and a failing probe, and a
    /// probe full of quotes that must reach its shell as written.
    #[test]
    fn script_runs_in_sh() {
        let commands = vec![
            "true".to_string(),
            "exit 3".to_string(),
            r#"[ "$(printf '%s' "it's")" = "it's" ]"#.to_string(),
        ];
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script(&commands, 5))
            .output()
            .expect("sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut lines = stdout
            .rsplit(&format!("{MARK}\n"))
            .next()
            .unwrap_or("")
            .lines();
        assert_eq!(lines.next(), Some("ok"));
        assert_eq!(lines.next(), Some("fail"));
        assert_eq!(lines.next(), Some("ok"), "{stdout}");
        assert!(parse(&stdout, 3).is_some_and(|g| !g.healthy && g.settled()));
    }
}
