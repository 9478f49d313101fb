//! Building systems locally with Nix (2.8 and newer: `nix build --json`, no
//! `--print-out-paths`) and copying closures to hosts.

use super::ssh::SshTarget;
use std::process::Command;
use std::time::Duration;

/// What to build and how.
#[derive(Debug, Clone)]
pub struct NixSettings {
    /// A flake reference (`path:/srv/stack`, `.`, `github:me/stack`).
    pub flake: String,
    /// Appended to `NIX_CONFIG` for every Nix command.
    pub nix_config: Option<String>,
}

/// `<flake>#nixosConfigurations.<name>.config.system.build.toplevel` unless the service names another attribute.
pub fn installable(flake: &str, attribute: &str) -> String {
    format!("{flake}#{attribute}")
}

pub fn default_attribute(service: &str) -> String {
    format!("nixosConfigurations.{service}.config.system.build.toplevel")
}

/// `nix build --json --no-link -- <installables>`: after `--` no
/// installable can be read as an option.
pub fn build_argv(installables: &[String]) -> Vec<String> {
    let mut a: Vec<String> = ["build", "--json", "--no-link", "--"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(installables.iter().cloned());
    a
}

pub fn copy_argv(t: &SshTarget, path: &str) -> Vec<String> {
    vec![
        "copy".into(),
        "--to".into(),
        format!("ssh://{}", t.destination()),
        "--".into(),
        path.into(),
    ]
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NixError(pub String);

pub(crate) fn nix_command(settings: &NixSettings) -> Command {
    nix_tool(settings, "nix")
}

/// `program` (`nix`, `nix-store`) with the stack's `NIX_CONFIG`.
fn nix_tool(settings: &NixSettings, program: &str) -> Command {
    let mut c = Command::new(program);
    let mut config = std::env::var("NIX_CONFIG").unwrap_or_default();
    if let Some(extra) = &settings.nix_config {
        config.push('\n');
        config.push_str(extra);
    }
    c.env("NIX_CONFIG", config);
    c
}

/// Builds each installable and returns its output path, in the same order.
/// One `nix build` per installable: the JSON of a multi-installable build
/// does not keep the order of its arguments, and a system mixed up with
/// another host's would be deployed to the wrong host.
pub fn build(settings: &NixSettings, installables: &[String]) -> Result<Vec<String>, NixError> {
    installables
        .iter()
        .map(|i| build_one(settings, i))
        .collect()
}

/// A bound on one build or copy: generous, but a hung Nix never hangs a run.
pub const NIX_LIMIT: Duration = Duration::from_secs(3600);

/// Runs Nix within [`NIX_LIMIT`]; `what` names it in errors.
pub(crate) fn run_nix(cmd: Command, what: &str) -> Result<crate::process::Finished, NixError> {
    let done = crate::process::run_tool(
        cmd,
        None,
        NIX_LIMIT,
        what,
        "install Nix; Debian: apt-get install nix-bin",
    )
    .map_err(NixError)?;
    if done.code == Some(0) {
        Ok(done)
    } else {
        Err(NixError(format!("{what} failed:\n{}", done.stderr.trim())))
    }
}

fn build_one(settings: &NixSettings, installable: &str) -> Result<String, NixError> {
    let mut cmd = nix_command(settings);
    cmd.args(build_argv(&[installable.to_string()]));
    let out = run_nix(cmd, &format!("nix build {installable}"))?;
    parse_build(&out.stdout, installable)
}

/// The output path `nix build --json` names for one installable: a store
/// path, one line, nothing else.
pub fn parse_build(stdout: &str, installable: &str) -> Result<String, NixError> {
    let doc: serde_json::Value = serde_json::from_str(stdout)
        .map_err(|e| NixError(format!("nix build {installable} printed no JSON: {e}")))?;
    let path = doc[0]["outputs"]["out"]
        .as_str()
        .ok_or_else(|| NixError(format!("nix build {installable} named no output path")))?;
    store_path(path).map_err(|e| NixError(format!("nix build {installable}: {e}")))
}

/// A store path Nix printed, checked before it goes into a command line.
pub fn store_path(path: &str) -> Result<String, String> {
    let name = path.strip_prefix("/nix/store/").unwrap_or("");
    let ok = name.len() > 33
        && name.as_bytes()[32] == b'-'
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-._?=".contains(c));
    if ok {
        Ok(path.to_string())
    } else {
        Err(format!(
            "{} is not a store path",
            crate::manifest::syntax::quote(path)
        ))
    }
}

/// A derivation's store path, checked before it goes into a command line:
/// anything but a `.drv` would be built as one.
pub fn derivation_path(path: &str) -> Result<String, String> {
    if path.ends_with(".drv") {
        store_path(path)
    } else {
        Err(format!(
            "{} is not a derivation",
            crate::manifest::syntax::quote(path)
        ))
    }
}

/// The map of `nix eval --json` in [`evaluate_all`]: service → its store
/// path and derivation, each checked before it goes into a command line.
pub fn parse_eval(stdout: &str) -> Result<std::collections::BTreeMap<String, Evaluated>, NixError> {
    #[derive(serde::Deserialize)]
    struct Raw {
        out: String,
        drv: Option<String>,
    }
    let map: std::collections::BTreeMap<String, Raw> = serde_json::from_str(stdout)
        .map_err(|e| NixError(format!("nix eval printed no map of store paths: {e}")))?;
    let checked = |p: &str| store_path(p).map_err(|e| NixError(format!("nix eval: {e}")));
    map.into_iter()
        .map(|(name, raw)| {
            let drv = raw
                .drv
                .map(|d| derivation_path(&d).map_err(|e| NixError(format!("nix eval: {e}"))))
                .transpose()?;
            Ok((
                name,
                Evaluated {
                    out: checked(&raw.out)?,
                    drv,
                },
            ))
        })
        .collect()
}

/// The `nix eval` arguments that evaluate many systems' store paths in one
/// process: `<flake>#<root> --apply <fn>`, where the function walks each
/// service's attribute path below `root`. `None` when an attribute path is
/// not plain dot-separated names (each service is then built on its own).
pub fn eval_argv(flake: &str, attributes: &[(String, String)]) -> Option<(String, Vec<String>)> {
    let plain = |seg: &str| {
        !seg.is_empty()
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let mut root = None;
    let mut paths = serde_json::Map::new();
    for (name, attr) in attributes {
        let mut segs = attr.split('.');
        let first = segs.next()?;
        let rest: Vec<&str> = segs.collect();
        if !plain(first) || !rest.iter().all(|s| plain(s)) || !plain(name) {
            return None;
        }
        if *root.get_or_insert(first) != first {
            return None;
        }
        paths.insert(name.clone(), serde_json::json!(rest));
    }
    let root = root?;
    // Names are plain, so the JSON holds no quote, backslash or `${`.
    let json = serde_json::Value::Object(paths)
        .to_string()
        .replace('"', "\\\"");
    let apply = format!(
        "root: builtins.mapAttrs (n: p: let s = builtins.foldl' (a: k: a.${{k}}) root p; in {{ out = s.outPath; drv = s.drvPath or null; }}) (builtins.fromJSON \"{json}\")"
    );
    Some((
        root.to_string(),
        vec![
            "eval".into(),
            "--json".into(),
            "--apply".into(),
            apply,
            "--".into(),
            installable(flake, root),
        ],
    ))
}

/// A system as an evaluation gave it: its store path, and the derivation
/// that builds it, which the evaluation wrote to the store. Building from
/// the derivation does not evaluate the flake again: with nixpkgs that
/// takes seconds and a GiB per host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluated {
    pub out: String,
    /// `None` when the attribute is not a derivation.
    pub drv: Option<String>,
}

impl Evaluated {
    /// The derivation to build from, while it is still in the store: one
    /// garbage-collected since the evaluation leaves the build to the flake
    /// attribute, which evaluates it again.
    pub fn derivation(&self) -> Option<&str> {
        self.drv
            .as_deref()
            .filter(|d| std::path::Path::new(d).exists())
    }
}

/// Every system's store path by service, from one evaluation and without
/// building anything: a host already running its path needs no build.
pub fn evaluate_all(
    settings: &NixSettings,
    attributes: &[(String, String)],
) -> Result<std::collections::BTreeMap<String, Evaluated>, NixError> {
    let (_, argv) = eval_argv(&settings.flake, attributes)
        .ok_or_else(|| NixError("attribute paths that cannot be evaluated together".into()))?;
    let mut cmd = nix_command(settings);
    cmd.args(&argv);
    let out = run_nix(cmd, "nix eval of the systems' store paths")?;
    parse_eval(&out.stdout)
}

/// `attributes` cut into at most `parts` runs of neighbours, in their
/// order, each for an evaluation of its own. One Nix evaluation uses one
/// core: evaluated side by side, forty hosts take a core's share each, and
/// the hosts a run reaches first (the first run) are known first.
pub fn parts(attributes: &[(String, String)], parts: usize) -> Vec<Vec<(String, String)>> {
    let size = attributes.len().div_ceil(parts.max(1)).max(1);
    attributes.chunks(size).map(<[_]>::to_vec).collect()
}

/// Builds the system `installable` names. From the derivation an
/// evaluation wrote when there is one (`nix-store --realise`, no second
/// evaluation); from the flake when not, or when the derivation has gone
/// from the store since (a garbage collection in between).
pub fn build_system(
    settings: &NixSettings,
    installable: &str,
    evaluated: Option<&Evaluated>,
) -> Result<String, NixError> {
    match evaluated.and_then(Evaluated::derivation) {
        Some(drv) => realise(settings, drv).map_err(|e| NixError(format!("{installable}: {e}"))),
        None => build_one(settings, installable),
    }
}

/// `nix-store --realise <drv>`: the stable way, in every Nix since 2.0, to
/// build a derivation (the `nix build` syntax for one changed in 2.13).
pub fn realise_argv(drv: &str) -> Vec<String> {
    vec!["--realise".into(), drv.into()]
}

fn realise(settings: &NixSettings, drv: &str) -> Result<String, NixError> {
    let drv = store_path(drv).map_err(NixError)?;
    let mut cmd = nix_tool(settings, "nix-store");
    cmd.args(realise_argv(&drv));
    let what = format!("nix-store --realise {drv}");
    let out = run_nix(cmd, &what)?;
    // One line per output; a system has one.
    let path = out.stdout.lines().next().unwrap_or("").trim();
    store_path(path).map_err(|e| NixError(format!("{what}: {e}")))
}

/// Copies a closure to the host over SSH (reusing the multiplexed connection).
pub fn copy(settings: &NixSettings, t: &SshTarget, path: &str) -> Result<(), NixError> {
    let _ = std::fs::create_dir_all(&t.control_dir);
    let mut cmd = nix_command(settings);
    cmd.args(copy_argv(t, path))
        .env("NIX_SSHOPTS", t.nix_sshopts().map_err(NixError)?);
    run_nix(
        cmd,
        &format!("host {} ({}): nix copy of {path}", t.name, t.address),
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_derivation_counts_while_it_is_in_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kept = dir.path().join("abc-nixos-system-app01.drv");
        std::fs::write(&kept, "Derive(...)").expect("write");
        let at = |drv: Option<&std::path::Path>| Evaluated {
            out: "/nix/store/abc-nixos-system-app01".into(),
            drv: drv.map(|d| d.display().to_string()),
        };
        let here = at(Some(&kept));
        assert_eq!(here.derivation(), here.drv.as_deref());
        // Collected since the evaluation: the build goes to the flake.
        let gone = at(Some(&dir.path().join("gone.drv")));
        assert_eq!(gone.derivation(), None);
        assert_eq!(at(None).derivation(), None);
    }

    #[test]
    fn what_nix_prints_is_checked() {
        let p = format!("/nix/store/{}-nixos-system-wiki-23.11", "a".repeat(32));
        let json = format!(r#"[{{"drvPath":"/nix/store/x.drv","outputs":{{"out":"{p}"}}}}]"#);
        assert_eq!(parse_build(&json, "i").expect("path"), p);
        for bad in [
            r#"[{"outputs":{"out":"/etc/passwd"}}]"#,
            r#"[{"outputs":{"out":"/nix/store/aaa; rm -rf /"}}]"#,
            r#"[{"outputs":{}}]"#,
            "not json",
            "[]",
        ] {
            assert!(parse_build(bad, "i").is_err(), "{bad}");
        }
        let drv = format!("/nix/store/{}-nixos-system-wiki-23.11.drv", "b".repeat(32));
        let ev = parse_eval(&format!(r#"{{"wiki":{{"out":"{p}","drv":"{drv}"}}}}"#)).expect("map");
        assert_eq!(
            ev["wiki"],
            Evaluated {
                out: p.clone(),
                drv: Some(drv.clone())
            }
        );
        let plain = parse_eval(&format!(r#"{{"wiki":{{"out":"{p}","drv":null}}}}"#)).expect("map");
        assert_eq!(plain["wiki"].drv, None);
        for bad in [
            r#"{"wiki":{"out":"-oProxyCommand=x","drv":null}}"#.to_string(),
            format!(r#"{{"wiki":{{"out":"{p}","drv":"-oProxyCommand=x.drv"}}}}"#),
            // A derivation is a .drv file; anything else would be built as one.
            format!(r#"{{"wiki":{{"out":"{p}","drv":"{p}"}}}}"#),
            format!(r#"{{"wiki":"{p}"}}"#),
        ] {
            assert!(parse_eval(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn evaluation_parts_keep_the_run_order() {
        let attrs: Vec<(String, String)> = (0..23)
            .map(|i| (format!("s{i:02}"), default_attribute(&format!("s{i:02}"))))
            .collect();
        let cut = parts(&attrs, 2);
        assert_eq!(cut.iter().map(Vec::len).collect::<Vec<_>>(), [12, 11]);
        assert_eq!(cut.concat(), attrs);
        assert_eq!(parts(&attrs[..1], 2).len(), 1);
        assert_eq!(parts(&attrs, 0).len(), 1);
        assert!(parts(&[], 2).is_empty());
    }

    #[test]
    fn exact_nix_argv() {
        let i = installable("path:/srv/stack", &default_attribute("wiki"));
        assert_eq!(
            i,
            "path:/srv/stack#nixosConfigurations.wiki.config.system.build.toplevel"
        );
        assert_eq!(
            build_argv(std::slice::from_ref(&i)),
            ["build", "--json", "--no-link", "--", i.as_str()]
        );
        let (root, argv) = eval_argv(
            "path:/srv/stack",
            &[
                ("dns".into(), default_attribute("dns")),
                ("wiki".into(), default_attribute("wiki")),
            ],
        )
        .expect("plain attributes");
        assert_eq!(root, "nixosConfigurations");
        assert_eq!(
            argv,
            [
                "eval",
                "--json",
                "--apply",
                "root: builtins.mapAttrs (n: p: let s = builtins.foldl' (a: k: a.${k}) root p; \
                 in { out = s.outPath; drv = s.drvPath or null; }) (builtins.fromJSON \"{\\\"dns\\\":[\\\"dns\\\",\\\"config\\\",\\\"system\\\",\\\"build\\\",\\\"toplevel\\\"],\
                 \\\"wiki\\\":[\\\"wiki\\\",\\\"config\\\",\\\"system\\\",\\\"build\\\",\\\"toplevel\\\"]}\")",
                "--",
                "path:/srv/stack#nixosConfigurations",
            ]
        );
        assert_eq!(
            realise_argv("/nix/store/x.drv"),
            ["--realise", "/nix/store/x.drv"]
        );
        // Quoted attribute names, or two roots: each is built on its own.
        assert!(eval_argv("f", &[("a".into(), "x.\"a.b\"".into())]).is_none());
        assert!(eval_argv(
            "f",
            &[("a".into(), "x.a".into()), ("b".into(), "y.b".into())]
        )
        .is_none());
    }
}
