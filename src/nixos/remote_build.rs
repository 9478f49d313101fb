//! Building a system somewhere else (`nixos.build_host`): on the host
//! itself, as colmena's `buildOnTarget` and deploy-rs's `remoteBuild` do,
//! or on a builder, as `nixos-rebuild --build-host` does. The derivation is
//! evaluated here (`nix eval … .drvPath` instantiates it), its derivation
//! closure copied to the builder (`nix copy --derivation`), realised there
//! (`nix-store --realise`), and the built closure sent from the builder
//! straight to the host when the builder can reach it. Remote command lines
//! are built by pure functions, every value quoted.

use super::build::{self, NixError, NixSettings, NIX_LIMIT};
use super::remote::quote;
use super::ssh::{self, SshTarget};

/// `<installable>.drvPath`, as `nix eval --raw` takes it.
pub fn drv_argv(installable: &str) -> Vec<String> {
    vec![
        "eval".into(),
        "--raw".into(),
        "--".into(),
        format!("{installable}.drvPath"),
    ]
}

pub fn copy_derivation_argv(t: &SshTarget, drv: &str) -> Vec<String> {
    vec![
        "copy".into(),
        "--derivation".into(),
        "--to".into(),
        format!("ssh://{}", t.destination()),
        "--".into(),
        drv.into(),
    ]
}

/// Here: fetch a closure the builder built (when it could not send it on).
pub fn fetch_argv(builder: &SshTarget, path: &str) -> Vec<String> {
    vec![
        "copy".into(),
        "--from".into(),
        format!("ssh://{}", builder.destination()),
        "--".into(),
        path.into(),
    ]
}

/// `NIX_CONFIG` for a Nix command on another machine: the manifest's lines.
fn env_prefix(settings: &NixSettings) -> String {
    match &settings.nix_config {
        Some(c) if !c.trim().is_empty() => format!("NIX_CONFIG={} ", quote(c)),
        _ => String::new(),
    }
}

/// On the builder: realise the derivation, print its output path.
pub fn realise_command(settings: &NixSettings, drv: &str) -> String {
    format!(
        "env {}nix-store --realise {}",
        env_prefix(settings),
        quote(drv)
    )
}

/// On the builder: send a built closure on to the host, with the builder's
/// own SSH credentials (no password prompt, a new host key accepted).
pub fn forward_command(settings: &NixSettings, to: &SshTarget, path: &str) -> String {
    format!(
        "env {}NIX_SSHOPTS={} nix copy --to {} -- {}",
        env_prefix(settings),
        quote("-o BatchMode=yes -o StrictHostKeyChecking=accept-new -o ConnectTimeout=10"),
        quote(&format!("ssh://{}", to.destination())),
        quote(path)
    )
}

fn nix(settings: &NixSettings, argv: Vec<String>, what: &str) -> Result<String, NixError> {
    let mut cmd = build::nix_command(settings);
    cmd.args(argv);
    build::run_nix(cmd, what).map(|f| f.stdout)
}

/// Where a system was built and whether its closure is on its host already.
#[derive(Debug, Clone)]
pub struct Built {
    pub path: String,
    /// The closure reached the host (built there, or sent on by the builder).
    pub on_target: bool,
    /// For the deploy step's detail: where it was built and how it travelled.
    pub note: String,
}

