//! A private copy of the user's Terraform tree that keeps its shape.
//!
//! Real roots reach shared modules, files and programs by relative paths
//! (`source = "../modules/lxc"`, `file("${path.module}/../keys/ca.pem")`),
//! so a root copied alone breaks. Running Terraform in the user's own
//! directory would write there (`terraform.tfstate.d/`, a lock file) and two
//! workspaces of one root could not run at once. So each workspace gets the
//! shape of the whole `terraform.root` tree: its directories made anew, its
//! Terraform files (`*.tf`, `*.tf.json`, `.terraform.lock.hcl`) copied — a
//! run reads one consistent configuration, and Terraform's own lock file
//! changes stay here — and every other file linked to the original, never
//! copied: a repo holds keys and secrets beside its Terraform, and no copy
//! of them may land in nixmox's state. The copy is kept in step
//! incrementally (a file is copied again only when its size or modification
//! time changed); what the source no longer has is removed, except what
//! Terraform itself keeps there ([`KEPT`]).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Names never copied from the user's tree, at any depth.
const SKIPPED: &[&str] = &[
    ".git",
    ".nixmox",
    ".terraform",
    ".direnv",
    "terraform.tfstate",
    "terraform.tfstate.backup",
    "terraform.tfstate.d",
];

/// Names in the copy that Terraform writes and a sync never removes (a lock
/// file only while the source has none there).
pub const KEPT: &[&str] = &[
    ".terraform",
    ".terraform.lock.hcl",
    "terraform.tfstate",
    "terraform.tfstate.backup",
    "terraform.tfstate.d",
];

/// Bounds on a tree: a `terraform.root` pointed at a whole disk fails with
/// a message instead of copying it.
pub const MAX_FILES: usize = 50_000;
pub const MAX_BYTES: u64 = 1024 * 1024 * 1024;
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
const MAX_DEPTH: usize = 48;

/// What the copy holds of each source file: size and modification time.
type Index = BTreeMap<String, (u64, i64, i64)>;

/// Makes `dst` a copy of `src`, skipping `also_skip` (absolute paths:
/// nixmox's own state directory when it lies inside the tree — never copy
/// a live database: opening its files here would release SQLite's locks on
/// them). Returns a fingerprint that changes whenever any copied file or
/// link changes.
pub fn sync(src: &Path, dst: &Path, also_skip: &[PathBuf]) -> Result<String, String> {
    let index_file = dst.with_extension("index.json");
    let old: Index = std::fs::read(&index_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut walk = Walk {
        src_root: src,
        dst_root: dst,
        also_skip,
        old: &old,
        new: Index::new(),
        seen: BTreeSet::new(),
        bytes: 0,
        links: BTreeMap::new(),
    };
    std::fs::create_dir_all(dst).map_err(|e| format!("cannot create {}: {e}", dst.display()))?;
    walk.copy_dir(Path::new(""), 0)?;
    remove_stale(dst, Path::new(""), &walk.seen)?;
    let text = serde_json::to_vec(&walk.new).map_err(|e| e.to_string())?;
    std::fs::write(&index_file, &text)
        .map_err(|e| format!("cannot write {}: {e}", index_file.display()))?;
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    walk.new.hash(&mut h);
    walk.links.hash(&mut h);
    Ok(format!("{:016x}", h.finish()))
}

struct Walk<'a> {
    src_root: &'a Path,
    dst_root: &'a Path,
    also_skip: &'a [PathBuf],
    old: &'a Index,
    new: Index,
    /// Every relative path the source has (files, links, directories).
    seen: BTreeSet<PathBuf>,
    bytes: u64,
    links: BTreeMap<String, String>,
}

