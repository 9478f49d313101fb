//! Typed reading of the raw manifest tree with error collection.
//!
//! serde's derive stops at the first problem and cannot suggest keys; users
//! want every problem in one run, each with its path. So the schema is walked
//! by hand with these helpers, which record a diagnostic and return `None`
//! instead of failing.

use super::diag::{did_you_mean, Diagnostics, Path};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A human name for a JSON value's type, for "expected X, found Y".
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() != 0.0) => "a fractional number",
        Value::Number(n) if n.is_f64() => "a floating-point number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an attribute set",
    }
}

fn mismatch(diags: &mut Diagnostics, path: &Path, expected: &str, value: &Value) {
    diags.error(
        path,
        format!("expected {expected}, found {}", kind_of(value)),
    );
}

/// Values that can be read from the manifest tree.
pub trait Decode: Sized {
    fn decode(diags: &mut Diagnostics, path: &Path, value: &Value) -> Option<Self>;
}

/// A manifest string is one line of text. Its values end up in command
/// lines, SSH options, SQL, env files and the Caddy and Unbound
/// configuration, where a line break or another control character could
/// start a directive of its own: refused at the root, for every field.
impl Decode for String {
    fn decode(diags: &mut Diagnostics, path: &Path, value: &Value) -> Option<Self> {
        match value {
            Value::String(s) => {
                if let Some(c) = s.chars().find(|c| super::syntax::is_unsafe_char(*c)) {
                    diags.error(
                        path,
                        format!(
                            "{} contains {}: a value here is one line of plain text",
                            super::syntax::quote(s),
                            char_name(c)
                        ),
                    );
                    return None;
                }
                Some(s.clone())
            }
            other => {
                mismatch(diags, path, "a string", other);
                None
            }
        }
    }
}

/// `{ sops = "section.key"; file = "…"; }`: a value kept in a SOPS file.
impl Decode for crate::secrets::SopsRef {
    fn decode(diags: &mut Diagnostics, path: &Path, value: &Value) -> Option<Self> {
        match crate::secrets::SopsRef::parse(value) {
            Ok(r) => Some(r),
            Err(e) => {
                diags.error(path, e);
                None
            }
        }
    }
}

/// Text that may span lines — Nix settings, a Caddy snippet, a shell
/// command — where line breaks and tabs are part of the syntax; every other
/// control character is still refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl Decode for Text {
    fn decode(diags: &mut Diagnostics, path: &Path, value: &Value) -> Option<Self> {
        match value {
            Value::String(s) => {
                if let Some(c) = s
                    .chars()
                    .find(|c| *c != '\n' && *c != '\t' && super::syntax::is_unsafe_char(*c))
                {
                    diags.error(
                        path,
                        format!(
                            "{} contains {}: only line breaks and tabs may be in this text",
                            super::syntax::quote(s),
                            char_name(c)
                        ),
                    );
                    return None;
                }
                Some(Text(s.clone()))
            }
            other => {
                mismatch(diags, path, "a string", other);
                None
            }
        }
    }
}

/// How a refused character is named in a message.
fn char_name(c: char) -> String {
    match c {
        '\n' => "a line break (LF)".into(),
        '\r' => "a carriage return (CR)".into(),
        '\t' => "a tab".into(),
        '\0' => "a NUL byte".into(),
        '\u{1b}' => "an escape character (ESC)".into(),
        c if c.is_control() => format!("the control character U+{:04X}", c as u32),
        c => format!("the invisible formatting character U+{:04X}", c as u32),
    }
}

impl Decode for bool {
    fn decode(diags: &mut Diagnostics, path: &Path, value: &Value) -> Option<Self> {
        match value {
            Value::Bool(b) => Some(*b),
            other => {
                mismatch(diags, path, "a boolean (true or false)", other);
                None
            }
        }
    }
}

macro_rules! decode_unsigned {
    ($($t:ty),*) => {$(
        impl Decode for $t {
            fn decode(diags: &mut Diagnostics, path: &Path, value: &Value) -> Option<Self> {
                let Value::Number(n) = value else {
                    mismatch(diags, path, "an integer", value);
                    return None;
                };
                match n.as_u64().map(<$t>::try_from) {
                    Some(Ok(v)) => Some(v),
                    _ if n.is_f64() => {
                        mismatch(diags, path, "an integer", value);
                        None
                    }
                    _ => {
                        diags.error(path, format!(
                            "{n} is out of range: expected an integer from 0 to {}", <$t>::MAX));
                        None
                    }
                }
            }
        }
    )*};
}
decode_unsigned!(u16, u32, u64);

