//! `nixmox lab …`: the lab's life cycle.

use super::common::{self, CliError};
use super::{Cli, LabCommand};
use crate::lab::{self, host, setup, LabConfig};
use std::fmt::Write;
use std::process::ExitCode;

fn lab_err(e: lab::LabError) -> CliError {
    CliError::Message(e.to_string())
}

pub fn run(cli: &Cli, cmd: &LabCommand) -> Result<ExitCode, CliError> {
    match cmd {
        LabCommand::HostUp { name, ip } => {
            lab::require_root().map_err(lab_err)?;
            let cfg = LabConfig::load(&lab::lab_dir()).map_err(lab_err)?;
            host::up(&cfg, name, *ip).map_err(lab_err)?;
            eprintln!("lab: host {name} ({ip}) is up");
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::HostDown { name, ip } => {
            lab::require_root().map_err(lab_err)?;
            let cfg = LabConfig::load(&lab::lab_dir()).map_err(lab_err)?;
            host::down(&cfg, name, *ip).map_err(lab_err)?;
            eprintln!("lab: host {name} ({ip}) is gone");
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Up { no_systems } => {
            lab::require_root().map_err(lab_err)?;
            // The lab's SOPS file before its values are read, when the
            // manifest reads from it (the lab's own manifest does).
            let v = common::load_without_secrets(cli)?;
            if lab::secrets::wanted(&v.manifest, &lab::lab_dir()) {
                lab::secrets::ensure(&lab::lab_dir()).map_err(lab_err)?;
            }
            crate::manifest::open_secrets(&v.manifest)?;
            setup::up(&v.manifest, !no_systems, &mut |line| {
                eprintln!("lab: {line}")
            })
            .map_err(lab_err)?;
            common::emit("lab is up\n")?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Down => {
            lab::require_root().map_err(lab_err)?;
            let v = common::load_without_secrets(cli)?;
            setup::down(&v.manifest, &mut |line| eprintln!("lab: {line}")).map_err(lab_err)?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Status { json } => {
            let v = common::load_without_secrets(cli)?;
            let st = setup::status(&v.manifest).map_err(lab_err)?;
            if *json {
                common::emit(&common::to_json(&st)?)?;
            } else {
                let mut out = String::new();
                let _ = writeln!(
                    out,
                    "lab {} (bridge {}, unreachable route {}, files in {})",
                    if st.up { "up" } else { "not up" },
                    yes(st.bridge),
                    yes(st.route),
                    st.dir
                );
                for h in &st.hosts {
                    let _ = writeln!(
                        out,
                        "  {:<12} {:<15} namespace {:<3} ssh {:<3} processes {}",
                        h.name,
                        h.ip,
                        yes(h.namespace),
                        yes(h.ssh),
                        h.processes
                    );
                }
                common::emit(&out)?;
            }
            Ok(if st.up {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