impl Walk<'_> {
    fn copy_dir(&mut self, rel: &Path, depth: usize) -> Result<(), String> {
        let src_dir = self.src_root.join(rel);
        if depth > MAX_DEPTH {
            return Err(format!(
                "{} is nested more than {MAX_DEPTH} directories deep inside terraform.root",
                src_dir.display()
            ));
        }
        let mut entries: Vec<_> = std::fs::read_dir(&src_dir)
            .map_err(|e| format!("cannot list {}: {e}", src_dir.display()))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        std::fs::create_dir_all(self.dst_root.join(rel))
            .map_err(|e| format!("cannot create {}: {e}", self.dst_root.join(rel).display()))?;
        for entry in entries {
            let name = entry.file_name();
            if SKIPPED.iter().any(|s| name == *s) {
                continue;
            }
            let path = entry.path();
            if self.also_skip.contains(&path) {
                continue;
            }
            let rel_path = rel.join(&name);
            let meta = std::fs::symlink_metadata(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            self.seen.insert(rel_path.clone());
            if self.seen.len() > MAX_FILES {
                return Err(format!(
                    "terraform.root {} holds more than {MAX_FILES} files: point terraform.root at the directory that holds your Terraform tree",
                    self.src_root.display()
                ));
            }
            let ft = meta.file_type();
            if ft.is_symlink() {
                self.link(&path, &rel_path)?;
            } else if ft.is_dir() {
                self.copy_dir(&rel_path, depth + 1)?;
            } else if ft.is_file() {
                self.file(&path, &rel_path, &meta)?;
            } else {
                return Err(format!(
                    "{}: not a regular file, a directory or a link (a FIFO, a socket or a device) inside terraform.root; remove it or move terraform.root",
                    path.display()
                ));
            }
        }
        Ok(())
    }

    /// A link is copied as the link it is (never followed): it points where
    /// it pointed, inside the copy for a relative link within the tree.
    fn link(&mut self, path: &Path, rel: &Path) -> Result<(), String> {
        let target =
            std::fs::read_link(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let dst = self.dst_root.join(rel);
        if std::fs::read_link(&dst).ok().as_deref() != Some(target.as_path()) {
            remove_any(&dst)?;
            std::os::unix::fs::symlink(&target, &dst)
                .map_err(|e| format!("cannot create the link {}: {e}", dst.display()))?;
        }
        self.links
            .insert(rel.display().to_string(), target.display().to_string());
        Ok(())
    }

    fn file(&mut self, path: &Path, rel: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
        if !is_terraform_file(rel) {
            return self.link_to(path, rel);
        }
        self.bytes += meta.len();
        if self.bytes > MAX_BYTES {
            return Err(format!(
                "terraform.root {} holds more than {} MiB: point terraform.root at the directory that holds your Terraform tree",
                self.src_root.display(),
                MAX_BYTES >> 20
            ));
        }
        let key = rel.display().to_string();
        let stamp = (meta.len(), meta.mtime(), meta.mtime_nsec());
        let dst = self.dst_root.join(rel);
        let current = self.old.get(&key) == Some(&stamp)
            && std::fs::symlink_metadata(&dst).is_ok_and(|m| m.is_file() && m.len() == stamp.0);
        if !current {
            let bytes = crate::files::read_regular(path, MAX_FILE_BYTES, "terraform.root file")?;
            remove_any(&dst)?;
            std::fs::write(&dst, bytes)
                .map_err(|e| format!("cannot write {}: {e}", dst.display()))?;
            // Programs a module runs (`local-exec`, `external`) stay runnable.
            let mode = meta.permissions().mode() & 0o755;
            let _ = std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode | 0o600));
        }
        self.new.insert(key, stamp);
        Ok(())
    }
}

impl Walk<'_> {
    /// Anything but Terraform's own files: a link to the original (absolute).
    fn link_to(&mut self, path: &Path, rel: &Path) -> Result<(), String> {
        let dst = self.dst_root.join(rel);
        if std::fs::read_link(&dst).ok().as_deref() != Some(path) {
            remove_any(&dst)?;
            std::os::unix::fs::symlink(path, &dst)
                .map_err(|e| format!("cannot create the link {}: {e}", dst.display()))?;
        }
        self.links
            .insert(rel.display().to_string(), path.display().to_string());
        Ok(())
    }
}

/// The files Terraform itself reads as configuration: copied, not linked.
pub fn is_terraform_file(rel: &Path) -> bool {
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.ends_with(".tf") || name.ends_with(".tf.json") || name == ".terraform.lock.hcl"
}

fn remove_any(path: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
    }
    .map_err(|e| format!("cannot remove {}: {e}", path.display()))
}

