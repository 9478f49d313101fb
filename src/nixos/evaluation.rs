//! Evaluating the hosts' systems: on a real stack (nixpkgs) the slowest
//! question a run asks, seconds and a GiB of memory per host. So it is asked
//! once per flake source, and a part at a time side by side.
//!
//! A flake evaluates purely: the same locked source (Nix's hash of the tree,
//! `flake.lock` included, and its inputs' locks) under the same Nix
//! settings gives every attribute the same store path. Nix's own evaluation
//! cache does not serve one process evaluating every host (`nix eval
//! --apply` goes around it), so nixmox keeps the answers in its work
//! directory under that fingerprint: a run on an unchanged flake evaluates
//! nothing. Any change to the tree is a new fingerprint and every host is
//! evaluated again, since the tree is an input of every system.

use super::build::{self, Evaluated, NixSettings};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file in the work directory that keeps the answers.
const FILE: &str = "systems.json";

/// A kept file larger than this is not read (it holds a line per host).
const LIMIT: u64 = 16 << 20;

/// Every system of `attributes` (service, attribute path), each given to
/// `answer` as soon as it is known: at once when the flake is unchanged
/// since a run kept its answer in `work_dir`, else when its part is
/// evaluated (`None` when that evaluation failed; the service is then built
/// from its attribute and reports its own error). New answers are kept
/// when `work_dir` exists.
pub fn evaluate(
    settings: &NixSettings,
    work_dir: Option<&Path>,
    attributes: &[(String, String)],
    answer: impl Fn(&str, Option<Evaluated>) + Sync,
) {
    if attributes.is_empty() {
        return;
    }
    let kept = work_dir.and_then(|dir| Kept::open(settings, dir));
    let known = kept
        .as_ref()
        .map(|k| k.lookup(attributes))
        .unwrap_or_default();
    for (name, e) in &known {
        answer(name, Some(e.clone()));
    }
    let rest: Vec<(String, String)> = attributes
        .iter()
        .filter(|(name, _)| !known.contains_key(name))
        .cloned()
        .collect();
    if rest.is_empty() {
        return;
    }
    let found = Mutex::new(BTreeMap::new());
    let parts = build::parts(&rest, crate::bounded::builds_at_once());
    std::thread::scope(|scope| {
        for part in &parts {
            let (answer, found) = (&answer, &found);
            scope.spawn(move || {
                let got = build::evaluate_all(settings, part).ok();
                for (name, _) in part {
                    answer(name, got.as_ref().and_then(|g| g.get(name).cloned()));
                }
                if let (Some(got), Ok(mut f)) = (got, found.lock()) {
                    f.extend(got);
                }
            });
        }
    });
    // A tree that changed while it was evaluated keeps nothing: its
    // answers might be the new tree's under the old fingerprint.
    if let Some(kept) = kept.filter(|k| fingerprint(settings).as_ref() == Some(&k.key)) {
        let found = found.into_inner().unwrap_or_else(|e| e.into_inner());
        kept.save(attributes, known.into_iter().chain(found).collect());
    }
}