/// Builds `installable` on `builder` for `target` (the same host for
/// `build_host = "target"`), from the derivation the run's evaluation wrote
/// while it is in the store ([`build::Evaluated::derivation`]). Errors name
/// the builder and the command.
pub fn build_on(
    settings: &NixSettings,
    installable: &str,
    evaluated: Option<&build::Evaluated>,
    builder: &SshTarget,
    target: &SshTarget,
) -> Result<Built, NixError> {
    let on = format!("builder {} ({})", builder.name, builder.destination());
    let drv = match evaluated.and_then(build::Evaluated::derivation) {
        Some(d) => d.to_string(),
        None => nix(
            settings,
            drv_argv(installable),
            &format!("nix eval of the derivation of {installable}"),
        )?,
    };
    let drv = build::store_path(drv.trim()).map_err(|e| NixError(format!("{installable}: {e}")))?;
    let _ = std::fs::create_dir_all(&builder.control_dir);
    let mut copy = build::nix_command(settings);
    copy.args(copy_derivation_argv(builder, &drv))
        .env("NIX_SSHOPTS", builder.nix_sshopts().map_err(NixError)?);
    build::run_nix(copy, &format!("{on}: nix copy --derivation of {drv}"))?;
    let out = ssh::run(builder, &realise_command(settings, &drv), None, NIX_LIMIT)
        .map_err(|e| NixError(format!("{on}: {e}")))?;
    if !out.ok() {
        return Err(NixError(format!(
            "{on}: nix-store --realise {drv} failed:\n{}",
            out.stderr.trim()
        )));
    }
    let path = out
        .stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| NixError(format!("{on}: nix-store --realise {drv} printed no path")))
        .and_then(|l| build::store_path(l.trim()).map_err(|e| NixError(format!("{on}: {e}"))))?;
    let same = builder.address == target.address && builder.port == target.port;
    if same {
        return Ok(Built {
            path,
            on_target: true,
            note: format!("built on its host {}", target.address),
        });
    }
    // Straight from the builder to the host, when the builder can reach it.
    let forwarded = ssh::run(
        builder,
        &forward_command(settings, target, &path),
        None,
        NIX_LIMIT,
    );
    match forwarded {
        Ok(o) if o.ok() => Ok(Built {
            path,
            on_target: true,
            note: format!("built on {on}, sent from there to {}", target.address),
        }),
        other => {
            // Else through this machine: fetch it, the deploy sends it on.
            let why = match other {
                Ok(o) => o
                    .stderr
                    .trim()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .to_string(),
                Err(e) => e.to_string(),
            };
            let mut fetch = build::nix_command(settings);
            fetch
                .args(fetch_argv(builder, &path))
                .env("NIX_SSHOPTS", builder.nix_sshopts().map_err(NixError)?);
            build::run_nix(fetch, &format!("{on}: nix copy --from of {path}"))?;
            Ok(Built {
                path,
                on_target: false,
                note: format!(
                    "built on {on}, copied through this machine (the builder could not reach {}: {})",
                    target.address,
                    why.chars().take(200).collect::<String>()
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> NixSettings {
        NixSettings {
            flake: "path:/srv/stack".into(),
            nix_config: Some("sandbox = false\nsubstituters =".into()),
        }
    }

    #[test]
    fn forwarding_and_fetching_are_exact() {
        let t = |address: &str| SshTarget {
            name: "notes".into(),
            address: address.parse().expect("ip"),
            user: "root".into(),
            port: 22,
            key: None,
            known_hosts: crate::nixos::ssh::KnownHosts::AcceptNew,
            known_hosts_file: None,
            connect_timeout: std::time::Duration::from_secs(5),
            control_dir: "/tmp/c".into(),
            persist: 60,
        };
        assert_eq!(
            forward_command(&settings(), &t("10.0.0.12"), "/nix/store/abc-sys"),
            "env NIX_CONFIG='sandbox = false\nsubstituters =' NIX_SSHOPTS='-o BatchMode=yes -o StrictHostKeyChecking=accept-new -o ConnectTimeout=10' nix copy --to 'ssh://root@10.0.0.12' -- '/nix/store/abc-sys'"
        );
        assert_eq!(
            fetch_argv(&t("10.0.0.11"), "/nix/store/abc-sys"),
            [
                "copy",
                "--from",
                "ssh://root@10.0.0.11",
                "--",
                "/nix/store/abc-sys"
            ]
        );
    }

    #[test]
    fn remote_command_lines_are_exact() {
        assert_eq!(
            realise_command(&settings(), "/nix/store/abc-x.drv"),
            "env NIX_CONFIG='sandbox = false\nsubstituters =' nix-store --realise '/nix/store/abc-x.drv'"
        );
        assert_eq!(
            drv_argv("path:/srv/stack#nixosConfigurations.a.config.system.build.toplevel"),
            [
                "eval",
                "--raw",
                "--",
                "path:/srv/stack#nixosConfigurations.a.config.system.build.toplevel.drvPath"
            ]
        );
        let plain = NixSettings {
            nix_config: None,
            ..settings()
        };
        assert_eq!(
            realise_command(&plain, "/nix/store/a'b.drv"),
            r"env nix-store --realise '/nix/store/a'\''b.drv'"
        );
    }
}