impl<T: Decode> Decode for Vec<T> {
    fn decode(diags: &mut Diagnostics, path: &Path, value: &Value) -> Option<Self> {
        let Value::Array(items) = value else {
            mismatch(diags, path, "a list", value);
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match T::decode(diags, &path.index(i), item) {
                Some(v) => out.push(v),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

impl<T: Decode> Decode for BTreeMap<String, T> {
    fn decode(diags: &mut Diagnostics, path: &Path, value: &Value) -> Option<Self> {
        let Value::Object(map) = value else {
            mismatch(diags, path, "an attribute set", value);
            return None;
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (k, v) in map {
            match T::decode(diags, &path.key(k), v) {
                Some(v) => {
                    out.insert(k.clone(), v);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

/// Any JSON value, taken as it is (Terraform variables, free-form maps).
impl Decode for Value {
    fn decode(_: &mut Diagnostics, _: &Path, value: &Value) -> Option<Self> {
        Some(value.clone())
    }
}

/// An attribute set being read: knows its path, rejects unknown keys up front
/// (with a did-you-mean), and reads fields by name.
pub struct Obj<'a> {
    pub path: Path,
    pub map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    /// Opens `value` as an attribute set whose allowed keys are `known`.
    pub fn open(
        diags: &mut Diagnostics,
        path: Path,
        value: &'a Value,
        known: &[&str],
    ) -> Option<Obj<'a>> {
        let Value::Object(map) = value else {
            mismatch(diags, &path, "an attribute set", value);
            return None;
        };
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                let hint = did_you_mean(key, known.iter().copied())
                    .or_else(|| Some(format!("allowed keys: {}", known.join(", "))));
                diags.error_hint(&path.key(key), "unknown key", hint);
            }
        }
        Some(Obj { path, map })
    }

    pub fn at(&self, key: &str) -> Path {
        self.path.key(key)
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|v| !v.is_null())
    }

    /// The raw value of a key; `null` counts as absent (Nix users write `null` for "unset").
    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// An optional field: `None` when absent or invalid (invalid is reported).
    pub fn opt<T: Decode>(&self, diags: &mut Diagnostics, key: &str) -> Option<T> {
        self.raw(key)
            .and_then(|v| T::decode(diags, &self.at(key), v))
    }

    /// A field with a default when absent.
    pub fn or<T: Decode>(&self, diags: &mut Diagnostics, key: &str, default: T) -> T {
        match self.raw(key) {
            None => default,
            Some(v) => T::decode(diags, &self.at(key), v).unwrap_or(default),
        }
    }

    /// A required field: reports when it is missing.
    pub fn req<T: Decode>(&self, diags: &mut Diagnostics, key: &str, what: &str) -> Option<T> {
        match self.raw(key) {
            None => {
                diags.error(&self.at(key), format!("missing required {what}"));
                None
            }
            Some(v) => T::decode(diags, &self.at(key), v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn type_errors_name_path_and_types() {
        let mut d = Diagnostics::default();
        let v = json!({"ports": [80, "443", 70000], "port": 1});
        let obj = Obj::open(&mut d, Path::root().key("svc"), &v, &["ports"]).expect("object");
        let ports: Option<Vec<u16>> = obj.opt(&mut d, "ports");
        assert!(ports.is_none());
        let (errors, _) = d.into_sorted();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                "error: svc.port: unknown key (did you mean 'ports'?)".to_string(),
                "error: svc.ports[1]: expected an integer, found a string".to_string(),
                "error: svc.ports[2]: 70000 is out of range: expected an integer from 0 to 65535"
                    .to_string(),
            ]
        );
    }

    #[test]
    fn fractions_and_negatives_are_rejected() {
        let mut d = Diagnostics::default();
        assert_eq!(u32::decode(&mut d, &Path::root(), &json!(2.5)), None);
        assert_eq!(u32::decode(&mut d, &Path::root(), &json!(-1)), None);
        assert_eq!(d.error_count(), 2);
    }
}
