//! The environment file a host receives: `KEY=VALUE` lines of the outputs of
//! the Terraform workspaces applied before it is deployed (for a core host
//! infra and its own infra phase; for an application also auth-core and
//! those its `tf:service-config` phase receives). One function for `apply`, which
//! writes it, and `plan`, which compares its hash with the host's.

use crate::manifest::Service;
use crate::plan::Phase;
use crate::terraform::phases::TfStep;
use crate::terraform::{sinks, Outputs};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The workspaces whose outputs go into `s`'s environment file: those
/// applied before its host is deployed. A core host deploys before
/// `tf:auth-core`, so it sees `infra` only.
pub fn workspaces(tf_steps: &HashMap<String, TfStep>, s: &Service) -> BTreeSet<String> {
    let own = tf_steps
        .values()
        .filter(|t| {
            t.service.as_deref() == Some(s.name.as_str()) && t.phase == Phase::TfServiceConfig
        })
        .flat_map(|t| t.upstream.iter().cloned());
    if s.is_core() {
        // Deployed before tf:auth-core: infra, and its own infra when it has one.
        let mut set: BTreeSet<String> = own.chain(["infra".to_string()]).collect();
        if tf_steps.values().any(|t| {
            t.service.as_deref() == Some(s.name.as_str()) && t.phase == Phase::TfServiceInfra
        }) {
            set.insert(format!("{}-infra", s.name));
        }
        set.remove("auth-core");
        return set;
    }
    own.chain(["infra".to_string(), "auth-core".to_string()])
        .collect()
}

/// The file's text from the outputs `known` by workspace; `None` when none of
/// its workspaces has outputs. Secrets inside: it goes only to the host.
pub fn file(
    tf_steps: &HashMap<String, TfStep>,
    s: &Service,
    known: &BTreeMap<String, Outputs>,
) -> Option<String> {
    let wanted = workspaces(tf_steps, s);
    let picked: BTreeMap<String, Outputs> = known
        .iter()
        .filter(|(ws, _)| wanted.contains(*ws))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if picked.is_empty() {
        return None;
    }
    let mut text = String::new();
    for (k, v) in sinks::env_values(&picked) {
        let v = if v.contains('\n') {
            serde_json::Value::String(v).to_string()
        } else {
            v
        };
        text.push_str(&format!("{k}={v}\n"));
    }
    Some(text)
}
