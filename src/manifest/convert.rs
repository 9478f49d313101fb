//! YAML and TOML trees into the one JSON tree every later step reads,
//! refusing what would otherwise change on the way without a word: numbers
//! that are not finite (`.nan`, `inf`), integers beyond 64 bits, YAML tags
//! (`!!python/object`, `!secret`, any other), keys that are not strings or
//! integers. Each refusal names where in the document it is.
//!
//! serde_yaml_ng drops the `!!` tags it does not know before a tree is
//! built, so YAML text is first scanned for tags with an event parser.

use serde_json::{Map, Value};

/// Where in the document a value sits, for messages (`services.wiki.ports[1]`).
fn at(path: &[String]) -> String {
    if path.is_empty() {
        "the top level".into()
    } else {
        let mut out = String::new();
        for p in path {
            if p.starts_with('[') || out.is_empty() {
                out.push_str(p);
            } else {
                out.push('.');
                out.push_str(p);
            }
        }
        out
    }
}

/// Integers from i64::MIN to u64::MAX are kept exactly; floats beyond that
/// range with no fraction were integers too large to hold.
const U64_LIMIT: f64 = 18_446_744_073_709_551_616.0;
const I64_FLOOR: f64 = -9_223_372_036_854_775_808.0;

/// A floating-point number as JSON, or why it cannot be one.
pub fn number(v: f64) -> Result<Value, String> {
    if v.is_nan() {
        return Err("a value is NaN (not a number): write a number".into());
    }
    if v.is_infinite() {
        return Err(format!(
            "a value is {}infinity: write a finite number",
            if v < 0.0 { "minus " } else { "" }
        ));
    }
    if v.fract() == 0.0 && !(I64_FLOOR..U64_LIMIT).contains(&v) {
        return Err(format!(
            "the number {v:e} is an integer beyond 64 bits: no setting takes one that large"
        ));
    }
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .ok_or_else(|| format!("{v} cannot be represented"))
}

fn located(path: &[String], e: String) -> String {
    format!("at {}: {e}", at(path))
}

/// The first tag in a YAML text, and the (1-based) line of the node it is on.
/// Syntax errors are left to the parser that builds the tree.
pub fn yaml_tag(text: &str) -> Option<(String, usize)> {
    use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
    use yaml_rust2::scanner::Marker;
    struct First(Option<(String, usize)>);
    impl MarkedEventReceiver for First {
        fn on_event(&mut self, ev: Event, m: Marker) {
            if self.0.is_some() {
                return;
            }
            if let Event::Scalar(_, _, _, Some(t))
            | Event::SequenceStart(_, Some(t))
            | Event::MappingStart(_, Some(t)) = ev
            {
                let shown = if t.handle == "tag:yaml.org,2002:" {
                    format!("!!{}", t.suffix)
                } else {
                    format!("{}{}", t.handle, t.suffix)
                };
                self.0 = Some((shown, m.line()));
            }
        }
    }
    let mut first = First(None);
    let _ = Parser::new_from_str(text).load(&mut first, true);
    first.0
}

/// A YAML document as JSON.
pub fn yaml(v: serde_yaml_ng::Value, path: &mut Vec<String>) -> Result<Value, String> {
    use serde_yaml_ng::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                number(n.as_f64().unwrap_or(f64::NAN)).map_err(|e| located(path, e))?
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                path.push(format!("[{i}]"));
                out.push(yaml(item, path)?);
                path.pop();
            }
            Value::Array(out)
        }
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, item) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
                    Y::Tagged(t) => {
                        return Err(located(
                            path,
                            format!(
                                "a key carries the YAML tag {}: tags are not accepted",
                                t.tag
                            ),
                        ))
                    }
                    other => {
                        return Err(located(
                            path,
                            format!(
                                "a key is {}: keys must be strings",
                                match other {
                                    Y::Null => "null",
                                    Y::Bool(_) => "a boolean",
                                    Y::Number(_) => "a fractional number",
                                    _ => "a list or a mapping",
                                }
                            ),
                        ))
                    }
                };
                path.push(key.clone());
                let value = yaml(item, path)?;
                path.pop();
                out.insert(key, value);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => {
            return Err(located(
                path,
                format!(
                "the value carries the YAML tag {}: tags are not accepted (write the plain value)",
                t.tag
            ),
            ))
        }
    })
}

