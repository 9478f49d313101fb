//! The environment file a host receives: the service's own `nixos.env`
//! values (plain or from SOPS), then `KEY=VALUE` lines of the outputs of
//! the Terraform workspaces it sees (every host infra and auth-core; a core
//! host also its own infra phase; an application also those its
//! `tf:service-config` phase receives). One function for `apply`, which
//! writes it, and `plan`, which compares its hash with the host's.

use crate::manifest::{EnvValue, Manifest, Service};
use crate::plan::Phase;
use crate::terraform::phases::TfStep;
use crate::terraform::{sinks, Outputs};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The workspaces whose outputs go into `s`'s environment file. A core
/// host is deployed before `tf:auth-core` runs, with the outputs auth-core
/// held then, and once more after it when they changed (see the plan's
/// `nix:core:<name>:again`), so that an admin UI's OIDC client or an
/// outpost's token reaches the core too.
pub fn workspaces(tf_steps: &HashMap<String, TfStep>, s: &Service) -> BTreeSet<String> {
    let own = tf_steps
        .values()
        .filter(|t| {
            t.service.as_deref() == Some(s.name.as_str()) && t.phase == Phase::TfServiceConfig
        })
        .flat_map(|t| t.upstream.iter().cloned());
    let mut set: BTreeSet<String> = own
        .chain(["infra".to_string(), "auth-core".to_string()])
        .collect();
    if s.is_core()
        && tf_steps.values().any(|t| {
            t.service.as_deref() == Some(s.name.as_str()) && t.phase == Phase::TfServiceInfra
        })
    {
        set.insert(format!("{}-infra", s.name));
    }
    set
}

/// The file's text from the service's `nixos.env` and the outputs `known`
/// by workspace; `None` when there is nothing to put in it. Secrets
/// inside: it goes only to the host. The error names a SOPS value that
/// cannot be read (never the value).
pub fn file(
    m: &Manifest,
    tf_steps: &HashMap<String, TfStep>,
    s: &Service,
    known: &BTreeMap<String, Outputs>,
) -> Result<Option<String>, String> {
    let wanted = workspaces(tf_steps, s);
    let picked: BTreeMap<String, Outputs> = known
        .iter()
        .filter(|(ws, _)| wanted.contains(*ws))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut lines: Vec<(String, String)> = Vec::new();
    for (name, v) in &s.nixos.env {
        let text = match v {
            EnvValue::Text(t) => t.clone(),
            EnvValue::Sops(r) => crate::secrets::sops::resolve(m, r)
                .map_err(|e| format!("service {}: nixos.env.{name} ({r}): {e}", s.name))?
                .text(),
        };
        lines.push((name.clone(), text));
    }
    lines.extend(sinks::env_values(&picked));
    if lines.is_empty() {
        return Ok(None);
    }
    let mut text = String::new();
    for (k, v) in lines {
        // One line per value: a value with a line break is written as a JSON string.
        let v = if v.contains('\n') {
            serde_json::Value::String(v).to_string()
        } else {
            v
        };
        text.push_str(&format!("{k}={v}\n"));
    }
    Ok(Some(text))
}
