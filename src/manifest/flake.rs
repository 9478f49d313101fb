//! Where the hosts' systems come from, and what Nix will copy of it.
//!
//! `nixos.flake` names the flake; unset, it is the nearest `flake.nix` at or
//! above the manifest's directory, never past the root of its git
//! repository (the usual repo keeps `flake.nix` at the root and the
//! manifest in `nixos/`).
//!
//! A local flake inside a git work tree goes to Nix as a plain path, so Nix
//! takes only the files git tracks: exactly what `nix build .#…` in that
//! repository takes. Outside git, Nix copies the whole directory into the
//! world-readable Nix store. nixmox's work directory (Terraform state with
//! every sensitive output, run logs) and the secret files the manifest
//! names must never be part of such a copy, so that layout is refused.

use super::diag::{Diagnostics, Path};
use super::model::Manifest;
use std::path::{Path as FsPath, PathBuf};

/// The flake the systems are built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flake {
    /// A reference with a scheme other than `path:` (`github:…`,
    /// `git+file:…`), handed to Nix as written.
    Reference(String),
    /// A directory holding `flake.nix`.
    Local {
        dir: PathBuf,
        /// The git work tree the directory is in; `None`: Nix copies all of it.
        git_root: Option<PathBuf>,
        /// Found by looking upward rather than named in `nixos.flake`.
        discovered: bool,
    },
    /// `nixos.flake` is unset and no `flake.nix` was found from `from` up to `to`.
    NotFound { from: PathBuf, to: PathBuf },
}

impl Flake {
    /// The reference Nix is given.
    pub fn nix_ref(&self) -> String {
        match self {
            Flake::Reference(r) => r.clone(),
            // A plain path: Nix treats one inside a git work tree as
            // `git+file:` (tracked files only), any other as `path:`.
            Flake::Local {
                dir,
                git_root: Some(_),
                ..
            } => dir.display().to_string(),
            Flake::Local { dir, .. } => format!("path:{}", dir.display()),
            Flake::NotFound { from, .. } => format!("path:{}", from.display()),
        }
    }
}

impl std::fmt::Display for Flake {
    /// Where the systems come from and what Nix reads of it, for people.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Flake::Reference(r) => write!(f, "flake {r}"),
            Flake::Local {
                dir,
                git_root,
                discovered,
            } => write!(
                f,
                "flake {}{} ({})",
                dir.display(),
                if *discovered {
                    ", found at or above the manifest"
                } else {
                    ""
                },
                if git_root.is_some() {
                    "Nix reads the files git tracks"
                } else {
                    "Nix copies the whole directory"
                }
            ),
            Flake::NotFound { .. } => write!(f, "no flake found (set nixos.flake)"),
        }
    }
}

/// The nearest directory at or above `dir` that holds `.git` (a directory,
/// or a file in a linked work tree).
pub fn git_root(dir: &FsPath) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .map(FsPath::to_path_buf)
}

/// Resolves the manifest's flake against the disk.
pub fn locate(m: &Manifest) -> Flake {
    let base = m.dir();
    match m.nixos.flake.as_deref() {
        Some(r) if r.starts_with("path:") && !r.contains(['?', '#']) => {
            // `path:` asks Nix for a whole-directory copy whatever git says.
            let dir = absolute(&base, &r["path:".len()..]);
            Flake::Local {
                dir,
                git_root: None,
                discovered: false,
            }
        }
        Some(r) if r.contains(':') => Flake::Reference(r.to_string()),
        Some(r) => {
            let dir = absolute(&base, r);
            Flake::Local {
                git_root: git_root(&dir),
                dir,
                discovered: false,
            }
        }
        None => {
            let top = git_root(&base);
            let stop = top.clone().unwrap_or_else(|| PathBuf::from("/"));
            let found = base
                .ancestors()
                .take_while(|d| d.starts_with(&stop))
                .find(|d| d.join("flake.nix").is_file());
            match found {
                Some(dir) => Flake::Local {
                    dir: dir.to_path_buf(),
                    git_root: top,
                    discovered: true,
                },
                None => Flake::NotFound {
                    from: base,
                    to: stop,
                },
            }
        }
    }
}

fn absolute(base: &FsPath, rel: &str) -> PathBuf {
    let p = base.join(rel);
    std::fs::canonicalize(&p).unwrap_or(p)
}

/// The files nixmox knows hold secrets, with what they are, as absolute paths.
fn secret_files(m: &Manifest) -> Vec<(&'static str, PathBuf)> {
    let base = m.dir();
    let mut out = vec![(
        "nixmox's work directory (Terraform state, run logs)",
        m.work_dir(),
    )];
    if let Some(f) = &m.nixos.age_key_file {
        out.push(("the hosts' age key (nixos.age_key_file)", base.join(f)));
    }
    if let Some(f) = &m.secrets.age_key_file {
        out.push((
            "the age key nixmox decrypts SOPS files with (secrets.age_key_file)",
            base.join(f),
        ));
    }
    if let Some(f) = &m.nixos.ssh.key {
        out.push(("the SSH key (nixos.ssh.key)", base.join(f)));
    }
    if let Some(f) = m
        .verify
        .user
        .as_ref()
        .and_then(|u| u.password_file.as_ref())
    {
        out.push((
            "the verification password (verify.user.password_file)",
            base.join(f),
        ));
    }
    out
}

/// A path's absolute form with `..` resolved as far as the disk allows
/// (the file itself need not exist yet).
fn resolved(p: &FsPath) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) => resolved(parent).join(name),
        _ => p.to_path_buf(),
    }
}

