//! What differs between two systems' closures, the way `nvd diff` shows it:
//! packages whose versions changed (old → new), packages added and removed,
//! and the closure's size before and after. A package is a store path's name
//! split the way Nix's `builtins.parseDrvName` splits it: the version starts
//! at the first dash that is not followed by a letter.
//!
//! A closure is read with `nix-store` (every Nix has it, old or new, on
//! NixOS or not): the requisites of a system, then each one's NAR size, in
//! one shell script that runs on the host (its running system) or here (the
//! system a plan built).

use super::remote::quote;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Separates the two lists of the script's answer; no store path contains it.
const MARK: &str = "--nixmox-closure--";

/// More paths than any system has; an answer past it is refused, not read.
pub const MAX_PATHS: usize = 200_000;

/// The script that prints `path`'s requisites, a mark, then their NAR sizes
/// in the same order.
pub fn query_script(path: &str) -> String {
    format!(
        "r=$(nix-store --query --requisites {}) || exit 1; printf '%s\\n' \"$r\"; echo {MARK}; \
         printf '%s\\n' \"$r\" | xargs nix-store --query --size",
        quote(path)
    )
}

/// One store path of a closure and its NAR size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub path: String,
    pub size: u64,
}

/// Reads [`query_script`]'s answer; `who` names the host or tool in errors.
pub fn parse(stdout: &str, who: &str) -> Result<Vec<Member>, String> {
    let unreadable =
        |why: &str| format!("{who}: the closure query gave an answer nixmox cannot read: {why}");
    let (paths, sizes) = stdout
        .split_once(&format!("{MARK}\n"))
        .ok_or_else(|| unreadable("no mark between paths and sizes"))?;
    let paths: Vec<&str> = paths.lines().filter(|l| !l.is_empty()).collect();
    let sizes: Vec<&str> = sizes.lines().filter(|l| !l.is_empty()).collect();
    if paths.len() > MAX_PATHS {
        return Err(unreadable(&format!("more than {MAX_PATHS} paths")));
    }
    if paths.len() != sizes.len() {
        return Err(unreadable(&format!(
            "{} paths but {} sizes",
            paths.len(),
            sizes.len()
        )));
    }
    paths
        .iter()
        .zip(&sizes)
        .map(|(p, s)| {
            if !p.starts_with("/nix/store/") || p.contains(char::is_whitespace) {
                return Err(unreadable(&format!("{p:?} is not a store path")));
            }
            let size = s
                .trim()
                .parse::<u64>()
                .map_err(|_| unreadable(&format!("{s:?} is not a size")))?;
            Ok(Member {
                path: p.to_string(),
                size,
            })
        })
        .collect()
}

/// A system's closure as this machine's Nix store holds it (a system built here).
pub fn local(path: &str) -> Result<Vec<Member>, String> {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(query_script(path));
    let done = crate::process::run_tool(
        cmd,
        None,
        std::time::Duration::from_secs(120),
        "nix-store --query",
        "install Nix; Debian: apt-get install nix-bin",
    )?;
    if done.code != Some(0) {
        return Err(format!(
            "reading the closure of {path} here failed: {}",
            done.stderr.trim()
        ));
    }
    parse(&done.stdout, "nix-store here")
}

/// The closure of the system a host runs, as the host's own store holds it.
pub fn on_host(t: &super::ssh::SshTarget, path: &str) -> Result<Vec<Member>, String> {
    let who = format!("host {} ({})", t.name, t.address);
    let out = super::ssh::run(
        t,
        &query_script(path),
        None,
        std::time::Duration::from_secs(120),
    )
    .map_err(|e| e.to_string())?;
    if !out.ok() {
        return Err(format!(
            "{who}: reading the closure of {path} failed: {}",
            out.stderr.trim()
        ));
    }
    parse(&out.stdout, &who)
}

/// A store path's name without the store directory and hash.
pub fn name_of(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    match base.split_once('-') {
        Some((hash, name)) if hash.len() == 32 => name,
        _ => base,
    }
}

/// `builtins.parseDrvName`: (package name, version); the version may be empty.
pub fn parse_name(name: &str) -> (&str, &str) {
    let bytes = name.as_bytes();
    for i in 0..bytes.len() {
        if bytes[i] == b'-' && i + 1 < bytes.len() && !bytes[i + 1].is_ascii_alphabetic() {
            return (&name[..i], &name[i + 1..]);
        }
    }
    (name, "")
}

