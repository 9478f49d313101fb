//! Every SOPS reference of a manifest, and the check that each one opens:
//! a missing file, key or decryption key is an error at `validate` (and so
//! before any `plan` or `apply`), naming the file and key path, never a value.

use super::SopsRef;
use crate::manifest::rules::service_path;
use crate::manifest::{Diagnostics, EnvValue, Manifest, Path};

/// Each reference with where the manifest writes it.
pub fn references(m: &Manifest) -> Vec<(Path, &SopsRef)> {
    // Terraform variables hold theirs as JSON: see `variable_refs`.
    let mut out: Vec<(Path, &SopsRef)> = Vec::new();
    if let Some(r) = m.nixos.age_key_sops.as_ref() {
        out.push((Path::root().key("nixos").key("age_key"), r));
    }
    if let Some(r) = m
        .verify
        .user
        .as_ref()
        .and_then(|u| u.password_sops.as_ref())
    {
        out.push((Path::root().key("verify").key("user").key("password"), r));
    }
    for s in m.enabled() {
        for (name, v) in &s.nixos.env {
            if let EnvValue::Sops(r) = v {
                out.push((service_path(s).key("nixos").key("env").key(name), r));
            }
        }
        for db in &s.databases {
            if let Some(r) = &db.password {
                let at = match &db.key {
                    Some(k) => service_path(s).key("interface").key("dbs").key(k),
                    None => service_path(s).key("interface").key("db"),
                };
                out.push((at.key("password"), r));
            }
        }
    }
    out
}

/// The references among a phase's Terraform variables (parsed afresh from
/// their JSON; a malformed one is reported by [`check`]).
pub fn variable_refs(
    vars: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Vec<(&str, Result<SopsRef, String>)> {
    vars.iter()
        .filter(|(_, v)| SopsRef::is_ref(v))
        .map(|(k, v)| (k.as_str(), SopsRef::parse(v)))
        .collect()
}

/// Every Terraform phase's variables with where the manifest writes them.
fn terraform_variables(
    m: &Manifest,
) -> Vec<(Path, &std::collections::BTreeMap<String, serde_json::Value>)> {
    let top = Path::root().key("terraform");
    let mut out = vec![
        (
            top.key("infra").key("variables"),
            &m.terraform.infra.variables,
        ),
        (
            top.key("auth_core").key("variables"),
            &m.terraform.auth_core.variables,
        ),
    ];
    for s in m.enabled() {
        let at = service_path(s).key("interface").key("terraform");
        out.push((at.key("variables"), &s.terraform.infra.variables));
        out.push((
            at.key("config").key("variables"),
            &s.terraform.config.variables,
        ));
    }
    out
}

/// Without opening anything: every Terraform variable written as a
/// reference is a well-formed one, and every reference has a file.
pub fn shapes(diags: &mut Diagnostics, m: &Manifest) {
    for (at, vars) in terraform_variables(m) {
        for (name, r) in variable_refs(vars) {
            match r {
                Err(e) => diags.error(&at.key(name), e),
                Ok(r) => no_file(diags, m, &at.key(name), &r),
            }
        }
    }
    for (at, r) in references(m) {
        no_file(diags, m, &at, r);
    }
}

fn no_file(diags: &mut Diagnostics, m: &Manifest, at: &Path, r: &SopsRef) {
    if r.file.is_none() && m.secrets.sops_file.is_none() {
        diags.error_hint(
            at,
            format!("{r}: no SOPS file to read it from"),
            Some("set secrets.sops_file (the stack's SOPS file) or give the reference its own file = \"…\"".into()),
        );
    }
}

/// Opens every reference; each that does not open is an error at its place.
/// Each file is decrypted once (the values stay in this process's memory).
pub fn check(diags: &mut Diagnostics, m: &Manifest) {
    for (at, r) in references(m) {
        if let Err(e) = super::sops::resolve(m, r) {
            diags.error(&at, format!("{r}: {e}"));
        }
    }
    for (at, vars) in terraform_variables(m) {
        for (name, r) in variable_refs(vars) {
            if let Ok(r) = r {
                if let Err(e) = super::sops::resolve(m, &r) {
                    diags.error(&at.key(name), format!("{r}: {e}"));
                }
            }
        }
    }
}
