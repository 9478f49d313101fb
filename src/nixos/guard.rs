//! The host protects itself: an activation nixmox starts runs under a guard
//! on the host ([`SCRIPT`]) that rolls the host back by itself unless nixmox
//! confirms in time. Confirmation and self-rollback are decided atomically
//! on the host (`mkdir` of the guard's `decided` directory: exactly one
//! side creates it), and each side learns which won.
//!
//! nixmox touches the guard's `alive` file whenever it reaches the host (its
//! activation polls and, while the health gate runs, a heartbeat), so the
//! guard's clock runs only while nixmox cannot reach the host: a host that
//! lost its network, its sshd or its firewall to the new system, or a run
//! that was killed, ends on its previous generation within
//! `confirm_timeout` of the last contact.

use super::remote::{quote, PROFILE, RUN_DIR};

/// The guard, run detached on the host (see its header for the protocol).
pub const SCRIPT: &str = include_str!("guard.sh");

/// Where hosts keep the records of their own rollbacks (survives a reboot).
pub const RECORDS: &str = "/var/lib/nixmox/rollbacks";

/// The guard's directory for activation `id`, on the host's tmpfs.
pub fn dir(id: &str) -> String {
    format!("{RUN_DIR}/guard-{id}")
}

/// Starts `system`'s activation under the guard, detached: the SSH session
/// and nixmox may go; the guard stays until a decision.
pub fn start(
    system: &str,
    goal: &str,
    previous: Option<(&str, Option<u64>)>,
    timeout: u64,
    id: &str,
) -> String {
    start_in(system, goal, previous, timeout, &dir(id), PROFILE, RECORDS)
}

/// [`start`] with its places given (the tests run the guard in a directory of their own).
pub fn start_in(
    system: &str,
    goal: &str,
    previous: Option<(&str, Option<u64>)>,
    timeout: u64,
    dir: &str,
    profile: &str,
    records: &str,
) -> String {
    let generation = previous
        .and_then(|(_, g)| g)
        .map(|g| g.to_string())
        .unwrap_or_default();
    let args = [
        dir,
        system,
        goal,
        previous.map_or("", |(p, _)| p),
        &generation,
        &timeout.to_string(),
        profile,
        records,
    ]
    .iter()
    .map(|a| quote(a))
    .collect::<Vec<_>>()
    .join(" ");
    format!(
        "mkdir -p {d} && rm -rf {d}/decided {d}/status && setsid -f sh -c {script} guard {args} < /dev/null > /dev/null 2>&1",
        d = quote(dir),
        script = quote(SCRIPT),
    )
}

/// Prints `waited <tenths>` (how long the look waited on the host), then
/// the activation's exit status once it has finished (nothing before),
/// waiting on the host up to `tenths` tenths of a second; every look is
/// also a sign of life for the guard. What the look took beyond its wait
/// on the host is time the connection stalled (see [`parse_status`]).
pub fn status(dir: &str, tenths: u32) -> String {
    let d = quote(dir);
    format!(
        "touch {d}/alive 2>/dev/null; i=0; while [ ! -e {d}/status ] && [ $i -lt {tenths} ]; do sleep 0.1; i=$((i+1)); done; echo \"waited $i\"; cat {d}/status 2>/dev/null || true"
    )
}