/// [`evaluate`], all answers at once: the systems evaluated, by service
/// (one whose evaluation failed is left out).
pub fn evaluate_map(
    settings: &NixSettings,
    work_dir: Option<&Path>,
    attributes: &[(String, String)],
) -> BTreeMap<String, Evaluated> {
    let found = Mutex::new(BTreeMap::new());
    evaluate(settings, work_dir, attributes, |name, e| {
        if let (Some(e), Ok(mut f)) = (e, found.lock()) {
            f.insert(name.to_string(), e);
        }
    });
    found.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// The answers kept under this flake's fingerprint.
struct Kept {
    file: PathBuf,
    key: String,
    file_had: Option<KeptFile>,
}

#[derive(Serialize, Deserialize)]
struct KeptFile {
    key: String,
    systems: BTreeMap<String, KeptSystem>,
}

#[derive(Serialize, Deserialize, Clone)]
struct KeptSystem {
    attribute: String,
    out: String,
    drv: Option<String>,
}

impl Kept {
    /// `None` when the flake cannot be fingerprinted (Nix says why when it
    /// evaluates): nothing is kept or looked up then.
    fn open(settings: &NixSettings, work_dir: &Path) -> Option<Kept> {
        Some(Kept::at(work_dir.join(FILE), fingerprint(settings)?))
    }

    /// What `file` keeps, to be looked up and kept under `key`; a file
    /// that cannot be read keeps nothing.
    fn at(file: PathBuf, key: String) -> Kept {
        let file_had = crate::files::read_regular(&file, LIMIT, "kept evaluation")
            .ok()
            .and_then(|b| serde_json::from_slice::<KeptFile>(&b).ok());
        Kept {
            file,
            key,
            file_had,
        }
    }

    /// The kept systems of `attributes` under this fingerprint, each for
    /// the attribute path it was evaluated from, and checked before it goes
    /// into a command line.
    fn lookup(&self, attributes: &[(String, String)]) -> BTreeMap<String, Evaluated> {
        let Some(had) = self.file_had.as_ref().filter(|f| f.key == self.key) else {
            return BTreeMap::new();
        };
        attributes
            .iter()
            .filter_map(|(name, attribute)| {
                let s = had
                    .systems
                    .get(name)
                    .filter(|s| &s.attribute == attribute)?;
                let out = build::store_path(&s.out).ok()?;
                let drv = s
                    .drv
                    .as_deref()
                    .map(build::derivation_path)
                    .transpose()
                    .ok()?;
                Some((name.clone(), Evaluated { out, drv }))
            })
            .collect()
    }

    /// Keeps `found` beside what was kept under the same fingerprint (a run
    /// limited by `--only` evaluates only its hosts). Only into a work
    /// directory that exists: a `plan` before any `apply` makes none.
    fn save(self, attributes: &[(String, String)], found: BTreeMap<String, Evaluated>) {
        let Some(dir) = self.file.parent().filter(|d| d.is_dir()) else {
            return;
        };
        let mut systems = match self.file_had {
            Some(f) if f.key == self.key => f.systems,
            _ => BTreeMap::new(),
        };
        for (name, attribute) in attributes {
            if let Some(e) = found.get(name) {
                systems.insert(
                    name.clone(),
                    KeptSystem {
                        attribute: attribute.clone(),
                        out: e.out.clone(),
                        drv: e.drv.clone(),
                    },
                );
            }
        }
        let kept = KeptFile {
            key: self.key,
            systems,
        };
        if let Ok(text) = serde_json::to_vec_pretty(&kept) {
            // A cache: a run that cannot write it evaluates again next time.
            let _ = crate::files::write_atomic(&dir.join(FILE), &text, 0o600);
        }
    }
}

/// What the evaluation of `settings.flake` depends on: the locked source
/// as Nix reports it (`nix flake metadata`: the tree's hash, its last
/// modification, the inputs' locks) and every Nix setting a run gives.
fn fingerprint(settings: &NixSettings) -> Option<String> {
    let mut cmd = build::nix_command(settings);
    cmd.args(metadata_argv(&settings.flake));
    let out = build::run_nix(cmd, "nix flake metadata").ok()?;
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
    let locked = doc.get("locked")?;
    locked.get("narHash")?.as_str()?;
    let what = serde_json::json!({
        // How the answers were asked: a new form of question starts afresh.
        "form": 1,
        "locked": locked,
        "locks": doc.get("locks"),
        "NIX_CONFIG": std::env::var("NIX_CONFIG").unwrap_or_default(),
        "nix_config": settings.nix_config,
        "nix": nix_itself(),
    });
    let digest = Sha256::digest(what.to_string().as_bytes());
    Some(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// The Nix that evaluates and its configuration files, as they are now: a
/// new Nix or a changed `nix.conf` (`pure-eval`, say) starts afresh. Read
/// from the files, without starting a process.
fn nix_itself() -> Vec<String> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let nix = env("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("nix"))
        .find(|p| p.is_file())
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p));
    let system_conf = env("NIX_CONF_DIR")
        .unwrap_or_else(|| PathBuf::from("/etc/nix"))
        .join("nix.conf");
    let user_conf = env("XDG_CONFIG_HOME")
        .or_else(|| env("HOME").map(|h| h.join(".config")))
        .map(|d| d.join("nix/nix.conf"));
    let mut files: Vec<PathBuf> = nix.into_iter().chain([system_conf]).collect();
    files.extend(user_conf);
    files.extend(
        env("NIX_USER_CONF_FILES")
            .iter()
            .flat_map(|v| std::env::split_paths(v).collect::<Vec<_>>()),
    );
    files.iter().map(|p| stamp(p)).collect()
}

/// A file as it is now: its size and last change, or that it is absent.
fn stamp(p: &Path) -> String {
    match std::fs::metadata(p) {
        Ok(m) => {
            let modified = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            format!("{} {} {modified}", p.display(), m.len())
        }
        Err(_) => format!("{} absent", p.display()),
    }
}

/// `nix flake metadata --json -- <flake>`: after `--` the reference is never
/// read as an option.
pub fn metadata_argv(flake: &str) -> Vec<String> {
    vec![
        "flake".into(),
        "metadata".into(),
        "--json".into(),
        "--".into(),
        flake.into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system(name: &str, tag: char) -> Evaluated {
        let hash: String = std::iter::repeat_n(tag, 32).collect();
        Evaluated {
            out: format!("/nix/store/{hash}-nixos-system-{name}"),
            drv: Some(format!("/nix/store/{hash}-nixos-system-{name}.drv")),
        }
    }

    fn kept(dir: &Path, key: &str) -> Kept {
        Kept::at(dir.join(FILE), key.into())
    }

    fn attrs(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| (n.to_string(), build::default_attribute(n)))
            .collect()
    }

    #[test]
    fn answers_hold_only_for_the_same_flake_and_attribute() {
        let dir = tempfile::tempdir().expect("tempdir");
        let both = attrs(&["dns", "wiki"]);
        kept(dir.path(), "k1").save(
            &both,
            [("dns", 'a'), ("wiki", 'b')]
                .into_iter()
                .map(|(n, t)| (n.to_string(), system(n, t)))
                .collect(),
        );
        let found = kept(dir.path(), "k1").lookup(&both);
        assert_eq!(found["wiki"], system("wiki", 'b'));
        assert_eq!(found.len(), 2);
        // Another source or Nix setting: nothing holds.
        assert!(kept(dir.path(), "k2").lookup(&both).is_empty());
        // Another attribute path for a service: not its answer.
        let other = vec![("wiki".to_string(), "packages.x.wiki".to_string())];
        assert!(kept(dir.path(), "k1").lookup(&other).is_empty());
        // A run on some hosts keeps the others' answers.
        kept(dir.path(), "k1").save(
            &attrs(&["dns"]),
            [("dns".to_string(), system("dns", 'c'))].into(),
        );
        let found = kept(dir.path(), "k1").lookup(&both);
        assert_eq!(found["dns"], system("dns", 'c'));
        assert_eq!(found["wiki"], system("wiki", 'b'));
    }

    #[test]
    fn a_tampered_file_gives_nothing_that_could_be_an_option() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = system("dns", 'a');
        let text = serde_json::json!({
            "key": "k",
            "systems": {
                "dns": {"attribute": build::default_attribute("dns"), "out": "-oProxyCommand=x", "drv": null},
                "wiki": {"attribute": build::default_attribute("wiki"), "out": good.out, "drv": good.out},
                "notes": {"attribute": build::default_attribute("notes"), "out": good.out, "drv": "--option x.drv"},
            }
        });
        std::fs::write(dir.path().join(FILE), text.to_string()).expect("write");
        assert!(kept(dir.path(), "k")
            .lookup(&attrs(&["dns", "wiki", "notes"]))
            .is_empty());
        std::fs::write(dir.path().join(FILE), "not json").expect("write");
        assert!(kept(dir.path(), "k").lookup(&attrs(&["dns"])).is_empty());
    }

    #[test]
    fn nothing_is_kept_where_no_work_directory_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gone = dir.path().join("absent");
        Kept {
            file: gone.join(FILE),
            key: "k".into(),
            file_had: None,
        }
        .save(
            &attrs(&["dns"]),
            [("dns".to_string(), system("dns", 'a'))].into(),
        );
        assert!(!gone.exists());
    }

    #[test]
    fn a_changed_nix_conf_is_another_fingerprint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("nix.conf");
        let absent = stamp(&conf);
        std::fs::write(&conf, "pure-eval = true\n").expect("write");
        let pure = stamp(&conf);
        std::fs::write(&conf, "pure-eval = false\n").expect("write");
        let impure = stamp(&conf);
        assert!(absent.ends_with("absent"));
        assert_ne!(absent, pure);
        assert_ne!(pure, impure);
        assert!(!nix_itself().is_empty());
    }

    #[test]
    fn exact_metadata_argv() {
        assert_eq!(
            metadata_argv("-oProxyCommand=x"),
            ["flake", "metadata", "--json", "--", "-oProxyCommand=x"]
        );
    }
}
