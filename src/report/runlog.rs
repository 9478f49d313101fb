//! The raw output of every tool a run invokes, kept under
//! `.nixmox/runs/<run>/` for after-the-fact reading: `terraform.log` and
//! `ssh.log`. Only outputs that never carry secret values are written:
//! Terraform's `-json` UI stream (it prints sensitive values as
//! "(sensitive value)") and remote commands' output, never `output -json`
//! or `show -json` (which hold values), never anything fed on stdin.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Starts keeping logs in `dir` (for the rest of this process).
pub fn start(dir: PathBuf) {
    if let Ok(mut d) = DIR.lock() {
        *d = Some(dir);
    }
}

pub fn stop() {
    if let Ok(mut d) = DIR.lock() {
        *d = None;
    }
}

/// Appends one tool invocation to `<dir>/<file>`: the command, its exit status, its output.
pub fn append(file: &str, command: &str, code: Option<i32>, stdout: &str, stderr: &str) {
    let Ok(guard) = DIR.lock() else { return };
    let Some(dir) = guard.as_ref() else { return };
    let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(file))
    else {
        return;
    };
    let status = code
        .map(|c| c.to_string())
        .unwrap_or_else(|| "signal".into());
    let _ = writeln!(f, "==> {command} (exit {status})");
    for (name, text) in [("stdout", stdout), ("stderr", stderr)] {
        if !text.trim().is_empty() {
            let _ = writeln!(f, "--- {name}\n{}", text.trim_end());
        }
    }
}
