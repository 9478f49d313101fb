//! Running `switch-to-configuration` on a host: detached, so a dropped SSH
//! connection cannot stop it, and polled for its exit status; with a
//! guard (see [`super::guard`]) when the host is to protect itself.

// Activation errors carry the host, the goal and the log.
#![allow(clippy::result_large_err)]

use super::deploy::{host, remote, DeployError, Goal};
use super::remote as cmd;
use super::ssh::{self, SshTarget};
use std::time::{Duration, Instant};

/// How long a host may stay silent while its activation runs before nixmox
/// gives up on it (well before `activation_timeout` when a host is cut off).
pub const SILENCE_LIMIT: Duration = Duration::from_secs(60);

/// The guard an activation runs under: the system it goes back to and
/// how long it waits for nixmox.
#[derive(Debug, Clone, Copy)]
pub struct Guarded<'a> {
    pub previous: &'a str,
    /// The profile's generation that points at `previous`, when known.
    pub generation: Option<u64>,
    pub timeout: u64,
}

/// What an activation left to decide.
#[derive(Debug)]
pub struct Activation {
    /// The guard's directory on the host, when it ran under one.
    pub guard: Option<String>,
    /// The longest time the host did not answer while it ran (counted from
    /// the last answer to a look that failed).
    pub silence: Duration,
    /// Whether the host stopped answering for good (nothing can be asked of it).
    pub lost: bool,
    pub result: Result<(), DeployError>,
}

/// Runs switch-to-configuration detached and polls for its exit status; a
/// lost SSH connection while polling is retried, for [`SILENCE_LIMIT`] at
/// most, and never past the bound.
pub fn activate(
    t: &SshTarget,
    system: &str,
    goal: Goal,
    limit: Duration,
) -> Result<(), DeployError> {
    run(t, system, goal, limit, None).result
}

/// [`activate`], under a guard when one is given. A guarded host is waited
/// for longer when it stops answering: its guard brings it back to the
/// previous system within `timeout` of the last contact, and then it answers.
pub fn run(
    t: &SshTarget,
    system: &str,
    goal: Goal,
    limit: Duration,
    guard: Option<Guarded>,
) -> Activation {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("{}-{}-{n}", std::process::id(), nanos());
    let dir = guard.map(|_| super::guard::dir(&id));
    let mut out = Activation {
        guard: None,
        silence: Duration::ZERO,
        lost: false,
        result: Ok(()),
    };
    let start = match guard {
        Some(g) => super::guard::start(
            system,
            goal.as_str(),
            Some((g.previous, g.generation)),
            g.timeout,
            &id,
        ),
        None => cmd::activate_detached(system, goal.as_str(), &id),
    };
    let started = match remote(t, &start, Duration::from_secs(30)) {
        Ok(s) => s,
        Err(e) => {
            out.result = Err(e);
            return out;
        }
    };
    if !started.ok() {
        out.result = Err(DeployError::Activation {
            host: host(t),
            goal: goal.as_str(),
            system: system.into(),
            status: "not started".into(),
            log: started.stderr.trim().into(),
            rollback: String::new(),
        });
        return out;
    }
    out.guard = dir.clone();
    let silence_limit =
        SILENCE_LIMIT.min(limit) + guard.map_or(Duration::ZERO, |g| Duration::from_secs(g.timeout));
    let deadline = Instant::now() + limit.max(silence_limit);
    let mut answered = Instant::now();
    loop {
        // Each look waits on the host for up to 5 s (never past the deadline).
        let tenths = deadline
            .saturating_duration_since(Instant::now())
            .as_millis()
            .div_ceil(100)
            .clamp(1, 50) as u32;
        let status_cmd = match &dir {
            Some(d) => super::guard::status(d, tenths),
            None => cmd::activation_status(&id, tenths),
        };
        let asked = Instant::now();
        let look = ssh::run(t, &status_cmd, None, Duration::from_secs(15));
        if look.is_err() {
            out.silence = out.silence.max(answered.elapsed());
        }
        if look.is_err() && answered.elapsed() > silence_limit {
            out.lost = true;
            let guarded = match guard {
                Some(g) => format!(
                    "; its guard rolls it back to its previous generation within {} s of the last contact, and the next `nixmox apply` reports what happened",
                    g.timeout
                ),
                None => "; when the host answers again, run `nixmox apply` again: it re-checks                          the host and finishes the job"
                    .into(),
            };
            out.result = Err(DeployError::Activation {
                host: host(t),
                goal: goal.as_str(),
                system: system.into(),
                status: "unknown".into(),
                log: format!(
                    "the host stopped answering for {} s while its activation ran (it may still \
                     be running there){guarded}",
                    answered.elapsed().as_secs()
                ),
                rollback: String::new(),
            });
            return out;
        }
        if let Ok(o) = look {
            answered = Instant::now();
            let status = match &dir {
                Some(_) => {
                    // Beyond its wait on the host, the look's time is time the
                    // connection stalled (then resumed): silence all the same.
                    let (waited, status) = super::guard::parse_status(&o.stdout);
                    out.silence = out.silence.max(asked.elapsed().saturating_sub(waited));
                    status
                }
                None => o.stdout.trim().to_string(),
            };
            let status = status.as_str();
            if !status.is_empty() {
                if status == "0" {
                    return out;
                }
                let log_cmd = match &dir {
                    Some(d) => format!("tail -n 40 {}/log", cmd::quote(d)),
                    None => cmd::activation_log(&id),
                };
                let log = ssh::run(t, &log_cmd, None, Duration::from_secs(10))
                    .map(|o| o.stdout)
                    .unwrap_or_default();
                out.result = Err(DeployError::Activation {
                    host: host(t),
                    goal: goal.as_str(),
                    system: system.into(),
                    status: status.into(),
                    log: log.trim().into(),
                    rollback: String::new(),
                });
                return out;
            }
        }
        if Instant::now() > deadline {
            out.result = Err(DeployError::Activation {
                host: host(t),
                goal: goal.as_str(),
                system: system.into(),
                status: format!("none within {} s", limit.as_secs()),
                log: "activation is still running or the host stopped answering".into(),
                rollback: String::new(),
            });
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
