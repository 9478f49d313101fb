//! What people and programs see: diagnostics, colour decisions.

pub mod preview;
pub mod progress;
pub mod runlog;

use crate::manifest::{Diagnostic, Severity};
use std::io::IsTerminal;

/// Colour only on a terminal, never with `NO_COLOR` set (https://no-color.org).
pub fn use_color(stream_is_tty: bool) -> bool {
    stream_is_tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub fn stderr_color() -> bool {
    use_color(std::io::stderr().is_terminal())
}

/// One diagnostic as a line, coloured when asked.
pub fn diagnostic_line(d: &Diagnostic, color: bool) -> String {
    let (label, code) = match d.severity {
        Severity::Error => ("error", "31"),
        Severity::Warning => ("warning", "33"),
    };
    let label = if color {
        format!("\x1b[1;{code}m{label}\x1b[0m")
    } else {
        label.to_string()
    };
    let mut line = format!("{label}: {}: {}", d.path, d.message);
    if let Some(h) = &d.hint {
        line.push_str(&format!(" ({h})"));
    }
    line
}
