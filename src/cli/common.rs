//! What every command shares: finding and loading the manifest, and printing
//! errors and warnings the same way.

use super::Cli;
use crate::graph::SelectError;
use crate::manifest::{self, Diagnostic, LoadError, Origin, Validated};
use crate::report;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error("{0}")]
    Message(String),
}

/// Finds the manifest (telling the user when it was discovered) without reading it.
pub fn locate(cli: &Cli) -> Result<PathBuf, CliError> {
    let env = std::env::var("NIXMOX_MANIFEST").ok();
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::Message(format!("cannot read the current directory: {e}")))?;
    let (path, origin) = manifest::source::locate(cli.manifest.as_deref(), env.as_deref(), &cwd)
        .map_err(LoadError::from)?;
    if let Origin::Discovered { others } = origin {
        let shown = path.strip_prefix(&cwd).unwrap_or(&path);
        let mut note = format!(
            "nixmox: using manifest {} (found in the current directory)",
            shown.display()
        );
        if !others.is_empty() {
            let names: Vec<String> = others
                .iter()
                .map(|p| p.strip_prefix(&cwd).unwrap_or(p).display().to_string())
                .collect();
            note.push_str(&format!(
                "; also found {}: pass -m to choose",
                names.join(", ")
            ));
        }
        eprintln!("{note}");
    }
    Ok(path)
}

/// Locates, reads and validates the manifest; prints its warnings on stderr.
pub fn load(cli: &Cli) -> Result<Validated, CliError> {
    let path = locate(cli)?;
    let validated = manifest::load(&path)?;
    print_warnings(&validated.warnings);
    Ok(validated)
}

/// [`load`] without opening the SOPS files the manifest names (for the
/// lab's own life cycle, which never needs their values).
pub fn load_without_secrets(cli: &Cli) -> Result<Validated, CliError> {
    let path = locate(cli)?;
    let validated = manifest::load_without_secrets(&path)?;
    print_warnings(&validated.warnings);
    Ok(validated)
}

pub fn print_warnings(warnings: &[Diagnostic]) {
    let color = report::stderr_color();
    for w in warnings {
        eprintln!("{}", report::diagnostic_line(w, color));
    }
}

pub fn print_error(e: &CliError) {
    let color = report::stderr_color();
    match e {
        CliError::Load(LoadError::Invalid {
            manifest,
            errors,
            warnings,
            error_total,
            warning_total,
        }) => {
            for d in errors.iter().chain(warnings) {
                eprintln!("{}", report::diagnostic_line(d, color));
            }
            eprintln!(
                "manifest {manifest} is invalid: {error_total} error{}, {warning_total} warning{}; nothing was run",
                if *error_total == 1 { "" } else { "s" },
                if *warning_total == 1 { "" } else { "s" },
            );
        }
        other => {
            let label = if color {
                "\x1b[1;31merror\x1b[0m"
            } else {
                "error"
            };
            // Tools' and hosts' words pass through here: no escape sequence
            // of theirs reaches the terminal raw.
            eprintln!(
                "{label}: {}",
                crate::manifest::syntax::sanitize(&other.to_string())
            );
        }
    }
}

/// Writes to stdout, treating a closed pipe (`| head`) as success.
pub fn emit(text: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::Message(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

pub fn to_json<T: serde::Serialize>(value: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(value)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| CliError::Message(format!("cannot encode JSON: {e}")))
}

/// The state store for this manifest: `--state`/`NIXMOX_STATE`, else `.nixmox/state.db` beside it.
pub fn open_store(
    cli: &Cli,
    m: &crate::manifest::Manifest,
) -> Result<Box<dyn crate::state::Store>, CliError> {
    let work_dir = m.work_dir();
    crate::manifest::flake::prepare_work_dir(&work_dir).map_err(CliError::Message)?;
    crate::state::open(cli.state.as_deref(), &work_dir)
        .map_err(|e| CliError::Message(e.to_string()))
}
