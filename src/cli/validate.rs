//! `nixmox validate`: every problem at once, nothing run.

use super::common::{self, CliError};
use super::{Cli, ValidateArgs};
use crate::manifest::{self, Diagnostic, LoadError, Manifest};
use serde::Serialize;
use std::process::ExitCode;

#[derive(Serialize)]
struct Report<'a> {
    valid: bool,
    manifest: String,
    errors: &'a [Diagnostic],
    warnings: &'a [Diagnostic],
    #[serde(skip_serializing_if = "Option::is_none")]
    services: Option<Counts>,
}

#[derive(Serialize)]
struct Counts {
    core: usize,
    applications: usize,
    disabled: usize,
}

fn counts(m: &Manifest) -> Counts {
    Counts {
        core: m.enabled().filter(|s| s.is_core()).count(),
        applications: m.enabled().filter(|s| !s.is_core()).count(),
        disabled: m.services.iter().filter(|s| !s.enabled).count(),
    }
}

pub fn run(cli: &Cli, args: &ValidateArgs) -> Result<ExitCode, CliError> {
    let path = common::locate(cli)?;
    let shown = path.display().to_string();
    let result = manifest::load(&path);
    if !args.json {
        let v = result?;
        common::print_warnings(&v.warnings);
        let c = counts(&v.manifest);
        common::emit(&format!(
            "manifest {shown} is valid: {} core and {} application service{}{}{}\n",
            c.core,
            c.applications,
            if c.applications == 1 { "" } else { "s" },
            if c.disabled > 0 {
                format!(", {} disabled", c.disabled)
            } else {
                String::new()
            },
            if v.warnings.is_empty() {
                String::new()
            } else {
                format!(", {} warning(s)", v.warnings.len())
            },
        ))?;
        common::emit(&format!(
            "systems: {}\n",
            manifest::flake::locate(&v.manifest)
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    let (report, ok) = match &result {
        Ok(v) => (
            Report {
                valid: true,
                manifest: shown,
                errors: &[],
                warnings: &v.warnings,
                services: Some(counts(&v.manifest)),
            },
            true,
        ),
        Err(LoadError::Invalid {
            errors, warnings, ..
        }) => (
            Report {
                valid: false,
                manifest: shown,
                errors,
                warnings,
                services: None,
            },
            false,
        ),
        Err(LoadError::Source(e)) => {
            // A file that cannot be read or parsed is reported in the same shape.
            let single = vec![Diagnostic {
                severity: manifest::Severity::Error,
                path: manifest::Path::root(),
                message: e.to_string(),
                hint: None,
            }];
            common::emit(&common::to_json(&Report {
                valid: false,
                manifest: shown,
                errors: &single,
                warnings: &[],
                services: None,
            })?)?;
            return Ok(ExitCode::from(1));
        }
    };
    common::emit(&common::to_json(&report)?)?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
