//! The floor a no-op re-apply is measured against (benches/noop_apply.rs
//! and benches/scale.rs): the checks no run can avoid, all at once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The environment nixmox (and the floor) run in on a lab kept in `lab`
/// with its state in `state`.
pub fn lab_env(lab: &Path, state: &Path) -> Vec<(&'static str, PathBuf)> {
    let tool = |var: &str, default: &str| {
        PathBuf::from(std::env::var(var).unwrap_or_else(|_| default.into()))
    };
    vec![
        ("NIXMOX_LAB_DIR", lab.to_path_buf()),
        ("NIXMOX_STATE_DIR", state.to_path_buf()),
        ("NIXMOX_SSH_KEY", lab.join("ssh/id_ed25519")),
        ("NIXMOX_SSH_KNOWN_HOSTS_FILE", lab.join("ssh/known_hosts")),
        ("NIXMOX_CA_FILE", lab.join("ca/ca.crt")),
        (
            "NIXMOX_TERRAFORM",
            tool("NIXMOX_TERRAFORM", "/opt/nixmox/bin/terraform"),
        ),
        ("NIXMOX_SOPS", tool("NIXMOX_SOPS", "/opt/nixmox/bin/sops")),
    ]
}

/// The unavoidable checks, all at once: what a no-op run must at least do,
/// each the cheapest way known, from a fresh process's point of view (the
/// manifest read, SSH connections opened anew). Read the manifest and the
/// outputs each workspace holds; then, side by side: a Terraform plan per
/// workspace; every system's store path evaluated, and each host asked which
/// system it runs and whether its probes pass; each service's end-to-end
/// checks (nixmox's contract verifies every service, the core included, on
/// every apply).
///
/// `control` says which connections the checks ride on: a private one
/// (`Control::with_persist(0)`) opens every connection anew and ends them
/// after; the shared one (`Control::with_persist(60)`) rides on the
/// connections runs kept, as a run does.
pub fn unavoidable(
    manifest: &Path,
    vars: &[(&str, PathBuf)],
    control: &nixmox::nixos::ssh_control::Control,
) -> Duration {
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
    let start = Instant::now();
    let validated = nixmox::manifest::load(manifest).expect("manifest");
    let m = &validated.manifest;
    let plan = nixmox::plan::build(m, &[]).expect("plan");
    let tf = nixmox::terraform::stack::terraform_for(m).expect("terraform");
    let base = m.dir();
    let steps: Vec<_> = nixmox::terraform::phases::steps(m, &plan)
        .into_iter()
        .filter(|s| !s.config.is_empty())
        .collect();
    let known = nixmox::terraform::stack::outputs_all(m, &plan, &tf).expect("outputs");
    let nix = nixmox::nixos::targets::nix_settings(m);
    let hosts: Vec<_> = m.enabled().collect();
    let attributes: Vec<(String, String)> = hosts
        .iter()
        .map(|s| (s.name.clone(), nixmox::nixos::targets::attribute(s)))
        .collect();
    let vctx = nixmox::verify::Context::new(m, &known);
    std::thread::scope(|scope| {
        for step in &steps {
            let (tf, known, base) = (&tf, &known, &base);
            scope.spawn(move || {
                tf.plan_phase(
                    &step.spec(m, base, known),
                    nixmox::terraform::command::PlanMode::Normal,
                )
                .expect("plan")
            });
        }
        let (nix, attributes) = (&nix, &attributes);
        scope.spawn(move || {
            let evaluated =
                nixmox::nixos::evaluation::evaluate_map(nix, Some(&m.work_dir()), attributes);
            assert_eq!(evaluated.len(), attributes.len(), "every system evaluated");
        });
        for s in &hosts {
            scope.spawn(move || {
                let t = nixmox::nixos::targets::target(m, s, control).expect("target");
                let probe = format!(
                    "{}; {}",
                    nixmox::nixos::remote::current_system(),
                    match &s.health.startup {
                        Some(nixmox::manifest::Probe::Command(c)) => c.as_str(),
                        _ => "true",
                    }
                );
                nixmox::nixos::ssh::run(&t, &probe, None, Duration::from_secs(10)).expect("ssh");
                if let Some(p) = &s.health.readiness {
                    nixmox::nixos::health::check(p, &t, Duration::from_secs(10)).expect("probe");
                }
            });
        }
        for s in m.enabled() {
            let vctx = &vctx;
            scope.spawn(move || {
                let checks = nixmox::verify::service(m, s, vctx);
                assert!(checks.iter().all(|c| c.ok && !c.skipped), "{checks:?}");
            });
        }
    });
    let elapsed = start.elapsed();
    control.end();
    elapsed
}

/// One host's own deploy steps alone, as nixmox takes them for a host whose
/// system changed, with nothing else of the stack around them: build its
/// system here, then deploy it (one look at the host, copy of the closure,
/// profile, guarded switch, health gate, confirmation), then its end-to-end
/// checks. The manifest is read and the workspaces' outputs are known
/// before the clock starts; no environment file or key is sent (the run
/// sends both), so this baseline is, if anything, cheaper than the steps in
/// a run. `control` as for [`unavoidable`].
#[allow(dead_code)] // benches/noop_apply.rs has no change to measure
pub fn own_deploy(
    manifest: &Path,
    vars: &[(&str, PathBuf)],
    control: &nixmox::nixos::ssh_control::Control,
    service: &str,
) -> Duration {
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
    let validated = nixmox::manifest::load(manifest).expect("manifest");
    let m = &validated.manifest;
    let plan = nixmox::plan::build(m, &[]).expect("plan");
    let tf = nixmox::terraform::stack::terraform_for(m).expect("terraform");
    let known = nixmox::terraform::stack::outputs_all(m, &plan, &tf).expect("outputs");
    let nix = nixmox::nixos::targets::nix_settings(m);
    let s = m.service(service).expect("service");
    let vctx = nixmox::verify::Context::new(m, &known);
    let start = Instant::now();
    let installable =
        nixmox::nixos::build::installable(&nix.flake, &nixmox::nixos::targets::attribute(s));
    let system = nixmox::nixos::build::build(&nix, &[installable])
        .expect("build")
        .pop()
        .expect("a built system");
    let t = nixmox::nixos::targets::target(m, s, control).expect("target");
    let request = nixmox::nixos::deploy::DeployRequest {
        target: &t,
        nix: &nix,
        system: &system,
        goal: nixmox::nixos::deploy::Goal::Switch,
        env: None,
        age_key: None,
        health: &s.health,
        ports: &s.ports,
        activation_timeout: Duration::from_secs(m.nixos.activation_timeout),
        rollback: true,
        force: false,
        confirm_timeout: s.nixos.confirm_timeout.unwrap_or(m.nixos.confirm_timeout),
        closure_on_target: false,
        seen: None,
        switched: None,
    };
    let outcome = nixmox::nixos::deploy::deploy(&request).expect("deploy");
    assert!(
        matches!(outcome, nixmox::nixos::deploy::Outcome::Activated { .. }),
        "{service}'s own deploy activated nothing: its system was not new"
    );
    let checks = nixmox::verify::service(m, s, &vctx);
    assert!(checks.iter().all(|c| c.ok && !c.skipped), "{checks:?}");
    let elapsed = start.elapsed();
    control.end();
    elapsed
}
