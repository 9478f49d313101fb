//! Terraform outputs: captured per workspace, with sensitive values kept out
//! of every view a person or a log can see.

use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// What replaces a sensitive value wherever it would be shown.
pub const REDACTED: &str = "(sensitive)";

#[derive(Clone, PartialEq)]
pub struct Output {
    pub value: Value,
    pub sensitive: bool,
}

/// Debug never shows a sensitive value, so `{:?}` in a log or a panic cannot leak it.
impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sensitive {
            write!(f, "Output({REDACTED})")
        } else {
            write!(f, "Output({})", self.value)
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outputs(pub BTreeMap<String, Output>);

impl Outputs {
    /// Reads `terraform output -json`.
    pub fn parse(text: &str) -> Result<Outputs, String> {
        let doc: Map<String, Value> = serde_json::from_str(text).map_err(|e| {
            format!("`output -json` printed something that is not a JSON object: {e}")
        })?;
        let mut out = BTreeMap::new();
        for (name, entry) in doc {
            out.insert(
                name,
                Output {
                    sensitive: entry["sensitive"].as_bool().unwrap_or(true),
                    value: entry.get("value").cloned().unwrap_or(Value::Null),
                },
            );
        }
        Ok(Outputs(out))
    }

    /// The outputs recorded in a state file (format version 4, where
    /// `sensitive` appears only when true); `None` for anything else.
    pub fn from_state(text: &str) -> Option<Outputs> {
        let doc: Value = serde_json::from_str(text).ok()?;
        if doc["version"].as_u64() != Some(4) {
            return None;
        }
        let mut out = BTreeMap::new();
        for (name, entry) in doc.get("outputs")?.as_object()? {
            out.insert(
                name.clone(),
                Output {
                    sensitive: entry["sensitive"].as_bool().unwrap_or(false),
                    value: entry.get("value")?.clone(),
                },
            );
        }
        Some(Outputs(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every value, secrets included: only for handing on in memory (to later
    /// phases, to SOPS, to a host's environment), never for display.
    pub fn values(&self) -> Map<String, Value> {
        self.0
            .iter()
            .map(|(k, o)| (k.clone(), o.value.clone()))
            .collect()
    }

    /// The non-sensitive values only.
    pub fn public(&self) -> Map<String, Value> {
        self.0
            .iter()
            .filter(|(_, o)| !o.sensitive)
            .map(|(k, o)| (k.clone(), o.value.clone()))
            .collect()
    }

    /// Every output, sensitive values replaced by [`REDACTED`].
    pub fn redacted(&self) -> BTreeMap<String, RedactedOutput> {
        self.0
            .iter()
            .map(|(k, o)| {
                let value = if o.sensitive {
                    Value::String(REDACTED.into())
                } else {
                    o.value.clone()
                };
                (
                    k.clone(),
                    RedactedOutput {
                        value,
                        sensitive: o.sensitive,
                    },
                )
            })
            .collect()
    }

    /// The sensitive values as strings, for scanning text that must not contain them.
    pub fn secret_texts(&self) -> Vec<String> {
        self.0
            .values()
            .filter(|o| o.sensitive)
            .map(|o| match &o.value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .filter(|s| s.len() >= 4)
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedactedOutput {
    pub value: Value,
    pub sensitive: bool,
}

/// Removes every known secret from a text before it is shown or stored.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s.as_str(), REDACTED);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"id": {"sensitive": false, "type": "string", "value": "abc"},
                          "secret": {"sensitive": true, "type": "string", "value": "hunter22"}}"#;

    #[test]
    fn sensitive_values_are_redacted_in_every_view() {
        let o = Outputs::parse(DOC).expect("parse");
        assert_eq!(o.public().len(), 1);
        assert_eq!(o.values()["secret"], "hunter22");
        let shown = serde_json::to_string(&o.redacted()).expect("json");
        assert!(
            !shown.contains("hunter22") && shown.contains(REDACTED),
            "{shown}"
        );
        assert!(!format!("{o:?}").contains("hunter22"));
        assert_eq!(
            scrub("token=hunter22;", &o.secret_texts()),
            "token=(sensitive);"
        );
    }
}
