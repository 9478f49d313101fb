//! What the engine reports while it runs: one event per step transition, the
//! same events feed the text view and `--json` (one object per line).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Started,
    /// Done and something changed.
    Changed,
    /// Done, nothing needed changing.
    Unchanged,
    Failed,
    /// Not run: a dependency failed, or the core halted the run.
    Skipped,
}

impl StepStatus {
    /// How a finished step that did (or did not) change something ends.
    pub fn done(changed: bool) -> Self {
        if changed {
            StepStatus::Changed
        } else {
            StepStatus::Unchanged
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub event: &'static str,
    pub step: String,
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub status: StepStatus,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    pub seconds: f64,
}
