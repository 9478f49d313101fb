//! One private home per workspace, under `.nixmox/terraform/<workspace>/`:
//!
//! - `.terraform/` — Terraform's data directory (`TF_DATA_DIR`): providers,
//!   modules, the selected workspace, a remote backend's settings;
//! - `terraform.tfstate.d/` — local state, reached from where Terraform
//!   runs through a link of that name;
//! - `tree/` — a copy of `terraform.root` in its own shape ([`super::tree`]),
//!   in which Terraform runs in the copy of the phase's root module, so
//!   relative `source`s, `file()`s and programs work unchanged; or
//!   `files/` for a phase made of single files only (`.tf`, `.tf.json`, and
//!   `.nix` modules evaluated to `*.tf.json`).
//!
//! The user's own folders are never written to, and two workspaces of one
//! root (two services using the same root, or infra and config) each have
//! their own copy, so they may run at once.

use regex::Regex;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// What a workspace's home keeps; anything else there is from an older layout.
const HOME: &[&str] = &[
    ".terraform",
    "terraform.tfstate",
    "terraform.tfstate.backup",
    "terraform.tfstate.d",
    "tree",
    "tree.index.json",
    "files",
    RUN_DIR_FILE,
];

/// Where the home records the directory Terraform runs in.
pub const RUN_DIR_FILE: &str = ".nixmox-run-dir";

pub struct Prepared {
    /// The workspace's home (see the module's documentation).
    pub home: PathBuf,
    /// Where Terraform runs: the root module's copy, or `files/`.
    pub dir: PathBuf,
    /// Variables the root module declares.
    pub declared: BTreeSet<String>,
    /// Those of them declared `sensitive = true`.
    pub sensitive: BTreeSet<String>,
    /// Changes whenever any file Terraform reads changes: decides when to re-run `init`.
    pub fingerprint: String,
    /// The user's own `.terraform.lock.hcl`, which `init` honours; `None`
    /// when the lock file in `dir` is nixmox's, kept from an earlier `init`.
    pub user_lock: Option<PathBuf>,
}

/// Where a phase's Terraform comes from.
pub struct Sources<'a> {
    /// The phase's modules, relative to `base` (the manifest's directory).
    pub modules: &'a [String],
    pub base: &'a Path,
    /// `terraform.root`: the tree copied for a root module.
    pub tree_root: &'a Path,
    /// Directories inside the tree never copied (nixmox's own state).
    pub skip: &'a [PathBuf],
}

