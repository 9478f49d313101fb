//! One private working directory per workspace, under `.nixmox/terraform/`.
//!
//! The phase's modules are copied in (a `.nix` module is evaluated to
//! `*.tf.json`), so the same module used by two phases or two services never
//! shares `.terraform`, a selected workspace or local state with another, and
//! two phases may run at once.

use regex::Regex;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// What a working directory keeps between runs; everything else is the
/// module copy and is laid anew each time.
const KEPT: &[&str] = &[
    ".terraform",
    ".terraform.lock.hcl",
    "terraform.tfstate",
    "terraform.tfstate.backup",
    "terraform.tfstate.d",
];

/// Names never copied from a user's module directory.
const SKIPPED: &[&str] = &[
    ".terraform",
    "terraform.tfstate",
    "terraform.tfstate.backup",
    "terraform.tfstate.d",
    ".git",
];

pub struct Prepared {
    pub dir: PathBuf,
    /// Variables the configuration declares.
    pub declared: BTreeSet<String>,
    /// Changes whenever any module file changes: decides when to re-run `init`.
    pub fingerprint: String,
}

/// Lays out `root/<workspace>` from `modules` (paths relative to `base`).
/// `.nix` modules that are functions are called with `nix_inputs` (no secrets).
pub fn prepare(
    root: &Path,
    workspace: &str,
    modules: &[String],
    base: &Path,
    nix_inputs: &Value,
) -> Result<Prepared, String> {
    let dir = root.join(workspace);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    clear(&dir)?;
    let mut placed: BTreeMap<PathBuf, String> = BTreeMap::new();
    for module in modules {
        let src = base.join(module);
        let meta = std::fs::metadata(&src)
            .map_err(|e| format!("module {module} ({}): {e}", src.display()))?;
        if meta.is_dir() {
            copy_tree(&src, &dir, Path::new(""), module, &mut placed)?;
        } else {
            let name = src.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if let Some(stem) = name.strip_suffix(".nix") {
                let rendered = render_nix(&src, &dir, nix_inputs, module)?;
                place(
                    &dir,
                    Path::new(&format!("{stem}.tf.json")),
                    rendered.as_bytes(),
                    module,
                    &mut placed,
                )?;
            } else if name.ends_with(".tf") || name.ends_with(".tf.json") {
                let bytes = crate::files::read_regular(
                    &src,
                    MODULE_FILE_LIMIT,
                    &format!("module {module}:"),
                )?;
                place(&dir, Path::new(name), &bytes, module, &mut placed)?;
            } else {
                return Err(format!(
                    "module {module}: a module file must end in .tf, .tf.json or .nix"
                ));
            }
        }
    }
    let mut declared = BTreeSet::new();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for rel in placed.keys() {
        let bytes = std::fs::read(dir.join(rel))
            .map_err(|e| format!("cannot read back {}: {e}", rel.display()))?;
        rel.hash(&mut hasher);
        bytes.hash(&mut hasher);
        if rel.parent().is_none_or(|p| p.as_os_str().is_empty()) {
            declared.extend(declared_variables(rel, &String::from_utf8_lossy(&bytes)));
        }
    }
    Ok(Prepared {
        dir,
        declared,
        fingerprint: format!("{:016x}", hasher.finish()),
    })
}