/// Removes from the copy what the source no longer has, keeping what
/// Terraform writes there ([`KEPT`]).
fn remove_stale(dst_root: &Path, rel: &Path, seen: &BTreeSet<PathBuf>) -> Result<(), String> {
    let dir = dst_root.join(rel);
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let rel_path = rel.join(&name);
        if seen.contains(&rel_path) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_stale(dst_root, &rel_path, seen)?;
            }
            continue;
        }
        if KEPT.iter().any(|k| name == *k) {
            continue;
        }
        remove_any(&entry.path())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_keeps_the_shape_and_follows_changes() {
        let src = tempfile::tempdir().expect("tempdir");
        let dst = tempfile::tempdir().expect("tempdir");
        let copy = dst.path().join("tree");
        let s = src.path();
        std::fs::create_dir_all(s.join("roots/infra")).expect("mkdir");
        std::fs::create_dir_all(s.join("modules/lxc")).expect("mkdir");
        std::fs::write(
            s.join("roots/infra/main.tf"),
            "module \"x\" { source = \"../../modules/lxc\" }",
        )
        .expect("write");
        std::fs::write(s.join("modules/lxc/main.tf"), "").expect("write");
        std::fs::write(s.join("roots/infra/run.sh"), "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(
            s.join("roots/infra/run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        std::os::unix::fs::symlink("../modules", s.join("roots/shared")).expect("link");
        std::fs::create_dir_all(s.join("roots/infra/.terraform")).expect("mkdir");
        std::fs::write(s.join("roots/infra/terraform.tfstate"), "user state").expect("write");
        let f1 = sync(s, &copy, &[]).expect("sync");
        assert!(copy.join("modules/lxc/main.tf").is_file());
        assert!(copy.join("roots/infra/main.tf").is_file());
        // Other files are links to the originals, never copies (they may be secrets).
        assert_eq!(
            std::fs::read_link(copy.join("roots/infra/run.sh")).expect("a link"),
            s.join("roots/infra/run.sh")
        );
        assert_eq!(
            std::fs::metadata(copy.join("roots/infra/run.sh"))
                .expect("meta")
                .permissions()
                .mode()
                & 0o111,
            0o111
        );
        assert!(std::fs::symlink_metadata(copy.join("roots/infra/main.tf"))
            .expect("meta")
            .is_file());
        assert_eq!(
            std::fs::read_link(copy.join("roots/shared")).expect("link"),
            Path::new("../modules")
        );
        assert!(
            copy.join("roots/shared/lxc/main.tf").is_file(),
            "a relative link works in the copy"
        );
        assert!(
            !copy.join("roots/infra/terraform.tfstate").exists(),
            "a user's state is never copied"
        );
        assert!(!copy.join("roots/infra/.terraform").exists());
        // What Terraform writes in the copy stays; what the source dropped goes.
        std::fs::create_dir_all(copy.join("roots/infra/.terraform")).expect("mkdir");
        std::fs::write(copy.join("roots/infra/.terraform.lock.hcl"), "lock").expect("write");
        std::fs::remove_file(s.join("modules/lxc/main.tf")).expect("rm");
        std::fs::write(s.join("modules/lxc/vars.tf"), "variable \"a\" {}").expect("write");
        let f2 = sync(s, &copy, &[]).expect("sync again");
        assert_ne!(f1, f2);
        assert!(!copy.join("modules/lxc/main.tf").exists());
        assert!(copy.join("modules/lxc/vars.tf").is_file());
        assert!(copy.join("roots/infra/.terraform").is_dir());
        assert_eq!(
            std::fs::read_to_string(copy.join("roots/infra/.terraform.lock.hcl")).expect("lock"),
            "lock"
        );
        // Nothing changed: the same fingerprint, nothing copied again.
        assert_eq!(sync(s, &copy, &[]).expect("sync"), f2);
    }

    #[test]
    fn special_files_and_skipped_paths() {
        let src = tempfile::tempdir().expect("tempdir");
        let dst = tempfile::tempdir().expect("tempdir");
        let state = src.path().join("state");
        std::fs::create_dir_all(&state).expect("mkdir");
        std::fs::write(state.join("big"), "x").expect("write");
        sync(
            src.path(),
            &dst.path().join("t"),
            std::slice::from_ref(&state),
        )
        .expect("sync");
        assert!(
            !dst.path().join("t/state").exists(),
            "the state directory is not copied into itself"
        );
        let fifo = src.path().join("pipe");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success());
        let e = sync(
            src.path(),
            &dst.path().join("t"),
            std::slice::from_ref(&state),
        )
        .expect_err("a FIFO");
        assert!(e.contains("pipe: not a regular file"), "{e}");
    }
}
