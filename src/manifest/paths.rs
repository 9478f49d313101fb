//! Checks of the files a manifest names, against the disk: Terraform module
//! paths and migrations exist, a phase has one root module at most, and
//! every root module lies inside `terraform.root` (it runs in a copy of that
//! tree). Nothing is read here; a missing path is found at `validate`, not
//! half-way through an apply.

use super::diag::{Diagnostics, Path};
use super::model::{DbMode, Manifest, TerraformPhase};
use super::rules::service_path;
use std::path::Path as FsPath;

pub fn check(diags: &mut Diagnostics, m: &Manifest) {
    let base = m.dir();
    let root_at = Path::root().key("terraform").key("root");
    let tree_root = match &m.terraform.root {
        Some(root) => {
            let p = base.join(root);
            match std::fs::canonicalize(&p) {
                Ok(p) if p.is_dir() => Some(p),
                _ => {
                    diags.error(
                        &root_at,
                        format!(
                            "terraform.root {} ({}) is not a directory",
                            super::syntax::quote(root),
                            p.display()
                        ),
                    );
                    None
                }
            }
        }
        None => Some(base.clone()),
    };
    let top = Path::root().key("terraform");
    let mut phases: Vec<(Path, &TerraformPhase)> = vec![
        (top.key("infra"), &m.terraform.infra),
        (top.key("auth_core"), &m.terraform.auth_core),
    ];
    for s in m.enabled() {
        let at = service_path(s).key("interface").key("terraform");
        phases.push((at.clone(), &s.terraform.infra));
        phases.push((at.key("config"), &s.terraform.config));
        for db in &s.databases {
            if db.mode != Some(DbMode::NativeMigration) {
                continue;
            }
            let db_at = match &db.key {
                Some(k) => service_path(s).key("interface").key("dbs").key(k),
                None => service_path(s).key("interface").key("db"),
            };
            for (j, rel) in db.migrations.iter().enumerate() {
                let p = base.join(rel);
                if !p.is_file() {
                    diags.error(
                        &db_at.key("migrations").index(j),
                        format!(
                            "migration {} of service {}: {} is not a file",
                            super::syntax::quote(rel),
                            s.name,
                            p.display()
                        ),
                    );
                }
            }
        }
    }
    for (at, phase) in phases {
        modules(
            diags,
            &at.key("modules"),
            phase,
            &base,
            tree_root.as_deref(),
        );
    }
}

fn modules(
    diags: &mut Diagnostics,
    at: &Path,
    phase: &TerraformPhase,
    base: &FsPath,
    tree_root: Option<&FsPath>,
) {
    let mut first_dir: Option<&str> = None;
    for (i, module) in phase.modules.iter().enumerate() {
        if diags.failed(&at.index(i)) {
            continue;
        }
        let p = base.join(module);
        let Ok(meta) = std::fs::metadata(&p) else {
            diags.error(
                &at.index(i),
                format!(
                    "module path {} does not exist (looked for {})",
                    super::syntax::quote(module),
                    p.display()
                ),
            );
            continue;
        };
        if meta.is_dir() {
            if let Some(first) = first_dir {
                diags.error_hint(
                    &at.index(i),
                    format!(
                        "{} is a second directory after {}: a phase runs one root module, plus single files",
                        super::syntax::quote(module),
                        super::syntax::quote(first)
                    ),
                    Some("call one module from the other with a module block".into()),
                );
            }
            first_dir.get_or_insert(module);
            if let (Some(root), Ok(abs)) = (tree_root, std::fs::canonicalize(&p)) {
                if !abs.starts_with(root) {
                    diags.error_hint(
                        &at.index(i),
                        format!(
                            "module {} is outside terraform.root ({}): a root module runs in a copy of that tree",
                            super::syntax::quote(module),
                            root.display()
                        ),
                        Some("set terraform.root to the directory that holds your whole Terraform tree (roots and shared modules)".into()),
                    );
                }
            }
        } else if !meta.is_file() {
            diags.error(
                &at.index(i),
                format!(
                    "module path {} is neither a directory nor a regular file",
                    super::syntax::quote(module)
                ),
            );
        } else if ![".tf", ".tf.json", ".nix"]
            .iter()
            .any(|ext| module.ends_with(ext))
        {
            diags.error(
                &at.index(i),
                format!(
                    "module file {} must end in .tf, .tf.json or .nix",
                    super::syntax::quote(module)
                ),
            );
        }
    }
}
