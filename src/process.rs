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
}

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
    })
}

/// Runs `cmd` to completion or until `limit`, feeding it `stdin`.
pub fn run(mut cmd: Command, stdin: Option<&[u8]>, limit: Duration) -> Result<Finished, Bounded> {
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
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A tool that stops reading early closes the pipe: its exit status says why.
        let _ = pipe.write_all(data);
    }
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = pipe {
                let mut bytes = Vec::new();
                let _ = p.read_to_end(&mut bytes);
                s = String::from_utf8_lossy(&bytes).into_owned();
            }
            s
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Bounded::Timeout);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(Bounded::Spawn(e)),
        }
    };
    Ok(Finished {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
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
}
