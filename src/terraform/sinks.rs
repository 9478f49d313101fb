//! Where outputs go after a phase, besides the variables of later phases:
//! environment values for the NixOS phase and health commands, a JSON file of
//! the non-sensitive values for Nix to import, and the stack's SOPS file.

use super::outputs::Outputs;
use serde_json::Value;
use std::collections::BTreeMap;

/// `NIXMOX_TF_<WORKSPACE>_<OUTPUT>`, upper-cased, anything but letters and digits as `_`.
pub fn env_name(workspace: &str, output: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("NIXMOX_TF_{}_{}", clean(workspace), clean(output))
}

/// Every output as an environment value (strings as they are, the rest as JSON).
/// Sensitive values are included: these go only to a host's 0600 env file on
/// tmpfs or a child process's environment, never to a log.
pub fn env_values(by_workspace: &BTreeMap<String, Outputs>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (ws, outputs) in by_workspace {
        for (name, o) in &outputs.0 {
            let text = match &o.value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push((env_name(ws, name), text));
        }
    }
    out
}

/// `{ "<workspace>": { "<output>": value } }` with the non-sensitive values only.
pub fn public_json(by_workspace: &BTreeMap<String, Outputs>) -> Value {
    Value::Object(
        by_workspace
            .iter()
            .map(|(ws, o)| (ws.clone(), Value::Object(o.public())))
            .collect(),
    )
}

/// Every output as a SOPS value under `<workspace>.<output>` (the path
/// sops-nix names `"<workspace>/<output>"`), for [`crate::secrets::sops::write`].
pub fn sops_values(by_workspace: &BTreeMap<String, Outputs>) -> Vec<(Vec<String>, Value)> {
    by_workspace
        .iter()
        .flat_map(|(ws, outputs)| {
            outputs
                .0
                .iter()
                .map(move |(name, o)| (vec![ws.clone(), name.clone()], o.value.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_shell_safe() {
        assert_eq!(
            env_name("wiki-infra", "client.id"),
            "NIXMOX_TF_WIKI_INFRA_CLIENT_ID"
        );
        assert_eq!(
            env_name("auth-core", "wiki_secret"),
            "NIXMOX_TF_AUTH_CORE_WIKI_SECRET"
        );
    }

    #[test]
    fn public_json_leaves_secrets_out() {
        let o = Outputs::parse(
            r#"{"id":{"sensitive":false,"value":"x"},"s":{"sensitive":true,"value":"hunter22"}}"#,
        )
        .expect("parse");
        let by: BTreeMap<String, Outputs> = [("auth-core".to_string(), o)].into_iter().collect();
        assert_eq!(public_json(&by).to_string(), r#"{"auth-core":{"id":"x"}}"#);
        let env = env_values(&by);
        assert!(env.contains(&("NIXMOX_TF_AUTH_CORE_S".to_string(), "hunter22".to_string())));
    }
}
