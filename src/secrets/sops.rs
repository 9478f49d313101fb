//! Reading and writing the user's SOPS files with the real `sops`.
//!
//! A file is decrypted once per process, to JSON on a pipe, and kept in
//! memory: the plaintext never touches the disk. Errors name the file and
//! the key path, never a value. Values written back (Terraform outputs) go
//! in with `sops set --value-stdin`, one key at a time and only when they
//! differ, so the user's other keys, their comments and their ciphertexts
//! stay as they were.

use super::{index, Secret, SopsRef};
use crate::manifest::Manifest;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How long one `sops` call may take (age decryption is local and quick).
const LIMIT: Duration = Duration::from_secs(60);

const INSTALL: &str = "scripts/setup.sh puts one in /opt/nixmox/bin; NIXMOX_SOPS names another";

/// The `sops` binary: `NIXMOX_SOPS`, else `sops` from `PATH`.
pub fn binary() -> String {
    std::env::var("NIXMOX_SOPS")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "sops".into())
}

/// What resolving a reference needs from the manifest: its directory, the
/// stack's SOPS file and the age key nixmox decrypts with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    pub dir: PathBuf,
    pub sops_file: Option<String>,
    pub age_key_file: Option<String>,
}

impl Context {
    pub fn of(m: &Manifest) -> Context {
        Context {
            dir: m.dir(),
            sops_file: m.secrets.sops_file.clone(),
            age_key_file: m.secrets.age_key_file.clone(),
        }
    }
}

/// Where a reference's file is, and the age key that opens it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    pub path: PathBuf,
    /// `secrets.age_key_file`, used when `SOPS_AGE_KEY_FILE` is not set.
    pub age_key_file: Option<PathBuf>,
}

impl Source {
    /// The file `r` names (or the stack's `secrets.sops_file`), relative to
    /// the manifest's directory.
    pub fn of(ctx: &Context, r: &SopsRef) -> Result<Source, String> {
        let file = r.file.as_deref().or(ctx.sops_file.as_deref()).ok_or_else(|| {
            format!(
                "the SOPS reference to {} names no file: give it file = \"…\" or set secrets.sops_file",
                r.key.join(".")
            )
        })?;
        Ok(Source {
            path: ctx.dir.join(file),
            age_key_file: ctx.age_key_file.as_ref().map(|k| ctx.dir.join(k)),
        })
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(binary());
        if std::env::var_os("SOPS_AGE_KEY_FILE").is_none() {
            if let Some(k) = &self.age_key_file {
                cmd.env("SOPS_AGE_KEY_FILE", k);
            }
        }
        cmd
    }
}

type Decrypted = Result<Arc<Value>, String>;

/// Every file decrypted so far in this process, by path.
fn cache() -> &'static Mutex<HashMap<PathBuf, Decrypted>> {
    static FILES: OnceLock<Mutex<HashMap<PathBuf, Decrypted>>> = OnceLock::new();
    FILES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Every value resolved so far, for scrubbing text before it is shown.
fn resolved() -> &'static Mutex<Vec<String>> {
    static TEXTS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    TEXTS.get_or_init(|| Mutex::new(Vec::new()))
}

/// The texts of every SOPS value this process has read: whatever nixmox
/// shows or stores is scrubbed of them.
pub fn known_texts() -> Vec<String> {
    resolved().lock().map(|t| t.clone()).unwrap_or_default()
}

/// The value `r` names, decrypted (the file once per process).
pub fn resolve(m: &Manifest, r: &SopsRef) -> Result<Secret, String> {
    resolve_in(&Context::of(m), r)
}

/// [`resolve`] where only the [`Context`] travels (a Terraform phase's spec).
pub fn resolve_in(ctx: &Context, r: &SopsRef) -> Result<Secret, String> {
    let source = Source::of(ctx, r)?;
    let doc = decrypted(&source)?;
    let value = lookup(&doc, &r.key).map_err(|e| format!("{}: {e}", source.path.display()))?;
    let secret = Secret::new(value.clone());
    if let Ok(mut t) = resolved().lock() {
        for s in secret.texts() {
            if !t.contains(&s) {
                t.push(s);
            }
        }
    }
    Ok(secret)
}

