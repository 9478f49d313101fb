//! The manifest layer: finding and reading the file, the typed model, and
//! validation. Nothing here runs anything but Nix's evaluator.

mod convert;
pub mod decode;
pub mod diag;
pub mod flake;
pub mod model;
mod parse;
mod paths;
pub mod rules;
pub mod source;
pub mod syntax;

pub use diag::{Diagnostic, Diagnostics, Path, Severity};
pub use model::*;
pub use source::{Format, Origin, SourceError};

use serde_json::Value;
use std::path::Path as FsPath;

/// A manifest that passed validation, with the warnings found on the way.
#[derive(Debug)]
pub struct Validated {
    pub manifest: Manifest,
    pub warnings: Vec<Diagnostic>,
}

/// Why a manifest could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("manifest {manifest} is invalid: {error_total} error(s)")]
    Invalid {
        manifest: String,
        /// The first errors (and a last line counting the rest).
        errors: Vec<Diagnostic>,
        warnings: Vec<Diagnostic>,
        /// How many errors and warnings there were in all.
        error_total: usize,
        warning_total: usize,
    },
}

/// Reads, parses and validates the manifest at `path`, every SOPS value it
/// names included (each file decrypted once, in memory).
pub fn load(path: &FsPath) -> Result<Validated, LoadError> {
    let value = source::read(path)?;
    validate_with(path, &value, true)
}

/// [`load`] without opening the SOPS files, for what never needs their
/// values (taking the lab down, asking how it is).
pub fn load_without_secrets(path: &FsPath) -> Result<Validated, LoadError> {
    let value = source::read(path)?;
    validate_with(path, &value, false)
}

/// Opens every SOPS value `m` names, for a manifest read with
/// [`load_without_secrets`]; the errors are [`load`]'s.
pub fn open_secrets(m: &Manifest) -> Result<(), LoadError> {
    let mut diags = Diagnostics::default();
    crate::secrets::check::check(&mut diags, m);
    if !diags.has_errors() {
        return Ok(());
    }
    let (error_total, warning_total) = diags.counts();
    let (errors, warnings) = diags.into_sorted();
    Err(LoadError::Invalid {
        manifest: m.source.display().to_string(),
        errors,
        warnings,
        error_total,
        warning_total,
    })
}

/// Validates an already parsed manifest tree (every format ends up here);
/// SOPS references are checked for their shape only, not opened.
pub fn validate_value(source: &FsPath, value: &Value) -> Result<Validated, LoadError> {
    validate_with(source, value, false)
}

fn validate_with(source: &FsPath, value: &Value, secrets: bool) -> Result<Validated, LoadError> {
    let mut diags = Diagnostics::default();
    let manifest = parse::manifest(&mut diags, source, value);
    let manifest = manifest.map(|mut m| {
        rules::check(&mut diags, &mut m);
        paths::check(&mut diags, &m);
        flake::check(&mut diags, &m);
        crate::graph::check_cycles(&mut diags, &m);
        crate::secrets::check::shapes(&mut diags, &m);
        // Decrypting is worth doing only for a manifest that is otherwise sound.
        if secrets && !diags.has_errors() {
            crate::secrets::check::check(&mut diags, &m);
        }
        m
    });
    let (error_total, warning_total) = diags.counts();
    let (errors, warnings) = diags.into_sorted();
    match manifest {
        Some(manifest) if errors.is_empty() => Ok(Validated { manifest, warnings }),
        _ => Err(LoadError::Invalid {
            manifest: source.display().to_string(),
            errors,
            warnings,
            error_total,
            warning_total,
        }),
    }
}
