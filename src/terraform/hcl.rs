//! Variable values written as an HCL var-file (`name = value` lines).
//!
//! JSON var-files are only recognised by a `.json` file name, and the values
//! travel on standard input (`-var-file=/dev/stdin`) so that secrets never
//! touch the disk; so they are written in HCL's own syntax instead.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;

pub fn var_file(vars: &BTreeMap<String, Value>) -> String {
    let mut out = String::new();
    for (name, value) in vars {
        let _ = write!(out, "{name} = ");
        expression(value, &mut out);
        out.push('\n');
    }
    out
}

fn expression(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                expression(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                string(k, out);
                out.push_str(" = ");
                expression(v, out);
            }
            out.push('}');
        }
    }
}

/// A quoted HCL string: JSON-style escapes, plus `$${` and `%%{` so that no
/// value is ever read as a template.
fn string(s: &str, out: &mut String) {
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_become_hcl() {
        let vars: BTreeMap<String, Value> = [
            (
                "a".to_string(),
                json!({"x y": [1, 2.5, null, true], "t": "${not} %{a} $$ \"q\"\n"}),
            ),
            ("b".to_string(), json!("plain")),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            var_file(&vars),
            "a = {\"x y\" = [1, 2.5, null, true], \"t\" = \"$${not} %%{a} $$ \\\"q\\\"\\n\"}\nb = \"plain\"\n"
        );
    }
}
