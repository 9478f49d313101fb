//! Running a tool with a bound: its output read while it runs (so a full pipe
//! never stalls it), standard input fed and closed, and the process killed
//! when it outlives its limit. Every executor that waits on a tool uses it.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Finished {
    /// `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug)]
pub enum Bounded {
    /// It could not start (not installed, not executable, …).
    Spawn(std::io::Error),
    /// It ran past the limit and was killed.
    Timeout,
    /// It printed more than [`MAX_OUTPUT`] bytes on `stream` and was killed:
    /// what a tool or a host prints is untrusted input, read within a bound.
    TooMuch { stream: &'static str },
}

/// The most nixmox reads of one stream of a tool (a plan's JSON of a large
/// stack is a few MiB).
pub const MAX_OUTPUT: usize = 64 * 1024 * 1024;

/// [`run`] for a tool whose failure to start or to finish is an error
/// message: `install` says how to get the tool.
pub fn run_tool(
    cmd: Command,
    stdin: Option<&[u8]>,
    limit: Duration,
    tool: &str,
    install: &str,
) -> Result<Finished, String> {
    run(cmd, stdin, limit).map_err(|e| match e {
        Bounded::Spawn(e) => format!("cannot run {tool} ({install}): {e}"),
        Bounded::Timeout => format!(
            "{tool} did not finish within {} s and was stopped",
            limit.as_secs()
        ),
        Bounded::TooMuch { stream } => format!(
            "{tool} printed more than {} MiB on its {stream} and was stopped",
            MAX_OUTPUT >> 20
        ),
    })
}

thread_local! {
    static BACKGROUND: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// How much lower than nixmox's own the priority of background tools is.
const BACKGROUND_NICENESS: libc::c_int = 10;

/// `f`, with every tool it starts from this thread at a lower CPU priority:
/// for work done ahead of need (a run's look at every host), so that what
/// the run waits for now (its Terraform plans, the changed host's deploy)
/// gets the cores first on a busy machine. Without a contender a niced tool
/// runs just as fast.
pub fn in_background<R>(f: impl FnOnce() -> R) -> R {
    let before = BACKGROUND.with(|b| b.replace(true));
    let r = f();
    BACKGROUND.with(|b| b.set(before));
    r
}

/// Makes `cmd`'s process the leader of a process group of its own (so that
/// stopping it stops whatever it started too) and ties it to nixmox: when
/// the thread that started it ends — nixmox killed, interrupted or done —
/// the kernel kills it. Nix ignores SIGTERM while it evaluates, so only
/// SIGKILL is sure to stop it.
pub fn contain(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    let nice = BACKGROUND.with(|b| b.get());
    // SAFETY: only async-signal-safe system calls run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // nixmox may have died before the line above took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            if nice {
                libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICENESS);
            }
            Ok(())
        });
    }
}

/// The process groups of the tools running now under [`run`].
static LIVE: std::sync::Mutex<std::collections::BTreeSet<libc::pid_t>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// From now on, when nixmox is interrupted, terminated or hung up on, every
/// tool running under [`run`] is killed with all it started before nixmox
/// ends the way that signal ends it. (Terraform is not run that way: a
/// Terraform apply stopped half-way loses state, so it is let finish.) A
/// SIGKILL cannot be caught: then the kernel kills each tool itself
/// ([`contain`]).
pub fn stop_tools_on_signals() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            if let Ok(live) = LIVE.lock() {
                for pgid in live.iter() {
                    // SAFETY: a plain system call on a process group nixmox made.
                    unsafe {
                        libc::kill(-pgid, libc::SIGKILL);
                    }
                }
            }
            let _ = signal_hook::low_level::emulate_default_handler(sig);
            std::process::exit(128 + sig);
        }
    });
}

