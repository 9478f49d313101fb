//! Reading what Terraform reports: the `-json` message stream of plan and
//! apply (progress and diagnostics), and `show -json` of a saved plan (what
//! really changes).

use serde::Serialize;
use serde_json::Value;

/// One diagnostic Terraform printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TfDiagnostic {
    pub severity: String,
    pub summary: String,
    pub detail: String,
}

/// Diagnostics from a `-json` message stream (one JSON object a line);
/// lines that are not JSON are kept as error text, since Terraform prints
/// some early failures (bad flags, a broken wrapper) as plain text.
pub fn diagnostics(stream: &str) -> Vec<TfDiagnostic> {
    let mut out = Vec::new();
    for line in stream.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) if v["type"] == "diagnostic" => {
                let d = &v["diagnostic"];
                out.push(TfDiagnostic {
                    severity: d["severity"].as_str().unwrap_or("error").to_string(),
                    summary: d["summary"].as_str().unwrap_or("").to_string(),
                    detail: d["detail"].as_str().unwrap_or("").to_string(),
                });
            }
            Ok(_) => {}
            Err(_) => out.push(TfDiagnostic {
                severity: "error".into(),
                summary: line.trim().to_string(),
                detail: String::new(),
            }),
        }
    }
    out
}

/// What a saved plan would do, as `show -json` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
    /// Resources replaced (counted once here, not in add/destroy).
    pub replace: usize,
    /// Root outputs whose value really changes (created, deleted, or updated to another value).
    pub outputs: Vec<String>,
    /// Resources whose real object differs from the state, each as
    /// `<address> deleted` or `<address> changed: <attributes>` (attribute
    /// names only, never values).
    pub drift: Vec<String>,
}

impl Changes {
    pub fn resources(&self) -> usize {
        self.add + self.change + self.destroy + self.replace
    }

    /// True when applying would change something: a resource or an output.
    pub fn any(&self) -> bool {
        self.resources() > 0 || !self.outputs.is_empty()
    }

    /// `+1 ~0 -0`, the way people read plans.
    pub fn short(&self) -> String {
        let mut s = format!("+{} ~{} -{}", self.add, self.change, self.destroy);
        if self.replace > 0 {
            s.push_str(&format!(" ±{}", self.replace));
        }
        if !self.outputs.is_empty() {
            s.push_str(&format!(", {} output(s)", self.outputs.len()));
        }
        if !self.drift.is_empty() {
            s.push_str(&format!(", drift: {}", self.drift.join("; ")));
        }
        s
    }
}

/// Reads `show -json` of a saved plan. An output counts as changed only when
/// its value really differs: Terraform reports output-only changes with exit
/// code 2 even when nothing but outputs would move (hashicorp/terraform#37406),
/// and a sensitive output's before/after are compared without ever being shown.
pub fn changes(show_json: &str) -> Result<Changes, String> {
    let doc: Value = serde_json::from_str(show_json)
        .map_err(|e| format!("`show -json` printed something that is not JSON: {e}"))?;
    let mut c = Changes::default();
    for rc in doc["resource_changes"].as_array().into_iter().flatten() {
        let actions: Vec<&str> = rc["change"]["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match actions.as_slice() {
            ["create"] => c.add += 1,
            ["update"] => c.change += 1,
            ["delete"] => c.destroy += 1,
            ["delete", "create"] | ["create", "delete"] => c.replace += 1,
            _ => {} // no-op, read, forget
        }
    }
    if let Some(outputs) = doc["output_changes"].as_object() {
        for (name, oc) in outputs {
            let actions: Vec<&str> = oc["actions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let moved = match actions.as_slice() {
                ["no-op"] => false,
                ["update"] => {
                    oc["before"] != oc["after"] || oc["after_unknown"] == Value::Bool(true)
                }
                _ => true,
            };
            if moved {
                c.outputs.push(name.clone());
            }
        }
    }
    for rd in doc["resource_drift"].as_array().into_iter().flatten() {
        if let Some(addr) = rd["address"].as_str() {
            c.drift.push(format!("{addr} {}", drifted(&rd["change"])));
        }
    }
    Ok(c)
}

/// What happened to a resource outside Terraform, by name: deleted, or
/// which attributes changed (compared, never shown: some are sensitive).
fn drifted(change: &Value) -> String {
    let actions: Vec<&str> = change["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    match actions.as_slice() {
        ["delete"] => "deleted".into(),
        ["update"] => {
            let (before, after) = (&change["before"], &change["after"]);
            let mut keys: Vec<&str> = before
                .as_object()
                .into_iter()
                .flatten()
                .chain(after.as_object().into_iter().flatten())
                .filter(|(k, _)| before.get(k.as_str()) != after.get(k.as_str()))
                .map(|(k, _)| k.as_str())
                .collect();
            keys.sort_unstable();
            keys.dedup();
            if keys.is_empty() {
                "changed".into()
            } else {
                format!("changed: {}", keys.join(", "))
            }
        }
        other => other.join("/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_resource_and_output_changes() {
        let doc = r#"{
          "resource_changes": [
            {"address": "a.x", "change": {"actions": ["create"]}},
            {"address": "a.y", "change": {"actions": ["delete", "create"]}},
            {"address": "a.z", "change": {"actions": ["no-op"]}}
          ],
          "output_changes": {
            "same": {"actions": ["update"], "before": "v", "after": "v", "after_unknown": false},
            "moved": {"actions": ["update"], "before": "v", "after": "w", "after_unknown": false},
            "new": {"actions": ["create"], "before": null, "after": 1, "after_unknown": false},
            "still": {"actions": ["no-op"], "before": 1, "after": 1}
          },
          "resource_drift": [
            {"address": "a.gone", "change": {"actions": ["delete"], "before": {"x": 1}, "after": null}},
            {"address": "a.moved", "change": {"actions": ["update"],
              "before": {"uris": ["a"], "secret": "s1", "id": "1"},
              "after": {"uris": ["b"], "secret": "s2", "id": "1"}}}
          ]
        }"#;
        let c = changes(doc).expect("parse");
        assert_eq!((c.add, c.change, c.destroy, c.replace), (1, 0, 0, 1));
        assert_eq!(c.outputs, ["moved", "new"]);
        assert_eq!(c.drift, ["a.gone deleted", "a.moved changed: secret, uris"]);
        assert_eq!(
            c.short(),
            "+1 ~0 -0 ±1, 2 output(s), drift: a.gone deleted; a.moved changed: secret, uris"
        );
        assert!(!c.short().contains("s1") && !c.short().contains("s2"));
    }

    #[test]
    fn output_only_plans_with_equal_values_change_nothing() {
        let doc = r#"{"output_changes": {"o": {"actions": ["update"], "before": 1, "after": 1, "after_unknown": false}}}"#;
        assert!(!changes(doc).expect("parse").any());
    }

    #[test]
    fn diagnostics_from_the_stream() {
        let stream = "{\"type\":\"version\"}\n{\"type\":\"diagnostic\",\"diagnostic\":{\"severity\":\"error\",\"summary\":\"Bad\",\"detail\":\"why\"}}\nplain failure\n";
        let d = diagnostics(stream);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].summary, "Bad");
        assert_eq!(d[1].summary, "plain failure");
    }
}
