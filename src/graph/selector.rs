//! What `--on` (and `--only`, `--skip`, `--force`) may name: a service, a
//! tag (`@web`: every enabled service carrying it) or a glob over names
//! (`wiki*`, `app-?`, `db-[0-9]`). Each selector must name something: a
//! tag nobody carries or a glob that matches no enabled service is an error
//! with what there is, never an empty run.

use super::SelectError;
use crate::manifest::diag::did_you_mean;
use crate::manifest::Manifest;
use std::collections::BTreeSet;

/// A tag: letters, digits, `-`, `_`, `.`, starting with a letter or digit.
pub fn is_tag(text: &str) -> bool {
    text.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// The enabled services `selectors` name, in name order, each once.
pub fn resolve(
    m: &Manifest,
    flag: &'static str,
    selectors: &[String],
) -> Result<Vec<String>, SelectError> {
    let mut out = BTreeSet::new();
    for sel in selectors {
        if let Some(tag) = sel.strip_prefix('@') {
            let tagged: Vec<String> = m
                .enabled()
                .filter(|s| s.tags.iter().any(|t| t == tag))
                .map(|s| s.name.clone())
                .collect();
            if tagged.is_empty() {
                let known: BTreeSet<&str> = m
                    .enabled()
                    .flat_map(|s| s.tags.iter().map(String::as_str))
                    .collect();
                return Err(SelectError::NoMatch {
                    flag,
                    selector: sel.clone(),
                    hint: did_you_mean(
                        sel,
                        known
                            .iter()
                            .map(|t| format!("@{t}"))
                            .collect::<Vec<_>>()
                            .iter()
                            .map(String::as_str),
                    )
                    .or_else(|| {
                        Some(if known.is_empty() {
                            "no enabled service has tags".into()
                        } else {
                            format!(
                                "the tags: {}",
                                known
                                    .iter()
                                    .map(|t| format!("@{t}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        })
                    }),
                });
            }
            out.extend(tagged);
        } else if is_glob(sel) {
            let pattern = glob::Pattern::new(sel).map_err(|e| SelectError::NoMatch {
                flag,
                selector: sel.clone(),
                hint: Some(format!("not a glob: {e}")),
            })?;
            let matched: Vec<String> = m
                .enabled()
                .filter(|s| pattern.matches(&s.name))
                .map(|s| s.name.clone())
                .collect();
            if matched.is_empty() {
                return Err(SelectError::NoMatch {
                    flag,
                    selector: sel.clone(),
                    hint: Some("it matches no enabled service".into()),
                });
            }
            out.extend(matched);
        } else {
            super::named(m, flag, sel)?;
            out.insert(sel.clone());
        }
    }
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_plain_words() {
        assert!(is_tag("web") && is_tag("tier-1") && is_tag("a.b_c"));
        assert!(!is_tag("") && !is_tag("-x") && !is_tag("@web") && !is_tag("a b"));
        assert!(!is_tag(&"a".repeat(65)));
    }
}
