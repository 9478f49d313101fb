//! How a run shows itself: a live view on a terminal (one spinner line per
//! service), plain prefixed lines elsewhere (`[wiki] tf:service-infra:
//! changed (3.1 s)`), or one JSON event per line with `--json`. Spinners and
//! colour only on a terminal, never with `NO_COLOR`.

use crate::engine::{Event, StepStatus};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

pub enum View {
    Json,
    Plain,
    Live {
        multi: MultiProgress,
        bars: Mutex<HashMap<String, ProgressBar>>,
    },
}

fn status_word(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Started => "started",
        StepStatus::Changed => "changed",
        StepStatus::Unchanged => "ok",
        StepStatus::Failed => "FAILED",
        StepStatus::Skipped => "skipped",
    }
}

/// `[wiki] nix:service-config: changed (0.4 s): /nix/store/…`
pub fn plain_line(e: &Event) -> String {
    let who = e.service.as_deref().unwrap_or("stack");
    let detail = e
        .detail
        .lines()
        .next()
        .filter(|d| !d.is_empty())
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    format!(
        "[{who}] {}: {} ({:.1} s){detail}",
        e.phase,
        status_word(e.status),
        e.seconds
    )
}

impl View {
    /// JSON when asked; the live view on a terminal without `NO_COLOR`; plain lines otherwise.
    pub fn choose(json: bool) -> View {
        if json {
            View::Json
        } else if super::use_color(std::io::stdout().is_terminal()) {
            View::Live {
                multi: MultiProgress::new(),
                bars: Mutex::new(HashMap::new()),
            }
        } else {
            View::Plain
        }
    }

    pub fn event(&self, e: &Event) {
        match self {
            View::Json => println!("{}", serde_json::to_string(e).unwrap_or_default()),
            View::Plain => {
                if e.status != StepStatus::Started {
                    println!("{}", plain_line(e));
                }
            }
            View::Live { multi, bars } => {
                let key = e.service.clone().unwrap_or_else(|| "stack".into());
                let Ok(mut bars) = bars.lock() else { return };
                let bar = bars.entry(key.clone()).or_insert_with(|| {
                    let b = multi.add(ProgressBar::new_spinner());
                    b.set_style(
                        ProgressStyle::with_template(
                            "{spinner:.cyan} {prefix:<12.bold} {wide_msg} {elapsed:>4}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    b.set_prefix(key.clone());
                    b.enable_steady_tick(Duration::from_millis(120));
                    b
                });
                let phase = e.phase.as_str();
                match e.status {
                    StepStatus::Started => bar.set_message(format!("{phase} …")),
                    StepStatus::Failed => bar.abandon_with_message(format!(
                        "\x1b[31m✗ {phase}: {}\x1b[0m",
                        e.detail.lines().next().unwrap_or_default()
                    )),
                    _ if phase == "verify" || (phase == "health" && is_core(e)) => bar
                        .finish_with_message(format!(
                            "\x1b[32m✓\x1b[0m {phase}: {}",
                            status_word(e.status)
                        )),
                    StepStatus::Skipped if key != "stack" => bar.finish_with_message(format!(
                        "– skipped: {}",
                        e.detail.lines().next().unwrap_or_default()
                    )),
                    s => bar.set_message(format!("{phase}: {}", status_word(s))),
                }
            }
        }
    }

    /// Ends the live view (lines left as they are).
    pub fn finish(&self) {
        if let View::Live { bars, .. } = self {
            if let Ok(bars) = bars.lock() {
                for b in bars.values().filter(|b| !b.is_finished()) {
                    b.finish();
                }
            }
        }
    }
}

/// Core services finish at their health gate (they have no verify step).
fn is_core(e: &Event) -> bool {
    e.step.starts_with("health:")
        && ["dns", "postgresql", "caddy", "authentik"].contains(&e.service.as_deref().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_are_prefixed() {
        let e = Event {
            event: "step",
            step: "tf:service-infra:wiki".into(),
            phase: "tf:service-infra".into(),
            service: Some("wiki".into()),
            status: StepStatus::Changed,
            detail: "+2 ~0 -0\nmore".into(),
            seconds: 3.06,
        };
        assert_eq!(
            plain_line(&e),
            "[wiki] tf:service-infra: changed (3.1 s): +2 ~0 -0"
        );
        let s = Event {
            service: None,
            step: "tf:infra".into(),
            phase: "tf:infra".into(),
            detail: String::new(),
            status: StepStatus::Unchanged,
            ..e
        };
        assert_eq!(plain_line(&s), "[stack] tf:infra: ok (3.1 s)");
    }
}