/// Errors for a flake Nix would copy together with a secret, a warning when
/// no flake can be found (`apply` and an online `plan` need one; `validate`
/// and `plan --offline` do not).
pub fn check(diags: &mut Diagnostics, m: &Manifest) {
    let at = Path::root().key("nixos").key("flake");
    match locate(m) {
        Flake::Reference(_) => {}
        Flake::NotFound { from, to } => diags.warning(
            &at,
            format!(
                "not set, and there is no flake.nix in {} or above it (up to {}): hosts cannot be built until nixos.flake names the flake",
                from.display(),
                to.display()
            ),
        ),
        Flake::Local { dir, git_root, .. } => {
            if !dir.join("flake.nix").is_file() {
                diags.error(
                    &at,
                    format!("the flake directory {} has no flake.nix", dir.display()),
                );
                return;
            }
            if git_root.is_some() {
                return;
            }
            for (what, file) in secret_files(m) {
                if resolved(&file).starts_with(&dir) {
                    diags.error_hint(
                        &at,
                        format!(
                            "the flake {} is not in a git repository, so Nix would copy all of it into the world-readable Nix store, {what} included ({})",
                            dir.display(),
                            file.display()
                        ),
                        Some("make the flake's directory a git repository (Nix then copies only the files git tracks; nixmox keeps its work directory ignored), or move that file out of it".into()),
                    );
                }
            }
        }
    }
}

/// Makes nixmox's work directory, private to its owner, with a
/// `.gitignore` that keeps all of it out of git (and so out of any copy Nix
/// makes of a git flake).
pub fn prepare_work_dir(dir: &FsPath) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                format!(
                    "cannot create nixmox's work directory {}: {e}",
                    dir.display()
                )
            })?;
    }
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(
            &ignore,
            "# nixmox's work directory: state, Terraform homes, run logs. Never commit it.\n*\n",
        )
        .map_err(|e| format!("cannot write {}: {e}", ignore.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_in(dir: &FsPath, flake: Option<&str>) -> Manifest {
        let mut v = serde_json::json!({
            "network": {"domain": "example.test", "gateway": "10.0.0.1", "prefix_length": 24},
            "services": {}
        });
        if let Some(f) = flake {
            v["nixos"] = serde_json::json!({ "flake": f });
        }
        let mut diags = Diagnostics::default();
        super::super::parse::manifest(&mut diags, &dir.join("nixos/service-manifest.nix"), &v)
            .expect("parses")
    }

    #[test]
    fn the_flake_is_found_upward_inside_the_repository() {
        let repo = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(repo.path()).expect("canonical");
        std::fs::create_dir_all(root.join(".git")).expect("mkdir");
        std::fs::create_dir_all(root.join("nixos")).expect("mkdir");
        std::fs::write(root.join("flake.nix"), "{}").expect("write");
        let m = manifest_in(&root, None);
        let f = locate(&m);
        assert_eq!(
            f,
            Flake::Local {
                dir: root.clone(),
                git_root: Some(root.clone()),
                discovered: true
            }
        );
        // Inside git: a plain path, so Nix takes the tracked files only.
        assert_eq!(f.nix_ref(), root.display().to_string());
        let mut diags = Diagnostics::default();
        check(&mut diags, &m);
        assert_eq!(diags.counts(), (0, 0));
    }

    #[test]
    fn the_search_stops_at_the_repository_root() {
        let outer = tempfile::tempdir().expect("tempdir");
        let outer = std::fs::canonicalize(outer.path()).expect("canonical");
        std::fs::write(outer.join("flake.nix"), "{}").expect("write");
        let repo = outer.join("repo");
        std::fs::create_dir_all(repo.join(".git")).expect("mkdir");
        std::fs::create_dir_all(repo.join("nixos")).expect("mkdir");
        let m = manifest_in(&repo, None);
        assert_eq!(
            locate(&m),
            Flake::NotFound {
                from: repo.join("nixos"),
                to: repo.clone()
            }
        );
        let mut diags = Diagnostics::default();
        check(&mut diags, &m);
        assert_eq!(diags.counts(), (0, 1));
    }

    #[test]
    fn a_flake_outside_git_that_holds_the_work_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        assert!(
            git_root(&root).is_none(),
            "the temporary directory is not in git"
        );
        std::fs::create_dir_all(root.join("nixos")).expect("mkdir");
        std::fs::write(root.join("flake.nix"), "{}").expect("write");
        let m = manifest_in(&root, Some(".."));
        let f = locate(&m);
        assert_eq!(f.nix_ref(), format!("path:{}", root.display()));
        let mut diags = Diagnostics::default();
        check(&mut diags, &m);
        let (errors, _) = diags.into_sorted();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].message.contains("world-readable Nix store"));
        assert!(errors[0].message.contains(".nixmox"));
    }

    #[test]
    fn an_explicit_path_reference_is_a_whole_copy_even_in_git() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        std::fs::create_dir_all(root.join(".git")).expect("mkdir");
        std::fs::create_dir_all(root.join("nixos")).expect("mkdir");
        std::fs::write(root.join("nixos/flake.nix"), "{}").expect("write");
        let m = manifest_in(&root, Some("path:."));
        let mut diags = Diagnostics::default();
        check(&mut diags, &m);
        assert_eq!(diags.counts().0, 1);
        let m = manifest_in(&root, Some("github:owner/repo"));
        assert_eq!(locate(&m), Flake::Reference("github:owner/repo".into()));
    }

    #[test]
    fn the_work_directory_ignores_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wd = dir.path().join("a/.nixmox");
        prepare_work_dir(&wd).expect("prepare");
        let text = std::fs::read_to_string(wd.join(".gitignore")).expect("read");
        assert!(text.lines().any(|l| l == "*"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&wd).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        prepare_work_dir(&wd).expect("a second time is fine");
    }
}