fn clear(dir: &Path) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if KEPT.iter().any(|k| name == *k) {
            continue;
        }
        let path = entry.path();
        let result = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        result.map_err(|e| format!("cannot clear {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The largest file a module may hold: no Terraform file comes close, and
/// a link to `/dev/zero` or a huge file must not eat the machine.
const MODULE_FILE_LIMIT: u64 = 64 * 1024 * 1024;

/// How deep a module's directories may nest (a symlink loop ends here).
const MODULE_DEPTH_LIMIT: usize = 32;

fn copy_tree(
    src: &Path,
    dest_root: &Path,
    rel: &Path,
    module: &str,
    placed: &mut BTreeMap<PathBuf, String>,
) -> Result<(), String> {
    if rel.components().count() > MODULE_DEPTH_LIMIT {
        return Err(format!(
            "module {module}: {} is nested more than {MODULE_DEPTH_LIMIT} directories deep (a symlink loop?)",
            src.display()
        ));
    }
    let mut entries: Vec<_> = std::fs::read_dir(src)
        .map_err(|e| format!("module {module}: cannot list {}: {e}", src.display()))?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if SKIPPED.iter().any(|s| name == *s) {
            continue;
        }
        let path = entry.path();
        let rel_path = rel.join(&name);
        if path.is_dir() {
            copy_tree(&path, dest_root, &rel_path, module, placed)?;
        } else {
            let bytes =
                crate::files::read_regular(&path, MODULE_FILE_LIMIT, &format!("module {module}:"))?;
            place(dest_root, &rel_path, &bytes, module, placed)?;
        }
    }
    Ok(())
}

fn place(
    root: &Path,
    rel: &Path,
    bytes: &[u8],
    module: &str,
    placed: &mut BTreeMap<PathBuf, String>,
) -> Result<(), String> {
    if let Some(other) = placed.get(rel) {
        return Err(format!(
            "modules {other} and {module} both provide {}: rename one",
            rel.display()
        ));
    }
    let dest = root.join(rel);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(&dest, bytes).map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
    placed.insert(rel.to_path_buf(), module.to_string());
    Ok(())
}

/// A Terranix-style module: Nix that evaluates to Terraform JSON.
fn render_nix(src: &Path, dir: &Path, inputs: &Value, module: &str) -> Result<String, String> {
    let inputs_file = dir.join(".nixmox-inputs.json");
    std::fs::write(&inputs_file, inputs.to_string())
        .map_err(|e| format!("cannot write {}: {e}", inputs_file.display()))?;
    let value = crate::manifest::source::eval_nix_file(src, Some(&inputs_file))
        .map_err(|e| format!("module {module}: {e}"));
    let _ = std::fs::remove_file(&inputs_file);
    let value = value?;
    if !value.is_object() {
        return Err(format!(
            "module {module}: a .nix module must evaluate to an attribute set of Terraform JSON"
        ));
    }
    serde_json::to_string_pretty(&value).map_err(|e| format!("module {module}: {e}"))
}

/// `variable "name"` blocks of `.tf` files and `variable` objects of `.tf.json` files.
pub fn declared_variables(file: &Path, text: &str) -> BTreeSet<String> {
    static HCL: OnceLock<Option<Regex>> = OnceLock::new();
    let name = file.to_string_lossy();
    if name.ends_with(".tf.json") {
        let Ok(doc) = serde_json::from_str::<Value>(text) else {
            return BTreeSet::new();
        };
        let vars = &doc["variable"];
        return match vars {
            Value::Object(map) => map.keys().cloned().collect(),
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_object)
                .flat_map(|m| m.keys().cloned())
                .collect(),
            _ => BTreeSet::new(),
        };
    }
    if !name.ends_with(".tf") {
        return BTreeSet::new();
    }
    let Some(re) = HCL
        .get_or_init(|| Regex::new(r#"(?m)^\s*variable\s+"([A-Za-z_][A-Za-z0-9_-]*)"\s*\{"#).ok())
    else {
        return BTreeSet::new();
    };
    re.captures_iter(text)
        .filter_map(|c| c.get(1))
        .map(|m| m.as_str().to_string())
        .collect()
}

/// The configuration files of a prepared working directory (everything but
/// what [`KEPT`] names), relative path → text: a secret-free record of what
/// was applied, from which the same configuration can be laid out again.
pub fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name();
            if dir == root && KEPT.iter().any(|k| name == *k) {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if let (Ok(rel), Ok(text)) = (p.strip_prefix(root), std::fs::read_to_string(&p))
            {
                out.insert(rel.display().to_string(), text);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Lays a [`snapshot`] out in `dir` (which is emptied first).
pub fn restore(dir: &Path, files: &BTreeMap<String, String>) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(dir);
    for (rel, text) in files {
        if rel.split('/').any(|part| part == "..") {
            return Err(format!(
                "refusing a snapshot path that leaves its directory: {rel}"
            ));
        }
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_declared_variables() {
        let tf = "variable \"hosts\" {}\n  variable \"name\" {\n type = string\n}\n# variable \"nope\" {}\nresource \"x\" \"variable\" {}\n";
        let got = declared_variables(Path::new("main.tf"), tf);
        assert_eq!(got.into_iter().collect::<Vec<_>>(), ["hosts", "name"]);
        let json = r#"{"variable": {"a": {}, "b": {"type": "string"}}}"#;
        assert_eq!(declared_variables(Path::new("x.tf.json"), json).len(), 2);
    }

    #[test]
    fn modules_are_copied_privately_and_stale_files_removed() {
        let src = tempfile::tempdir().expect("tempdir");
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(src.path().join("m/sub")).expect("mkdir");
        std::fs::write(src.path().join("m/main.tf"), "variable \"a\" {}\n").expect("write");
        std::fs::write(src.path().join("m/sub/x.tf"), "").expect("write");
        std::fs::write(src.path().join("m/terraform.tfstate"), "user state").expect("write");
        std::fs::write(src.path().join("extra.tf"), "variable \"b\" {}\n").expect("write");
        let p = prepare(
            root.path(),
            "ws",
            &["m".into(), "extra.tf".into()],
            src.path(),
            &Value::Null,
        )
        .expect("prepare");
        assert!(
            p.dir.join("main.tf").is_file()
                && p.dir.join("sub/x.tf").is_file()
                && p.dir.join("extra.tf").is_file()
        );
        assert!(
            !p.dir.join("terraform.tfstate").exists(),
            "a user's state is never copied"
        );
        assert_eq!(
            p.declared.iter().map(String::as_str).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let p2 = prepare(root.path(), "ws", &["m".into()], src.path(), &Value::Null)
            .expect("prepare again");
        assert!(
            !p2.dir.join("extra.tf").exists(),
            "a file no longer in the modules is removed"
        );
        assert_ne!(p.fingerprint, p2.fingerprint);
        let clash = prepare(
            root.path(),
            "ws",
            &["m".into(), "m/main.tf".into()],
            src.path(),
            &Value::Null,
        );
        assert!(clash
            .err()
            .is_some_and(|e| e.contains("both provide main.tf")));
        let missing = prepare(
            root.path(),
            "ws",
            &["nope".into()],
            src.path(),
            &Value::Null,
        );
        assert!(missing.err().is_some_and(|e| e.starts_with("module nope")));
    }
}
