//! What the lab's fault tests share: `apply --json` bounded in time with a
//! fault injected when a step starts, its events, and a service's version
//! set in the lab manifest. Used with tests/support/lab_stack.rs.

use super::lab_stack::Lab;
use serde_json::Value;
use std::io::BufRead;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

/// No run of this test may take longer: a fault must end in an error, not a hang.
pub const BOUND: Duration = Duration::from_secs(150);

pub fn events(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The event that ended `step`.
pub fn end_of<'a>(ev: &'a [Value], step: &str) -> Option<&'a Value> {
    ev.iter()
        .rev()
        .find(|e| e["step"] == step && e["status"] != "started")
}

/// A fault: when this step starts, after this delay, this runs (given the
/// running nixmox, which it may kill).
pub type Trigger<'a> = (&'a str, Duration, &'a dyn Fn(&mut Child));

/// `apply --json --yes`, bounded by [`BOUND`], with a fault injected.
pub fn apply(lab: &Lab, trigger: Option<Trigger>) -> Output {
    let mut child = lab.spawn(&["apply", "--json", "--yes"]);
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let start = Instant::now();
    let mut lines = Vec::new();
    let mut fired = trigger.is_none();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if let (false, Some((step, delay, act))) = (fired, &trigger) {
                    let e: Value = serde_json::from_str(&line).unwrap_or_default();
                    if e["step"] == *step && e["status"] == "started" {
                        std::thread::sleep(*delay);
                        act(&mut child);
                        fired = true;
                    }
                }
                lines.push(line);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(_) => {}
        }
        if start.elapsed() > BOUND {
            let _ = child.kill();
            panic!("apply did not end within {BOUND:?}:\n{}", lines.join("\n"));
        }
    }
    let _ = reader.join();
    let status = child.wait().expect("wait");
    assert!(fired, "the fault was never injected:\n{}", lines.join("\n"));
    Output {
        status,
        stdout: lines.join("\n").into_bytes(),
        stderr: Vec::new(),
    }
}

pub fn set_version(lab: &Lab, service: &str, version: &str) {
    let path = lab.manifest();
    let m = std::fs::read_to_string(&path).expect("manifest");
    let head = format!("    {service} = {{\n      version = \"");
    let start = m.find(&head).expect("service block") + head.len();
    let end = start + m[start..].find('"').expect("end of version");
    let mut m = m;
    m.replace_range(start..end, version);
    std::fs::write(&path, m).expect("write manifest");
}