/// The whole file, decrypted (from the cache after the first time).
pub fn decrypted(source: &Source) -> Decrypted {
    if let Some(hit) = cache()
        .lock()
        .ok()
        .and_then(|c| c.get(&source.path).cloned())
    {
        return hit;
    }
    let got = decrypt(source).map(Arc::new);
    if let Ok(mut c) = cache().lock() {
        c.insert(source.path.clone(), got.clone());
    }
    got
}

/// Forgets a file's decrypted text (after nixmox wrote to it).
fn forget(path: &Path) {
    if let Ok(mut c) = cache().lock() {
        c.remove(path);
    }
}

fn decrypt(source: &Source) -> Result<Value, String> {
    let path = &source.path;
    if !path.is_file() {
        return Err(format!(
            "the SOPS file {} does not exist (or is not a file)",
            path.display()
        ));
    }
    let mut cmd = source.command();
    cmd.args(["--decrypt", "--output-type", "json", "--"])
        .arg(path);
    let out = crate::process::run_tool(cmd, None, LIMIT, "sops", INSTALL)?;
    if out.code != Some(0) {
        return Err(format!(
            "sops cannot decrypt {}: {}",
            path.display(),
            why(&out.stderr)
        ));
    }
    serde_json::from_str(&out.stdout).map_err(|e| {
        // The error's position, never the text around it.
        format!(
            "sops decrypted {} to something that is not JSON (line {}, column {})",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

/// sops's reason, said in the user's terms. Its messages never hold
/// plaintext; only their first lines are kept.
fn why(stderr: &str) -> String {
    let text = stderr.trim();
    let lower = text.to_ascii_lowercase();
    if lower.contains("error getting data key") || lower.contains("failed to get the data key") {
        return "no key here opens it: point SOPS_AGE_KEY_FILE (or the manifest's secrets.age_key_file) at an age key it is encrypted to".into();
    }
    if lower.contains("sops metadata not found") {
        return "it is not encrypted with SOPS (no sops metadata)".into();
    }
    let first: Vec<&str> = text.lines().take(3).collect();
    if first.is_empty() {
        "sops said nothing".into()
    } else {
        first.join(" ")
    }
}

/// The value at `key` in a decrypted document; the error lists the keys
/// that are there (names, never values) and how far the path got.
pub fn lookup<'a>(doc: &'a Value, key: &[String]) -> Result<&'a Value, String> {
    let mut at = doc;
    for (i, part) in key.iter().enumerate() {
        let next = match at {
            Value::Object(o) => o.get(part),
            Value::Array(a) => part.parse::<usize>().ok().and_then(|n| a.get(n)),
            _ => None,
        };
        let Some(next) = next else {
            let path = key[..=i].join(".");
            let here = match at {
                Value::Object(o) => {
                    let names: Vec<&str> = o
                        .keys()
                        .map(String::as_str)
                        .filter(|k| *k != "sops")
                        .collect();
                    let hint = crate::manifest::diag::did_you_mean(part, names.iter().copied())
                        .map(|s| format!("; {s}"))
                        .unwrap_or_default();
                    let shown: Vec<&str> = names.iter().take(12).copied().collect();
                    let more = if names.len() > shown.len() {
                        ", …"
                    } else {
                        ""
                    };
                    format!(" (there: {}{more}){hint}", shown.join(", "))
                }
                Value::Array(a) => format!(" (a list of {})", a.len()),
                _ => " (a value, not a section)".into(),
            };
            return Err(format!("no key {path}{here}"));
        };
        at = next;
    }
    if at.is_null() {
        return Err(format!("key {} is empty (null)", key.join(".")));
    }
    Ok(at)
}

/// Writes `values` (key path → value) into the SOPS file at `target`,
/// keeping everything else in it: an existing file gets `sops set` for each
/// value that differs; a new one is encrypted whole under the creation
/// rules of the `.sops.yaml` found from `project_dir`. Plaintext only ever
/// travels on pipes. Returns how many values were written.
pub fn write(
    project_dir: &Path,
    target: &Path,
    age_key_file: Option<PathBuf>,
    values: &[(Vec<String>, Value)],
) -> Result<usize, String> {
    let source = Source {
        path: if target.is_absolute() {
            target.to_path_buf()
        } else {
            project_dir.join(target)
        },
        age_key_file,
    };
    if !source.path.exists() {
        let mut doc = Value::Object(Default::default());
        for (key, v) in values {
            insert(&mut doc, key, v.clone());
        }
        encrypt_new(project_dir, &source, &doc)?;
        forget(&source.path);
        return Ok(values.len());
    }
    let doc = decrypted(&source).map_err(|e| {
        format!("{e} (nixmox reads it before writing outputs into it, to keep the other keys)")
    })?;
    let mut written = 0;
    for (key, v) in values {
        if lookup(&doc, key).ok() == Some(v) {
            continue;
        }
        let mut cmd = source.command();
        cmd.current_dir(project_dir)
            .args(["set", "--value-stdin", "--"])
            .arg(&source.path)
            .arg(index(key));
        let out =
            crate::process::run_tool(cmd, Some(v.to_string().as_bytes()), LIMIT, "sops", INSTALL)?;
        if out.code != Some(0) {
            forget(&source.path);
            return Err(format!(
                "sops could not set key {} in {}: {}",
                key.join("."),
                source.path.display(),
                why(&out.stderr)
            ));
        }
        written += 1;
    }
    forget(&source.path);
    Ok(written)
}

/// `doc[key…] = value`, making the sections on the way.
fn insert(doc: &mut Value, key: &[String], value: Value) {
    let Some((last, sections)) = key.split_last() else {
        return;
    };
    let mut at = doc;
    for part in sections {
        if !at.is_object() {
            *at = Value::Object(Default::default());
        }
        let Value::Object(o) = at else { return };
        at = o
            .entry(part.clone())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    if !at.is_object() {
        *at = Value::Object(Default::default());
    }
    if let Value::Object(o) = at {
        o.insert(last.clone(), value);
    }
}

fn encrypt_new(project_dir: &Path, source: &Source, doc: &Value) -> Result<(), String> {
    let target = &source.path;
    let mut cmd = source.command();
    cmd.current_dir(project_dir)
        .args(["--encrypt", "--input-type", "json", "--filename-override"])
        .arg(target)
        .arg("/dev/stdin");
    let out = crate::process::run_tool(
        cmd,
        Some(doc.to_string().as_bytes()),
        LIMIT,
        "sops",
        INSTALL,
    )?;
    if out.code != Some(0) {
        return Err(format!(
            "sops could not encrypt {}: {} (a new SOPS file needs a creation rule in a .sops.yaml at or above {})",
            target.display(),
            why(&out.stderr),
            project_dir.display()
        ));
    }
    crate::files::write_atomic(target, out.stdout.as_bytes(), 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn k(path: &str) -> Vec<String> {
        path.split('.').map(str::to_string).collect()
    }

    #[test]
    fn lookup_walks_sections_and_names_what_is_there() {
        let doc =
            json!({"authentik": {"secret_key": "s3cr3t-value", "tokens": ["a", "b"]}, "sops": {}});
        assert_eq!(
            lookup(&doc, &k("authentik.secret_key")).ok(),
            Some(&json!("s3cr3t-value"))
        );
        assert_eq!(
            lookup(&doc, &k("authentik.tokens.1")).ok(),
            Some(&json!("b"))
        );
        let e = lookup(&doc, &k("authentik.secret_kee")).expect_err("missing");
        assert!(e.contains("no key authentik.secret_kee"), "{e}");
        assert!(e.contains("did you mean 'secret_key'?"), "{e}");
        assert!(!e.contains("s3cr3t-value"), "a value in an error: {e}");
        let e = lookup(&doc, &k("grafana.x")).expect_err("missing");
        assert!(
            e.contains("no key grafana") && e.contains("authentik") && !e.contains("sops,"),
            "{e}"
        );
        let e = lookup(&doc, &k("authentik.secret_key.deeper")).expect_err("missing");
        assert!(e.contains("not a section") && !e.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn insert_makes_sections() {
        let mut doc = json!({"keep": 1});
        insert(
            &mut doc,
            &k("auth-core.outpost_tokens"),
            json!({"ldap": "t"}),
        );
        insert(&mut doc, &k("auth-core.client_ids"), json!({}));
        assert_eq!(
            doc,
            json!({"keep": 1, "auth-core": {"outpost_tokens": {"ldap": "t"}, "client_ids": {}}})
        );
    }

    #[test]
    fn reasons_are_said_plainly() {
        assert!(why("Failed to get the data key required to decrypt the SOPS file.\n\nGroup 0: FAILED\n  age1…: FAILED\nError getting data key: 0 successful groups required, got 0").contains("SOPS_AGE_KEY_FILE"));
        assert!(why("sops metadata not found").contains("not encrypted"));
    }
}
