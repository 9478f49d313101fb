//! Secrets the manifest names rather than holds.
//!
//! Wherever the manifest takes a secret (a Terraform variable, a value in a
//! host's env file, the verification user's password, a database password
//! for `verify`, the age key sent to hosts) it may write a reference to a
//! value in a SOPS file instead:
//!
//! ```nix
//! { sops = "authentik.secret_key"; }                        # in secrets.sops_file
//! { sops = [ "grafana" "oidc.secret" ]; file = "../secrets/grafana.yaml"; }
//! ```
//!
//! The reference is what the manifest, the plan, the state and every log
//! hold; the value is decrypted in memory by the real `sops` (see [`sops`])
//! only where it is used.

pub mod check;
pub mod sops;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// A value in a SOPS file: the file (relative to the manifest's directory;
/// `None` means the stack's `secrets.sops_file`) and the key path inside it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SopsRef {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub key: Vec<String>,
}

impl SopsRef {
    /// Whether a manifest value is written as a reference: an attribute set
    /// with `sops` and at most `file` beside it.
    pub fn is_ref(value: &Value) -> bool {
        value
            .as_object()
            .is_some_and(|o| o.contains_key("sops") && o.keys().all(|k| k == "sops" || k == "file"))
    }

    /// Reads `{ sops = "a.b" | [ "a" "b" ]; file = "…"; }`; the error names
    /// what is wrong with it (never a value: a reference holds none).
    pub fn parse(value: &Value) -> Result<SopsRef, String> {
        let Some(obj) = value.as_object() else {
            return Err("a SOPS reference is an attribute set { sops = \"section.key\"; }".into());
        };
        if let Some(extra) = obj.keys().find(|k| *k != "sops" && *k != "file") {
            return Err(format!(
                "unknown attribute {extra:?} in a SOPS reference: it takes sops (the key path) and file"
            ));
        }
        let key: Vec<String> = match obj.get("sops") {
            Some(Value::String(s)) => s.split('.').map(str::to_string).collect(),
            Some(Value::Array(parts)) => parts
                .iter()
                .map(|p| {
                    p.as_str().map(str::to_string).ok_or_else(|| {
                        "sops = [ … ]: every part of the key path is a string".to_string()
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(
                    "sops takes the key path: \"section.key\", or a list [ \"section\" \"key.with.dots\" ]"
                        .into(),
                )
            }
            None => return Err("a SOPS reference needs sops (the key path)".into()),
        };
        if key.is_empty() || key.iter().any(|k| k.is_empty()) {
            return Err("the key path has an empty part".into());
        }
        if key
            .iter()
            .any(|k| k.chars().any(crate::manifest::syntax::is_unsafe_char))
        {
            return Err("the key path holds a control character".into());
        }
        let file = match obj.get("file") {
            None | Some(Value::Null) => None,
            Some(Value::String(f)) => {
                crate::manifest::syntax::argument(f)?;
                if f.chars().any(crate::manifest::syntax::is_unsafe_char) {
                    return Err("the file name holds a control character".into());
                }
                Some(f.clone())
            }
            Some(_) => return Err("file is the SOPS file's path, a string".into()),
        };
        Ok(SopsRef { file, key })
    }

    /// sops's own index syntax, `["a"]["b"]`, for `sops set`.
    pub fn index(&self) -> String {
        index(&self.key)
    }
}

/// `["a"]["b"]` for a key path: each part as a JSON string, so a quote or a
/// bracket in a key stays part of the key.
pub fn index(key: &[String]) -> String {
    key.iter()
        .map(|k| format!("[{}]", Value::String(k.clone())))
        .collect()
}

impl fmt::Display for SopsRef {
    /// `key a.b in file F` (or `in secrets.sops_file`): how errors name it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key {}", self.key.join("."))?;
        match &self.file {
            Some(file) => write!(f, " of {file}"),
            None => write!(f, " of secrets.sops_file"),
        }
    }
}

/// A decrypted value: its text is reachable only through [`Secret::expose`],
/// and neither `Debug` nor `Display` shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Value);

impl Secret {
    pub fn new(value: Value) -> Self {
        Secret(value)
    }

    /// The value as JSON (a Terraform variable may be a map).
    pub fn expose(&self) -> &Value {
        &self.0
    }

    /// The value as one text: a string as it is, anything else as JSON.
    pub fn text(&self) -> String {
        match &self.0 {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    /// Every string inside (and the whole), for scrubbing text that must not hold them.
    pub fn texts(&self) -> Vec<String> {
        fn walk(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::String(s) => out.push(s.clone()),
                Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                Value::Object(o) => o.values().for_each(|x| walk(x, out)),
                Value::Number(n) => out.push(n.to_string()),
                _ => {}
            }
        }
        let mut out = vec![self.text()];
        walk(&self.0, &mut out);
        out.retain(|s| s.len() >= 4);
        out.sort();
        out.dedup();
        out
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_read_both_spellings() {
        let r = SopsRef::parse(&json!({"sops": "authentik.secret_key"})).expect("ref");
        assert_eq!(r.key, ["authentik", "secret_key"]);
        assert_eq!(r.file, None);
        let r = SopsRef::parse(&json!({"sops": ["grafana", "oidc.secret"], "file": "s.yaml"}))
            .expect("ref");
        assert_eq!(r.key, ["grafana", "oidc.secret"]);
        assert_eq!(r.index(), r#"["grafana"]["oidc.secret"]"#);
        assert_eq!(r.to_string(), "key grafana.oidc.secret of s.yaml");
    }

    #[test]
    fn bad_references_say_why() {
        for (v, want) in [
            (json!({"sops": ""}), "empty part"),
            (json!({"sops": "a..b"}), "empty part"),
            (json!({"sops": 3}), "key path"),
            (json!({"sops": "a", "file": "-x"}), "-"),
            (json!({"sops": "a", "fiel": "x"}), "unknown attribute"),
            (json!({"sops": "a\nb"}), "control"),
        ] {
            let e = SopsRef::parse(&v).expect_err("refused");
            assert!(e.contains(want), "{v}: {e}");
        }
        assert!(SopsRef::is_ref(&json!({"sops": "a"})));
        assert!(!SopsRef::is_ref(&json!({"sops": "a", "other": 1})));
        assert!(!SopsRef::is_ref(&json!("a")));
    }

    #[test]
    fn a_secret_never_shows_itself() {
        let s = Secret::new(json!({"token": "hunter22-long", "n": 12345}));
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        let t = s.texts();
        assert!(t.contains(&"hunter22-long".to_string()));
        assert!(t.contains(&"12345".to_string()));
    }
}