/// A package whose versions differ between the two closures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionChange {
    pub name: String,
    pub before: Vec<String>,
    pub after: Vec<String>,
}

/// A package only one of the closures has, with its versions there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    pub name: String,
    pub versions: Vec<String>,
}

/// Two closures compared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClosureDiff {
    pub changed: Vec<VersionChange>,
    pub added: Vec<Package>,
    pub removed: Vec<Package>,
    /// Store paths only the new closure has, and only the old one.
    pub paths_added: usize,
    pub paths_removed: usize,
    pub paths_before: usize,
    pub paths_after: usize,
    /// Sums of NAR sizes, in bytes.
    pub size_before: u64,
    pub size_after: u64,
}

fn packages(closure: &[Member]) -> BTreeMap<&str, BTreeSet<&str>> {
    let mut out: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for m in closure {
        let (name, version) = parse_name(name_of(&m.path));
        let versions = out.entry(name).or_default();
        if !version.is_empty() {
            versions.insert(version);
        }
    }
    out
}

fn owned(set: &BTreeSet<&str>) -> Vec<String> {
    set.iter().map(|v| v.to_string()).collect()
}

/// What changes from `before` to `after`.
pub fn diff(before: &[Member], after: &[Member]) -> ClosureDiff {
    let (old, new) = (packages(before), packages(after));
    let mut d = ClosureDiff::default();
    for (name, versions) in &new {
        match old.get(name) {
            None => d.added.push(Package {
                name: name.to_string(),
                versions: owned(versions),
            }),
            Some(was) if was != versions => d.changed.push(VersionChange {
                name: name.to_string(),
                before: owned(was),
                after: owned(versions),
            }),
            Some(_) => {}
        }
    }
    for (name, versions) in &old {
        if !new.contains_key(name) {
            d.removed.push(Package {
                name: name.to_string(),
                versions: owned(versions),
            });
        }
    }
    let (old_paths, new_paths): (BTreeSet<&str>, BTreeSet<&str>) = (
        before.iter().map(|m| m.path.as_str()).collect(),
        after.iter().map(|m| m.path.as_str()).collect(),
    );
    d.paths_added = new_paths.difference(&old_paths).count();
    d.paths_removed = old_paths.difference(&new_paths).count();
    d.paths_before = old_paths.len();
    d.paths_after = new_paths.len();
    // Sizes come from the host: untrusted, so they add up without overflow.
    let total = |ms: &[Member]| ms.iter().fold(0u64, |t, m| t.saturating_add(m.size));
    d.size_before = total(before);
    d.size_after = total(after);
    d
}

/// `12.3 KiB`: sizes the way people read them.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