/// [`status`]'s answer: the time waited on the host, and the exit status
/// (empty while the activation runs).
pub fn parse_status(answer: &str) -> (std::time::Duration, String) {
    let mut lines = answer.lines();
    let waited = lines
        .next()
        .and_then(|l| l.strip_prefix("waited "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let status = lines.collect::<Vec<_>>().join("\n").trim().to_string();
    (std::time::Duration::from_millis(waited * 100), status)
}

/// A sign of life: the guard's clock starts again.
pub fn heartbeat(dir: &str) -> String {
    format!("touch {}/alive", quote(dir))
}

/// What nixmox wants decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The health gate passed: the host stays on its new system.
    Confirm,
    /// nixmox deals with the failure itself (its own rollback, or none).
    TakeOver,
}

/// Tries to decide; prints `won`, or `lost <the guard's decision>`.
pub fn claim(dir: &str, what: Claim) -> String {
    let d = quote(dir);
    let word = match what {
        Claim::Confirm => "confirmed",
        Claim::TakeOver => "nixmox",
    };
    format!(
        "if mkdir {d}/decided 2>/dev/null; then echo {word} > {d}/decision; echo won; \
         else i=0; while [ ! -s {d}/decision ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; \
         echo lost $(cat {d}/decision 2>/dev/null); fi"
    )
}

/// Who decided, from [`claim`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// nixmox's claim stands.
    Won,
    /// The guard rolled the host back (or is doing so).
    RolledBack,
    /// The guard gave up with nothing to go back to (a first deploy).
    Unconfirmed,
    /// An answer that is none of these.
    Unknown(String),
}

pub fn parse_claim(answer: &str) -> Decided {
    let a = answer.trim();
    match a {
        "won" => Decided::Won,
        "lost rollback" => Decided::RolledBack,
        "lost unconfirmed" => Decided::Unconfirmed,
        // The guard's claim is never nixmox's words: a decision of nixmox's
        // own under this id means a claim was already made (a retry).
        "lost confirmed" | "lost nixmox" => Decided::Won,
        other => Decided::Unknown(other.chars().take(200).collect()),
    }
}

/// A host's record of rolling itself back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub id: String,
    /// Seconds since the epoch.
    pub time: u64,
    pub from: String,
    pub to: String,
    pub generation: Option<u64>,
    pub timeout: u64,
    /// The rollback's own exit status (0: the previous system is active).
    pub status: i32,
}

impl Record {
    /// Reads `key=value` lines; `None` when they do not make a record.
    pub fn parse(id: &str, text: &str) -> Option<Record> {
        let mut r = Record {
            id: id.to_string(),
            ..Default::default()
        };
        let mut seen = 0;
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            seen += 1;
            match k {
                "time" => r.time = v.parse().ok()?,
                "from" => r.from = v.to_string(),
                "to" => r.to = v.to_string(),
                "generation" => r.generation = v.parse().ok(),
                "timeout" => r.timeout = v.parse().ok()?,
                "status" => r.status = v.parse().ok()?,
                _ => seen -= 1,
            }
        }
        (seen >= 5).then_some(r)
    }

    /// "rolled itself back to generation 41: not confirmed within 30 s".
    pub fn describe(&self) -> String {
        let to = match self.generation {
            Some(g) => format!("generation {g}"),
            None => "its previous generation".into(),
        };
        let outcome = if self.status == 0 {
            String::new()
        } else {
            format!(" (its rollback exited {}: look at the host)", self.status)
        };
        format!(
            "rolled itself back to {to}: not confirmed within {} s{outcome}",
            self.timeout
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back() {
        let r = Record::parse(
            "42",
            "time=1700000000\nfrom=/nix/store/new\nto=/nix/store/old\ngeneration=41\ntimeout=30\nstatus=0\n",
        )
        .expect("record");
        assert_eq!(r.generation, Some(41));
        assert_eq!(
            r.describe(),
            "rolled itself back to generation 41: not confirmed within 30 s"
        );
        assert_eq!(Record::parse("x", "junk"), None);
    }

    #[test]
    fn status_reads_back() {
        assert_eq!(
            parse_status("waited 12\n0\n"),
            (std::time::Duration::from_millis(1200), "0".into())
        );
        assert_eq!(parse_status("waited 50\n").1, "");
    }

    #[test]
    fn claims_read_back() {
        assert_eq!(parse_claim("won\n"), Decided::Won);
        assert_eq!(parse_claim("lost rollback\n"), Decided::RolledBack);
        assert_eq!(parse_claim("lost unconfirmed"), Decided::Unconfirmed);
        assert!(matches!(parse_claim("lost "), Decided::Unknown(_)));
    }
}
