//! Reading Terraform values (known, null or unknown) into plain Rust, and back.

use std::borrow::Cow;
use tf_provider::schema::{Attribute, AttributeConstraint, AttributeType, Description};
use tf_provider::value::{Value, ValueList, ValueString};
use tf_provider::{AttributePath, Diagnostics};

/// A known string, or `None` for null and unknown.
pub fn text(v: &ValueString) -> Option<String> {
    match v {
        Value::Value(s) => Some(s.to_string()),
        _ => None,
    }
}

/// A string that must be known now (at apply time), else an error on `attr`.
pub fn need_text(diags: &mut Diagnostics, v: &ValueString, attr: &'static str) -> Option<String> {
    let t = text(v);
    if t.is_none() {
        diags.error_short(
            format!("{attr} must be known here"),
            AttributePath::new(attr),
        );
    }
    t
}

/// A known list of known strings.
pub fn strings(v: &ValueList<ValueString>) -> Option<Vec<String>> {
    match v {
        Value::Value(items) => items.iter().map(text).collect(),
        _ => None,
    }
}

pub fn need_strings(
    diags: &mut Diagnostics,
    v: &ValueList<ValueString>,
    attr: &'static str,
) -> Option<Vec<String>> {
    let t = strings(v);
    if t.is_none() {
        diags.error_short(
            format!("{attr} must be known here"),
            AttributePath::new(attr),
        );
    }
    t
}

pub fn string_list<'a>(items: Vec<String>) -> ValueList<ValueString<'a>> {
    Value::Value(
        items
            .into_iter()
            .map(|s| Value::Value(Cow::Owned(s)))
            .collect(),
    )
}

pub fn string<'a>(s: String) -> ValueString<'a> {
    Value::Value(Cow::Owned(s))
}

pub fn optional<T>(v: Option<T>) -> Value<T> {
    v.map(Value::Value).unwrap_or(Value::Null)
}

/// A known value of any plain type, or `None`.
pub fn known<T: Clone>(v: &Value<T>) -> Option<T> {
    match v {
        Value::Value(x) => Some(x.clone()),
        _ => None,
    }
}

/// A schema attribute: its type, whether it is required, optional or
/// computed, and what it is.
pub fn attr(t: AttributeType, c: AttributeConstraint, d: &str) -> Attribute {
    Attribute {
        attr_type: t,
        description: Description::plain(d),
        constraint: c,
        ..Default::default()
    }
}
