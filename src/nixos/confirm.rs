//! nixmox's side of the guard's protocol (see [`super::guard`]): signs of
//! life while the health gate runs, the one claim that decides, and the
//! report of a host that rolled itself back.

// Deploy errors carry the host and what happened.
#![allow(clippy::result_large_err)]

use super::deploy::{host, DeployError};
use super::guard::{self, Claim, Decided, Record};
use super::ssh::{self, SshTarget};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Runs `gate` while telling the guard in `dir` that nixmox is still there,
/// every third of its `timeout` (at least once a second). Returns the
/// gate's result and whether a sign of life did not get through.
pub fn gate_in_touch<R: Send>(
    t: &SshTarget,
    dir: &str,
    timeout: u64,
    gate: impl FnOnce() -> R + Send,
) -> (R, bool) {
    let done = AtomicBool::new(false);
    let missed = AtomicBool::new(false);
    let every = Duration::from_secs((timeout / 3).max(1));
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut next = Instant::now() + every;
            while !done.load(Ordering::SeqCst) {
                if Instant::now() >= next {
                    // A beat that fails, or takes longer than the beats' own
                    // interval (a stalled connection), did not get through in time.
                    let sent = Instant::now();
                    let beat = ssh::run(
                        t,
                        &guard::heartbeat(dir),
                        None,
                        every.max(Duration::from_secs(5)),
                    );
                    if !beat.is_ok_and(|o| o.ok())
                        || sent.elapsed() > every + Duration::from_secs(2)
                    {
                        missed.store(true, Ordering::SeqCst);
                    }
                    next = Instant::now() + every;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let r = gate();
        done.store(true, Ordering::SeqCst);
        r
    });
    (result, missed.load(Ordering::SeqCst))
}

/// Asks the guard to decide `what`. A host that does not answer is asked
/// again until `patience` has passed (its guard decides meanwhile, and a
/// host that rolled back answers again); `None` when it never answered.
pub fn claim(t: &SshTarget, dir: &str, what: Claim, patience: Duration) -> Option<Decided> {
    let end = Instant::now() + patience;
    loop {
        if let Ok(o) = ssh::run(t, &guard::claim(dir, what), None, Duration::from_secs(15)) {
            if o.ok() {
                return Some(guard::parse_claim(&o.stdout));
            }
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The guard's record of its rollback, once it is written (the previous
/// system's activation may take up to `limit`); marked as reported, so
/// the next look does not report it again.
pub fn record(t: &SshTarget, dir: &str, limit: Duration) -> Option<Record> {
    let id = dir.rsplit('/').next().unwrap_or(dir).to_string();
    let path = format!("{}/{id}", guard::RECORDS);
    let read = format!(
        "if [ -e {p} ]; then cat {p} && mv {p} {p}.reported; fi",
        p = super::remote::quote(&path)
    );
    let end = Instant::now() + limit;
    loop {
        if let Ok(o) = ssh::run(t, &read, None, Duration::from_secs(15)) {
            if let Some(r) = Record::parse(&id, &o.stdout) {
                return Some(r);
            }
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The failure of a host whose guard decided: rolled back (with its record
/// when it can be read) or left unconfirmed on a first deploy.
pub fn guard_decided(
    t: &SshTarget,
    dir: &str,
    decided: &Decided,
    timeout: u64,
    limit: Duration,
    lost_at: &str,
) -> DeployError {
    let what = match decided {
        Decided::RolledBack => match record(t, dir, limit) {
            Some(r) => r.describe(),
            None => format!(
                "rolled itself back to its previous generation: not confirmed within {timeout} s (its record could not be read)"
            ),
        },
        Decided::Unconfirmed => format!(
            "was not confirmed within {timeout} s and has no previous generation to go back to: it stays on the new system"
        ),
        Decided::Won => "was confirmed".into(),
        Decided::Unknown(a) => format!("gave an answer nixmox cannot read: {a:?}"),
    };
    DeployError::SelfRollback {
        host: host(t),
        what: format!("{what} ({lost_at})"),
    }
}

/// The host's records of rolling itself back that no run reported yet,
/// each marked as reported as it is read: reported once.
pub fn take_records(t: &SshTarget) -> Result<Vec<Record>, String> {
    let script = format!(
        "for f in {rec}/guard-*; do case $f in *.reported|*.tmp) ;; *) if [ -f \"$f\" ]; then echo \"${{f##*/}} $(tr '\\n' ' ' < \"$f\")\"; mv \"$f\" \"$f.reported\"; fi ;; esac; done",
        rec = guard::RECORDS
    );
    let out = ssh::run(t, &script, None, Duration::from_secs(15)).map_err(|e| e.to_string())?;
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| {
            let (id, rest) = l.split_once(' ')?;
            Record::parse(id, &rest.split(' ').collect::<Vec<_>>().join("\n"))
        })
        .collect())
}