/// Kills a child started under [`contain`] and everything in its group.
pub fn kill_group(child: &mut std::process::Child) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: a plain system call on a process group nixmox made.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads a stream to its end, keeping at most [`MAX_OUTPUT`] bytes; says
/// when there was more (the rest is drained, so the tool never stalls).
fn read_bounded(
    pipe: Option<Box<dyn Read + Send>>,
    flooded: &std::sync::atomic::AtomicBool,
) -> String {
    let mut kept = Vec::new();
    if let Some(mut p) = pipe {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match p.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) if kept.len() + n <= MAX_OUTPUT => kept.extend_from_slice(&buf[..n]),
                Ok(_) => flooded.store(true, std::sync::atomic::Ordering::SeqCst),
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// Runs `cmd` to completion or until `limit`, feeding it `stdin`; the
/// process and whatever it starts are contained (see [`contain`]).
pub fn run(mut cmd: Command, stdin: Option<&[u8]>, limit: Duration) -> Result<Finished, Bounded> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    contain(&mut cmd);
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Bounded::Spawn)?;
    let pgid = child.id() as libc::pid_t;
    if let Ok(mut live) = LIVE.lock() {
        live.insert(pgid);
    }
    // Forgotten however this function returns.
    struct Forget(libc::pid_t);
    impl Drop for Forget {
        fn drop(&mut self) {
            if let Ok(mut live) = LIVE.lock() {
                live.remove(&self.0);
            }
        }
    }
    let _forget = Forget(pgid);
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A tool that stops reading early closes the pipe: its exit status says why.
        let _ = pipe.write_all(data);
    }
    let out_flood = Arc::new(AtomicBool::new(false));
    let err_flood = Arc::new(AtomicBool::new(false));
    let reader = |pipe: Option<Box<dyn Read + Send>>, flag: Arc<AtomicBool>| {
        std::thread::spawn(move || read_bounded(pipe, &flag))
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        out_flood.clone(),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        err_flood.clone(),
    );
    let start = Instant::now();
    let status = loop {
        for (flag, stream) in [
            (&out_flood, "standard output"),
            (&err_flood, "standard error"),
        ] {
            if flag.load(Ordering::SeqCst) {
                kill_group(&mut child);
                return Err(Bounded::TooMuch { stream });
            }
        }
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() > limit => {
                kill_group(&mut child);
                return Err(Bounded::Timeout);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(Bounded::Spawn(e)),
        }
    };
    let (stdout, stderr) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    if out_flood.load(Ordering::SeqCst) {
        return Err(Bounded::TooMuch {
            stream: "standard output",
        });
    }
    if err_flood.load(Ordering::SeqCst) {
        return Err(Bounded::TooMuch {
            stream: "standard error",
        });
    }
    Ok(Finished {
        code: status.code(),
        stdout,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_stdin_and_the_bound() {
        let mut c = Command::new("sh");
        c.args(["-c", "cat; echo oops >&2; exit 3"]);
        let f = run(c, Some(b"hello"), Duration::from_secs(10)).expect("runs");
        assert_eq!(
            (f.code, f.stdout.as_str(), f.stderr.trim()),
            (Some(3), "hello", "oops")
        );
        let mut slow = Command::new("sleep");
        slow.arg("5");
        let started = Instant::now();
        assert!(matches!(
            run(slow, None, Duration::from_millis(200)),
            Err(Bounded::Timeout)
        ));
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(matches!(
            run(
                Command::new("/nonexistent/tool"),
                None,
                Duration::from_secs(1)
            ),
            Err(Bounded::Spawn(_))
        ));
    }

    #[test]
    fn a_flood_of_output_is_cut_and_the_tool_stopped() {
        let mut c = Command::new("sh");
        c.args(["-c", "exec cat /dev/zero"]);
        assert!(matches!(
            run(c, None, Duration::from_secs(60)),
            Err(Bounded::TooMuch {
                stream: "standard output"
            })
        ));
    }

    /// A timed-out tool is stopped with what it started: no grandchild is left.
    #[test]
    fn a_timeout_stops_the_whole_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("grandchild.pid");
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("sleep 30 & echo $! > {}; wait", marker.display()));
        assert!(matches!(
            run(c, None, Duration::from_millis(500)),
            Err(Bounded::Timeout)
        ));
        let pid = std::fs::read_to_string(&marker)
            .expect("pid")
            .trim()
            .to_string();
        std::thread::sleep(Duration::from_millis(200));
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        assert!(
            status.is_empty() || status.contains("State:\tZ"),
            "the grandchild {pid} outlived the timeout:\n{status}"
        );
    }
}