/// Lays out `root/<workspace>` for a phase. A phase runs one root module (a
/// directory inside `terraform.root`) plus any single files, or single
/// files alone. `.nix` modules that are functions are called with
/// `nix_inputs` (no secrets).
pub fn prepare(
    root: &Path,
    workspace: &str,
    src: &Sources,
    nix_inputs: &Value,
) -> Result<Prepared, String> {
    let home = root.join(workspace);
    std::fs::create_dir_all(home.join("terraform.tfstate.d"))
        .map_err(|e| format!("cannot create {}: {e}", home.display()))?;
    clear_except(&home, HOME)?;
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for module in src.modules {
        let path = src.base.join(module);
        let meta = std::fs::metadata(&path)
            .map_err(|e| format!("module {module} ({}): {e}", path.display()))?;
        if meta.is_dir() {
            dirs.push((module, path));
        } else {
            files.push((module, path));
        }
    }
    if dirs.len() > 1 {
        return Err(format!(
            "modules {} and {} are both directories: a phase runs one root module (it may call others by relative path), plus single files",
            dirs[0].0, dirs[1].0
        ));
    }
    let mut user_lock = None;
    let (dir, mut hasher) = match dirs.first() {
        Some((module, path)) => {
            let tree_root = std::fs::canonicalize(src.tree_root)
                .map_err(|e| format!("terraform.root {}: {e}", src.tree_root.display()))?;
            let abs = std::fs::canonicalize(path)
                .map_err(|e| format!("module {module} ({}): {e}", path.display()))?;
            let rel = abs.strip_prefix(&tree_root).map_err(|_| {
                format!(
                    "module {module} ({}) is outside terraform.root ({}): set terraform.root to the directory that holds your whole Terraform tree",
                    abs.display(),
                    tree_root.display()
                )
            })?;
            let _ = std::fs::remove_dir_all(home.join("files"));
            let skip: Vec<PathBuf> = src
                .skip
                .iter()
                .filter_map(|s| std::fs::canonicalize(s).ok())
                .collect();
            let fingerprint = super::tree::sync(&tree_root, &home.join("tree"), &skip)
                .map_err(|e| format!("module {module}: {e}"))?;
            user_lock = Some(abs.join(".terraform.lock.hcl")).filter(|l| l.is_file());
            let mut h = std::collections::hash_map::DefaultHasher::new();
            fingerprint.hash(&mut h);
            rel.hash(&mut h);
            (home.join("tree").join(rel), h)
        }
        None => {
            let dir = home.join("files");
            let _ = std::fs::remove_dir_all(home.join("tree"));
            let _ = std::fs::remove_file(home.join("tree.index.json"));
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            clear_except(&dir, super::tree::KEPT)?;
            (dir, std::collections::hash_map::DefaultHasher::new())
        }
    };
    let mut placed: BTreeMap<PathBuf, String> = BTreeMap::new();
    for (module, path) in &files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let (rel, bytes) = if let Some(stem) = name.strip_suffix(".nix") {
            let rendered = render_nix(path, &dir, nix_inputs, module)?;
            (
                PathBuf::from(format!("{stem}.tf.json")),
                rendered.into_bytes(),
            )
        } else if name.ends_with(".tf") || name.ends_with(".tf.json") {
            let bytes =
                crate::files::read_regular(path, MODULE_FILE_LIMIT, &format!("module {module}:"))?;
            (PathBuf::from(name), bytes)
        } else {
            return Err(format!(
                "module {module}: a module file must end in .tf, .tf.json or .nix"
            ));
        };
        if placed.contains_key(&rel) || (!dirs.is_empty() && dir.join(&rel).exists()) {
            return Err(format!(
                "module {module} provides {}, which the phase has already: rename one",
                rel.display()
            ));
        }
        rel.hash(&mut hasher);
        bytes.hash(&mut hasher);
        std::fs::write(dir.join(&rel), &bytes)
            .map_err(|e| format!("cannot write {}: {e}", dir.join(&rel).display()))?;
        placed.insert(rel, module.to_string());
    }
    // Local state lives in the home; Terraform finds it where it runs.
    let link = dir.join("terraform.tfstate.d");
    if std::fs::read_link(&link).ok().as_deref() != Some(home.join("terraform.tfstate.d").as_path())
    {
        let _ = std::fs::remove_file(&link);
        let _ = std::fs::remove_dir_all(&link);
        std::os::unix::fs::symlink(home.join("terraform.tfstate.d"), &link)
            .map_err(|e| format!("cannot create {}: {e}", link.display()))?;
    }
    let mut declared = BTreeSet::new();
    let mut sensitive = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            if let Ok(text) = std::fs::read_to_string(&p) {
                declared.extend(declared_variables(&p, &text));
                sensitive.extend(sensitive_variables(&p, &text));
            }
        }
    }
    std::fs::write(home.join(RUN_DIR_FILE), dir.display().to_string())
        .map_err(|e| format!("cannot write {}: {e}", home.join(RUN_DIR_FILE).display()))?;
    Ok(Prepared {
        home,
        dir,
        declared,
        sensitive,
        fingerprint: format!("{:016x}", hasher.finish()),
        user_lock,
    })
}

/// Where Terraform ran last for this home (its home when it never ran).
pub fn run_dir(home: &Path) -> PathBuf {
    std::fs::read_to_string(home.join(RUN_DIR_FILE))
        .ok()
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| home.to_path_buf())
}