impl ClosureDiff {
    /// The lines `nvd diff` would print.
    pub fn lines(&self) -> Vec<String> {
        let versions = |v: &[String]| {
            if v.is_empty() {
                "(no version)".to_string()
            } else {
                v.join(", ")
            }
        };
        let mut out = Vec::new();
        for c in &self.changed {
            out.push(format!(
                "[U] {}  {} → {}",
                c.name,
                versions(&c.before),
                versions(&c.after)
            ));
        }
        for p in &self.added {
            out.push(format!("[A] {}  {}", p.name, versions(&p.versions)));
        }
        for p in &self.removed {
            out.push(format!("[R] {}  {}", p.name, versions(&p.versions)));
        }
        let delta = self.size_after as i128 - self.size_before as i128;
        out.push(format!(
            "closure: {} → {} paths ({} added, {} removed), {} → {} ({}{})",
            self.paths_before,
            self.paths_after,
            self.paths_added,
            self.paths_removed,
            human_size(self.size_before),
            human_size(self.size_after),
            if delta < 0 { "-" } else { "+" },
            human_size(delta.unsigned_abs() as u64),
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_a_host_reports_never_overflow() {
        let huge = [
            m("/nix/store/aaaa-a-1", u64::MAX),
            m("/nix/store/bbbb-b-1", 4096),
        ];
        let d = diff(&huge[..1], &huge);
        assert_eq!(d.size_after, u64::MAX);
        assert!(d.lines().last().expect("summary").contains("TiB"));
    }

    fn m(name: &str, size: u64) -> Member {
        Member {
            path: format!("/nix/store/{}-{name}", "a".repeat(32)),
            size,
        }
    }

    #[test]
    fn names_split_like_parse_drv_name() {
        assert_eq!(parse_name("hello-2.12.1"), ("hello", "2.12.1"));
        assert_eq!(
            parse_name("nixos-system-wiki-23.11"),
            ("nixos-system-wiki", "23.11")
        );
        assert_eq!(parse_name("glibc-2.37-8-bin"), ("glibc", "2.37-8-bin"));
        assert_eq!(parse_name("etc"), ("etc", ""));
        assert_eq!(
            parse_name("unit-script-foo-start"),
            ("unit-script-foo-start", "")
        );
        assert_eq!(parse_name("x-"), ("x-", ""));
        assert_eq!(
            name_of("/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12.1"),
            "hello-2.12.1"
        );
    }

    #[test]
    fn diff_is_what_nvd_shows() {
        let before = [
            m("wiki-1.4", 100),
            m("openssl-3.0.1", 2000),
            m("old-tool-1", 50),
            m("etc", 10),
        ];
        let after = [
            m("wiki-1.5", 120),
            m("openssl-3.0.1", 2000),
            m("new-tool-0.1", 70),
            m("etc", 10),
        ];
        // Same names and sizes but other hashes for the unchanged ones: those
        // count as paths added and removed, not as package changes.
        let after: Vec<Member> = after
            .iter()
            .map(|x| Member {
                path: x.path.replacen(&"a".repeat(32), &"b".repeat(32), 1),
                size: x.size,
            })
            .collect();
        let d = diff(&before, &after);
        assert_eq!(
            d.changed,
            [VersionChange {
                name: "wiki".into(),
                before: vec!["1.4".into()],
                after: vec!["1.5".into()]
            }]
        );
        assert_eq!(
            d.added,
            [Package {
                name: "new-tool".into(),
                versions: vec!["0.1".into()]
            }]
        );
        assert_eq!(
            d.removed,
            [Package {
                name: "old-tool".into(),
                versions: vec!["1".into()]
            }]
        );
        assert_eq!(
            (
                d.paths_before,
                d.paths_after,
                d.paths_added,
                d.paths_removed
            ),
            (4, 4, 4, 4)
        );
        assert_eq!((d.size_before, d.size_after), (2160, 2200));
        assert_eq!(
            d.lines(),
            [
                "[U] wiki  1.4 → 1.5",
                "[A] new-tool  0.1",
                "[R] old-tool  1",
                "closure: 4 → 4 paths (4 added, 4 removed), 2.1 KiB → 2.1 KiB (+40 B)"
            ]
        );
        assert_eq!(diff(&before, &before).lines().len(), 1);
    }

    #[test]
    fn parses_the_answer_and_refuses_garbage() {
        let p = format!("/nix/store/{}-hello-1", "a".repeat(32));
        let ok = format!("{p}\n{MARK}\n42\n");
        assert_eq!(
            parse(&ok, "h").expect("parse"),
            [Member {
                path: p.clone(),
                size: 42
            }]
        );
        assert!(parse(&format!("{p}\n"), "h").is_err());
        assert!(parse(&format!("{p}\n{MARK}\n"), "h").is_err());
        assert!(parse(&format!("{p}\n{MARK}\nlots\n"), "h").is_err());
        assert!(parse(&format!("/etc/passwd\n{MARK}\n1\n"), "h").is_err());
        let e = parse("motd\n", "host wiki").expect_err("no mark");
        assert!(e.starts_with("host wiki: "), "{e}");
    }

    #[test]
    fn sizes_read_like_people_read_them() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    /// The script through a real shell, with a stand-in `nix-store` on PATH
    /// that answers the way the real one does.
    #[test]
    fn script_runs_in_sh() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("nix-store");
        std::fs::write(
            &fake,
            "#!/bin/sh\nif [ \"$2\" = --requisites ]; then printf '/nix/store/a-x\\n/nix/store/b-y\\n'; \
             else shift 2; for p in \"$@\"; do echo 7; done; fi\n",
        )
        .expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = format!("{}:/usr/bin:/bin", dir.path().display());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(query_script("/nix/store/a-x"))
            .env("PATH", path)
            .output()
            .expect("sh");
        let closure = parse(&String::from_utf8_lossy(&out.stdout), "sh").expect("parse");
        assert_eq!(closure.len(), 2);
        assert_eq!(closure[1].size, 7);
    }
}