/// A TOML document as JSON; dates and times become strings, as every
/// other format gives them.
pub fn toml(v: toml::Value, path: &mut Vec<String>) -> Result<Value, String> {
    use toml::Value as T;
    Ok(match v {
        T::String(s) => Value::String(s),
        T::Integer(i) => Value::from(i),
        T::Float(f) => number(f).map_err(|e| located(path, e))?,
        T::Boolean(b) => Value::Bool(b),
        T::Datetime(d) => Value::String(d.to_string()),
        T::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                path.push(format!("[{i}]"));
                out.push(toml(item, path)?);
                path.pop();
            }
            Value::Array(out)
        }
        T::Table(table) => {
            let mut out = Map::new();
            for (k, item) in table {
                path.push(k.clone());
                let value = toml(item, path)?;
                path.pop();
                out.insert(k, value);
            }
            Value::Object(out)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(text: &str) -> Result<Value, String> {
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).expect("yaml");
        yaml(v, &mut Vec::new())
    }

    fn t(text: &str) -> Result<Value, String> {
        let v: toml::Value = ::toml::from_str(text).expect("toml");
        toml(v, &mut Vec::new())
    }

    #[test]
    fn yaml_refuses_what_json_would_change() {
        assert_eq!(
            y("a: {b: [1, 2.5, x]}").expect("plain"),
            serde_json::json!({"a": {"b": [1, 2.5, "x"]}})
        );
        let e = y("services:\n  wiki:\n    cores: .nan\n").expect_err("nan");
        assert_eq!(
            e,
            "at services.wiki.cores: a value is NaN (not a number): write a number"
        );
        assert!(y("x: [1, -.inf]")
            .expect_err("inf")
            .starts_with("at x[1]: a value is minus infinity"));
        let e = y("big: 1.0e23").expect_err("big");
        assert!(
            e.starts_with("at big: the number 1e23 is an integer beyond 64 bits"),
            "{e}"
        );
        assert!(y("x: !secret abc")
            .expect_err("custom tag")
            .contains("!secret"));
        assert!(y("? [1, 2]\n: x\n")
            .expect_err("list key")
            .contains("keys must be strings"));
        assert_eq!(
            y("80: web").expect("int key"),
            serde_json::json!({"80": "web"})
        );
    }

    #[test]
    fn every_yaml_tag_is_found() {
        assert_eq!(
            yaml_tag("a: 1\nx: !!python/object:os.system {}\n"),
            Some(("!!python/object:os.system".into(), 2))
        );
        assert_eq!(
            yaml_tag("x: [1, !secret abc]").map(|t| t.0),
            Some("!secret".into())
        );
        assert_eq!(
            yaml_tag("a: !!binary aGk=").map(|t| t.0),
            Some("!!binary".into())
        );
        // A '!' in a quoted string, a comment or a block scalar is no tag.
        assert_eq!(
            yaml_tag("a: 'x!y' # !c\nb: |\n  !not a tag\nc: pass!word\n"),
            None
        );
    }

    #[test]
    fn toml_refuses_non_finite_numbers_and_keeps_dates() {
        assert!(t("[a]\nb = nan\n")
            .expect_err("nan")
            .starts_with("at a.b: a value is NaN"));
        assert!(t("x = [1.0, -inf]\n")
            .expect_err("inf")
            .starts_with("at x[1]: a value is minus infinity"));
        assert_eq!(
            t("built = 2026-11-26T03:48:00Z\n[x]\nday = 2026-11-26\n").expect("dates"),
            serde_json::json!({"built": "2026-11-26T03:48:00Z", "x": {"day": "2026-11-26"}})
        );
    }

    #[test]
    fn numbers_keep_64_bit_integers_only() {
        assert!(number(2.5).is_ok());
        assert!(number(1e19).is_ok(), "below 2^64");
        assert!(number(2e19).is_err());
        assert!(number(-1e19).is_err());
    }
}