fn clear_except(dir: &Path, kept: &[&str]) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if kept.iter().any(|k| name == *k) {
            continue;
        }
        let path = entry.path();
        let result = if entry.file_type().is_ok_and(|t| t.is_dir()) {
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

/// The variables declared with `sensitive = true`: in a `.tf` file, the
/// attribute inside the block (up to the next line that closes a block at
/// the left margin, as `terraform fmt` writes them).
pub fn sensitive_variables(file: &Path, text: &str) -> BTreeSet<String> {
    static HCL: OnceLock<Option<Regex>> = OnceLock::new();
    let name = file.to_string_lossy();
    if name.ends_with(".tf.json") {
        let Ok(doc) = serde_json::from_str::<Value>(text) else {
            return BTreeSet::new();
        };
        let blocks: Vec<&serde_json::Map<String, Value>> = match &doc["variable"] {
            Value::Object(map) => vec![map],
            Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
            _ => vec![],
        };
        return blocks
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(|(_, v)| v["sensitive"] == Value::Bool(true))
            .map(|(k, _)| k.clone())
            .collect();
    }
    if !name.ends_with(".tf") {
        return BTreeSet::new();
    }
    let Some(re) = HCL.get_or_init(|| {
        Regex::new(r#"(?ms)^\s*variable\s+"([A-Za-z_][A-Za-z0-9_-]*)"\s*\{(.*?)^\}"#).ok()
    }) else {
        return BTreeSet::new();
    };
    let attr = Regex::new(r"(?m)^\s*sensitive\s*=\s*true\b").ok();
    re.captures_iter(text)
        .filter(|c| {
            c.get(2)
                .is_some_and(|body| attr.as_ref().is_some_and(|a| a.is_match(body.as_str())))
        })
        .filter_map(|c| c.get(1))
        .map(|m| m.as_str().to_string())
        .collect()
}

/// The most configuration kept for a rollback; a larger tree is not kept.
const SNAPSHOT_LIMIT: usize = 8 * 1024 * 1024;

/// What Terraform ran with in `home`: its Terraform files (the tree's
/// copies, or the single files), relative path → text; the tree's links to
/// the user's other files, relative path → target (never their content:
/// they may be secrets); and the directory it ran in, relative to them. A
/// secret-free record from which the same configuration can be laid out
/// again; `None` when there is none or it is larger than [`SNAPSHOT_LIMIT`].
#[allow(clippy::type_complexity)]
pub fn snapshot(
    home: &Path,
) -> Option<(BTreeMap<String, String>, BTreeMap<String, String>, String)> {
    struct Found {
        files: BTreeMap<String, String>,
        links: BTreeMap<String, String>,
        size: usize,
    }
    fn walk(root: &Path, dir: &Path, found: &mut Found) -> bool {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name();
            if super::tree::KEPT.iter().any(|k| name == *k) && name != ".terraform.lock.hcl" {
                continue;
            }
            let p = e.path();
            let Ok(t) = e.file_type() else { continue };
            let Ok(rel) = p.strip_prefix(root) else {
                continue;
            };
            if t.is_symlink() {
                if let Ok(target) = std::fs::read_link(&p) {
                    found
                        .links
                        .insert(rel.display().to_string(), target.display().to_string());
                }
            } else if t.is_dir() {
                if !walk(root, &p, found) {
                    return false;
                }
            } else if t.is_file() {
                if let Ok(text) = std::fs::read_to_string(&p) {
                    found.size += text.len();
                    if found.size > SNAPSHOT_LIMIT {
                        return false;
                    }
                    found.files.insert(rel.display().to_string(), text);
                }
            }
        }
        true
    }
    let run = run_dir(home);
    let base = [home.join("tree"), home.join("files")]
        .into_iter()
        .find(|b| run.starts_with(b))?;
    let rel = run.strip_prefix(&base).ok()?.display().to_string();
    let mut found = Found {
        files: BTreeMap::new(),
        links: BTreeMap::new(),
        size: 0,
    };
    walk(&base, &base, &mut found).then_some((found.files, found.links, rel))
}

/// Lays a [`snapshot`] out in `dir` (which is emptied first): its files,
/// and its links pointing where they pointed.
pub fn restore(
    dir: &Path,
    files: &BTreeMap<String, String>,
    links: &BTreeMap<String, String>,
) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(dir);
    let place = |rel: &str| -> Result<PathBuf, String> {
        if rel.split('/').any(|part| part == "..") || rel.starts_with('/') {
            return Err(format!(
                "refusing a snapshot path that leaves its directory: {rel}"
            ));
        }
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        Ok(p)
    };
    for (rel, text) in files {
        let p = place(rel)?;
        std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    for (rel, target) in links {
        let p = place(rel)?;
        std::os::unix::fs::symlink(target, &p)
            .map_err(|e| format!("cannot link {}: {e}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sensitive_variables() {
        let tf = "variable \"token\" {\n  type      = string\n  sensitive = true\n}\n\nvariable \"name\" {\n  type = string\n}\nvariable \"open\" {\n  sensitive = false\n}\n";
        let got = sensitive_variables(Path::new("main.tf"), tf);
        assert_eq!(got.into_iter().collect::<Vec<_>>(), ["token"]);
        let json = r#"{"variable": {"a": {"sensitive": true}, "b": {}}}"#;
        assert_eq!(sensitive_variables(Path::new("x.tf.json"), json).len(), 1);
    }

    #[test]
    fn finds_declared_variables() {
        let tf = "variable \"hosts\" {}\n  variable \"name\" {\n type = string\n}\n# variable \"nope\" {}\nresource \"x\" \"variable\" {}\n";
        let got = declared_variables(Path::new("main.tf"), tf);
        assert_eq!(got.into_iter().collect::<Vec<_>>(), ["hosts", "name"]);
        let json = r#"{"variable": {"a": {}, "b": {"type": "string"}}}"#;
        assert_eq!(declared_variables(Path::new("x.tf.json"), json).len(), 2);
    }

    fn sources<'a>(modules: &'a [String], base: &'a Path) -> Sources<'a> {
        Sources {
            modules,
            base,
            tree_root: base,
            skip: &[],
        }
    }

    #[test]
    fn a_root_module_runs_in_a_copy_of_its_tree() {
        let src = tempfile::tempdir().expect("tempdir");
        let root = tempfile::tempdir().expect("tempdir");
        let s = src.path();
        std::fs::create_dir_all(s.join("roots/infra")).expect("mkdir");
        std::fs::create_dir_all(s.join("modules/lxc")).expect("mkdir");
        std::fs::write(s.join("roots/infra/main.tf"), "variable \"a\" {}\n").expect("write");
        std::fs::write(s.join("modules/lxc/main.tf"), "variable \"inner\" {}\n").expect("write");
        std::fs::write(s.join("extra.tf"), "variable \"b\" {}\n").expect("write");
        let modules = vec!["roots/infra".to_string(), "extra.tf".to_string()];
        let p = prepare(root.path(), "ws", &sources(&modules, s), &Value::Null).expect("prepare");
        assert_eq!(p.dir, root.path().join("ws/tree/roots/infra"));
        assert!(
            p.dir.join("../../modules/lxc/main.tf").is_file(),
            "the tree keeps its shape"
        );
        assert!(p.dir.join("extra.tf").is_file());
        assert_eq!(
            std::fs::read_link(p.dir.join("terraform.tfstate.d")).expect("link"),
            root.path().join("ws/terraform.tfstate.d")
        );
        assert_eq!(
            p.declared.iter().map(String::as_str).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(run_dir(&p.home), p.dir);
        std::fs::write(s.join("roots/infra/key.pem"), "SECRET").expect("write");
        let p = prepare(root.path(), "ws", &sources(&modules, s), &Value::Null).expect("prepare");
        let (files, links, run) = snapshot(&p.home).expect("snapshot");
        assert_eq!(run, "roots/infra");
        assert!(
            files.contains_key("modules/lxc/main.tf") && files.contains_key("roots/infra/extra.tf")
        );
        // Other files are recorded as links, their content never kept.
        assert!(links.contains_key("roots/infra/key.pem"));
        assert!(!files.values().any(|t| t.contains("SECRET")));
        std::fs::remove_file(s.join("roots/infra/key.pem")).expect("rm");
        let p = prepare(root.path(), "ws", &sources(&modules, s), &Value::Null).expect("prepare");
        // Nothing changed: the same fingerprint; a change anywhere in the tree: another.
        let again = prepare(root.path(), "ws", &sources(&modules, s), &Value::Null).expect("again");
        assert_eq!(again.fingerprint, p.fingerprint);
        std::fs::write(s.join("modules/lxc/main.tf"), "variable \"other\" {}\n").expect("write");
        let changed =
            prepare(root.path(), "ws", &sources(&modules, s), &Value::Null).expect("changed");
        assert_ne!(changed.fingerprint, p.fingerprint);
        // The user's folders are never written to.
        assert!(!s.join("roots/infra/terraform.tfstate.d").exists());
        assert!(!s.join("roots/infra/.terraform").exists());
    }

    #[test]
    fn single_files_and_what_is_refused() {
        let src = tempfile::tempdir().expect("tempdir");
        let root = tempfile::tempdir().expect("tempdir");
        let s = src.path();
        std::fs::create_dir_all(s.join("a")).expect("mkdir");
        std::fs::create_dir_all(s.join("b")).expect("mkdir");
        std::fs::write(s.join("a/main.tf"), "").expect("write");
        std::fs::write(s.join("one.tf"), "variable \"x\" {}").expect("write");
        let modules = vec!["one.tf".to_string()];
        let p = prepare(root.path(), "ws", &sources(&modules, s), &Value::Null).expect("files");
        assert_eq!(p.dir, root.path().join("ws/files"));
        assert!(p.dir.join("one.tf").is_file());
        let two = vec!["a".to_string(), "b".to_string()];
        let e = prepare(root.path(), "ws", &sources(&two, s), &Value::Null)
            .err()
            .unwrap_or_default();
        assert!(e.contains("both directories"), "{e}");
        let clash = vec!["a".to_string(), "a/main.tf".to_string()];
        let e = prepare(root.path(), "ws", &sources(&clash, s), &Value::Null)
            .err()
            .unwrap_or_default();
        assert!(e.contains("provides main.tf"), "{e}");
        let missing = vec!["nope".to_string()];
        let e = prepare(root.path(), "ws", &sources(&missing, s), &Value::Null)
            .err()
            .unwrap_or_default();
        assert!(e.starts_with("module nope"), "{e}");
        let outside = tempfile::tempdir().expect("tempdir");
        let elsewhere = vec![outside.path().display().to_string()];
        let e = prepare(root.path(), "ws", &sources(&elsewhere, s), &Value::Null)
            .err()
            .unwrap_or_default();
        assert!(e.contains("is outside terraform.root"), "{e}");
    }
}
