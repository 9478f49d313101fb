//! `nixmox exec --on … -- <command>`: one command on many hosts, side by
//! side (at most `--parallel`), each bounded by `--timeout`; every host's
//! output prefixed with its service name as soon as it is done, its exit
//! status, and a summary. The command's words reach the host each quoted,
//! as given: `-- sh -c '…'` when a shell is wanted.

use super::common::{self, CliError};
use super::{Cli, ExecArgs};
use crate::nixos::{remote, ssh, targets};
use serde::Serialize;
use std::fmt::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Serialize)]
struct HostResult {
    service: String,
    host: String,
    /// The command's exit status; `None` when it did not end on its own.
    exit: Option<i32>,
    ok: bool,
    timed_out: bool,
    /// Why the command could not run or finish (unreachable, timed out).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    stdout: String,
    stderr: String,
    seconds: f64,
}

/// The remote command line: each word single-quoted.
pub fn command_line(words: &[String]) -> String {
    words
        .iter()
        .map(|w| remote::quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A host's output, each line prefixed: `name | ` for stdout, `name ! ` for stderr.
fn prefixed(r: &HostResult) -> String {
    let mut out = String::new();
    for line in r.stdout.lines() {
        let _ = writeln!(out, "{} | {line}", r.service);
    }
    for line in r.stderr.lines() {
        let _ = writeln!(out, "{} ! {line}", r.service);
    }
    let _ = writeln!(
        out,
        "{} = {} ({:.1} s)",
        r.service,
        match (&r.error, r.exit) {
            (Some(e), _) => e.clone(),
            (None, Some(0)) => "ok".to_string(),
            (None, Some(c)) => format!("exit {c}"),
            (None, None) => "ended by a signal".to_string(),
        },
        r.seconds
    );
    out
}

pub fn run(cli: &Cli, args: &ExecArgs) -> Result<ExitCode, CliError> {
    // exec reads no secret: the manifest's SOPS values are not opened.
    let v = common::load_without_secrets(cli)?;
    let m = &v.manifest;
    let names = if args.on.is_empty() {
        m.enabled().map(|s| s.name.clone()).collect()
    } else {
        crate::graph::resolve(m, "--on", &args.on)?
    };
    let line = command_line(&args.command);
    let limit = Duration::from_secs(args.timeout);
    let control = crate::nixos::ssh_control::Control::for_run(m).map_err(CliError::Message)?;
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<HostResult>> = Mutex::new(Vec::new());
    let print = Mutex::new(());
    std::thread::scope(|scope| {
        for _ in 0..usize::from(args.parallel).min(names.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(name) = names.get(i) else { break };
                let Some(s) = m.service(name) else { continue };
                let started = Instant::now();
                let host = s.host.ip.map(|ip| ip.to_string()).unwrap_or_default();
                let outcome = targets::target(m, s, &control)
                    .map_err(|e| (false, e))
                    .and_then(|t| {
                        ssh::run(&t, &line, None, limit).map_err(|e| {
                            (matches!(e, ssh::SshError::Timeout { .. }), e.to_string())
                        })
                    });
                let r = match outcome {
                    Ok(o) => HostResult {
                        service: name.clone(),
                        host,
                        exit: o.code,
                        ok: o.code == Some(0),
                        timed_out: false,
                        error: None,
                        stdout: o.stdout,
                        stderr: o.stderr,
                        seconds: started.elapsed().as_secs_f64(),
                    },
                    Err((timed_out, e)) => HostResult {
                        service: name.clone(),
                        host,
                        exit: None,
                        ok: false,
                        timed_out,
                        error: Some(e),
                        stdout: String::new(),
                        stderr: String::new(),
                        seconds: started.elapsed().as_secs_f64(),
                    },
                };
                if !args.json {
                    let _guard = print.lock();
                    let _ = common::emit(&prefixed(&r));
                }
                if let Ok(mut all) = results.lock() {
                    all.push(r);
                }
            });
        }
    });
    control.end();
    let mut all = results.into_inner().unwrap_or_default();
    all.sort_by(|a, b| a.service.cmp(&b.service));
    let failed: Vec<&HostResult> = all.iter().filter(|r| !r.ok).collect();
    if args.json {
        common::emit(&common::to_json(&serde_json::json!({
            "command": args.command,
            "ok": failed.is_empty(),
            "hosts": all,
        }))?)?;
    } else {
        let timed_out = failed.iter().filter(|r| r.timed_out).count();
        common::emit(&format!(
            "exec on {} host(s): {} ok, {} failed{}{}\n",
            all.len(),
            all.len() - failed.len(),
            failed.len(),
            if timed_out > 0 {
                format!(" ({timed_out} timed out after {} s)", args.timeout)
            } else {
                String::new()
            },
            if failed.is_empty() {
                String::new()
            } else {
                format!(
                    ": {}",
                    failed
                        .iter()
                        .map(|r| r.service.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ))?;
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_is_one_word_on_the_host() {
        let words = ["sh", "-c", "echo $HOME; rm -rf /tmp/x", "it's"].map(String::from);
        assert_eq!(
            command_line(&words),
            r#"'sh' '-c' 'echo $HOME; rm -rf /tmp/x' 'it'\''s'"#
        );
    }
}
