//! Diagnostics: what validation found, each tied to the manifest path it concerns.
//!
//! Validation never stops at the first problem: every rule adds to one
//! [`Diagnostics`] collection so the user can fix the whole manifest in one pass.

use serde::Serialize;
use std::collections::HashSet;
use std::fmt;

/// Whether a finding blocks the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A location in the manifest, written the way users read it:
/// `services.wiki.depends_on[1]`, `services."my app".ip`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Path(String);

impl Path {
    pub fn root() -> Self {
        Path(String::new())
    }

    /// The path of a key below this one; keys that are not plain identifiers are quoted.
    pub fn key(&self, key: &str) -> Path {
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        // A key of absurd length is cut so that one bad key cannot flood the terminal.
        const MAX_KEY_CHARS: usize = 80;
        let key: std::borrow::Cow<str> = if key.chars().count() > MAX_KEY_CHARS {
            format!("{}…", key.chars().take(MAX_KEY_CHARS).collect::<String>()).into()
        } else {
            key.into()
        };
        let segment = if plain {
            key.into_owned()
        } else {
            format!("\"{}\"", super::syntax::escape(&key))
        };
        if self.0.is_empty() {
            Path(segment)
        } else {
            Path(format!("{}.{}", self.0, segment))
        }
    }

    pub fn index(&self, index: usize) -> Path {
        Path(format!("{}[{}]", self.0, index))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &Path) -> bool {
        self.0 == other.0
            || (self.0.starts_with(&other.0)
                && matches!(
                    self.0.as_bytes().get(other.0.len()),
                    Some(b'.') | Some(b'[')
                ))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(top level)")
        } else {
            f.write_str(&self.0)
        }
    }
}

impl Serialize for Path {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub path: Path,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {}: {}", self.path, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// Everything validation found, plus which paths already failed so that later
/// rules do not pile follow-on errors onto a value that was never read.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
    failed: HashSet<Path>,
    errors_kept: usize,
    warnings_kept: usize,
    errors_dropped: usize,
    warnings_dropped: usize,
}

/// Findings of one kind shown at most; the rest are counted ("and 12 more").
pub const MAX_SHOWN: usize = 100;

impl Diagnostics {
    pub fn error(&mut self, path: &Path, message: impl Into<String>) {
        self.push(Severity::Error, path, message.into(), None);
    }

    pub fn error_hint(&mut self, path: &Path, message: impl Into<String>, hint: Option<String>) {
        self.push(Severity::Error, path, message.into(), hint);
    }

    pub fn warning(&mut self, path: &Path, message: impl Into<String>) {
        self.push(Severity::Warning, path, message.into(), None);
    }

    /// Records a finding. Whatever a message quotes is escaped again here, so
    /// no value of the manifest reaches a terminal or JSON as raw control
    /// characters. Past [`MAX_SHOWN`] findings of a kind only the count grows.
    fn push(&mut self, severity: Severity, path: &Path, message: String, hint: Option<String>) {
        if severity == Severity::Error {
            self.failed.insert(path.clone());
        }
        let kept = match severity {
            Severity::Error => &mut self.errors_kept,
            Severity::Warning => &mut self.warnings_kept,
        };
        if *kept >= MAX_SHOWN {
            match severity {
                Severity::Error => self.errors_dropped += 1,
                Severity::Warning => self.warnings_dropped += 1,
            }
            return;
        }
        *kept += 1;
        self.items.push(Diagnostic {
            severity,
            path: path.clone(),
            message: super::syntax::one_line(&message),
            hint: hint.map(|h| super::syntax::one_line(&h)),
        });
    }

    /// True when an error was recorded at exactly this path.
    pub fn failed(&self, path: &Path) -> bool {
        self.failed.contains(path)
    }

    pub fn has_errors(&self) -> bool {
        !self.failed.is_empty()
    }

    pub fn error_count(&self) -> usize {
        self.errors_kept + self.errors_dropped
    }

    /// True once no more errors are shown (only counted).
    pub fn errors_full(&self) -> bool {
        self.errors_kept >= MAX_SHOWN
    }

    /// Errors and warnings found in all, shown or not.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.errors_kept + self.errors_dropped,
            self.warnings_kept + self.warnings_dropped,
        )
    }

    /// Errors first, each group in the order found (which follows the
    /// manifest); a group cut at [`MAX_SHOWN`] ends with one line that says
    /// how many more there were.
    pub fn into_sorted(self) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
        let (mut errors, mut warnings): (Vec<_>, Vec<_>) = self
            .items
            .into_iter()
            .partition(|d| d.severity == Severity::Error);
        for (list, dropped, severity, what) in [
            (&mut errors, self.errors_dropped, Severity::Error, "error"),
            (
                &mut warnings,
                self.warnings_dropped,
                Severity::Warning,
                "warning",
            ),
        ] {
            if dropped > 0 {
                list.push(Diagnostic {
                    severity,
                    path: Path::root(),
                    message: format!(
                        "and {dropped} more {what}{} not shown (the first {MAX_SHOWN} are above)",
                        if dropped == 1 { "" } else { "s" }
                    ),
                    hint: None,
                });
            }
        }
        (errors, warnings)
    }
}

/// Words and candidates longer than this are not compared: nobody misspells a
/// paragraph, and the comparison takes time quadratic in the length.
const MAX_SUGGESTION_CHARS: usize = 128;

/// The closest candidate to a misspelt word, if one is close enough to be a
/// plausible typo. Case and `-`/`_` differences count as nearly equal, so
/// `dependsOn` and `depends-on` both suggest `depends_on`.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let too_long = |s: &str| s.chars().nth(MAX_SUGGESTION_CHARS).is_some();
    if too_long(word) {
        return None;
    }
    let fold = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let folded = fold(word);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates.into_iter().filter(|c| !too_long(c)) {
        let distance = if fold(candidate) == folded {
            0
        } else {
            strsim::damerau_levenshtein(&folded, &fold(candidate))
        };
        let limit = (candidate.chars().count().max(word.chars().count()) / 3).max(1);
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, c)| format!("did you mean '{c}'?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_quote_odd_keys() {
        let p = Path::root()
            .key("services")
            .key("my app")
            .key("depends_on")
            .index(1);
        assert_eq!(p.as_str(), "services.\"my app\".depends_on[1]");
        assert!(p.starts_with(&Path::root().key("services")));
        assert!(!Path::root()
            .key("servicesx")
            .starts_with(&Path::root().key("services")));
    }

    #[test]
    fn suggestions_catch_typos_and_spelling_styles() {
        let keys = ["depends_on", "hostname", "ip", "ports"];
        assert_eq!(
            did_you_mean("dependsOn", keys).as_deref(),
            Some("did you mean 'depends_on'?")
        );
        assert_eq!(
            did_you_mean("hostnme", keys).as_deref(),
            Some("did you mean 'hostname'?")
        );
        assert_eq!(
            did_you_mean("port", keys).as_deref(),
            Some("did you mean 'ports'?")
        );
        assert_eq!(did_you_mean("completely_else", keys), None);
    }

    #[test]
    fn huge_words_are_not_compared() {
        let huge = "depends_on".repeat(100_000);
        assert_eq!(did_you_mean(&huge, ["depends_on", huge.as_str()]), None);
        assert_eq!(
            did_you_mean("depends_onn", [huge.as_str(), "depends_on"]).as_deref(),
            Some("did you mean 'depends_on'?")
        );
    }
}
