//! SOPS references in the manifest: where they are taken, their shape
//! checked offline (no file opened), and a plaintext secret still refused.

use nixmox::manifest::{validate_value, Diagnostic, EnvValue, LoadError, Manifest};
use serde_json::{json, Value};
use std::path::Path;

fn small() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/small/manifest.json");
    let text = std::fs::read_to_string(&path).expect("read examples/small/manifest.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn check(change: impl FnOnce(&mut Value)) -> Result<(Manifest, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut v = small();
    change(&mut v);
    match validate_value(Path::new("sops.json"), &v) {
        Ok(valid) => Ok((valid.manifest, valid.warnings)),
        Err(LoadError::Invalid { errors, .. }) => Err(errors),
        Err(e) => panic!("{e}"),
    }
}

fn error_at(errors: &[Diagnostic], path: &str, words: &str) -> bool {
    errors
        .iter()
        .any(|e| e.path.to_string() == path && e.message.contains(words))
}

#[test]
fn references_are_taken_where_secrets_are() {
    let (m, _) = check(|v| {
        v["secrets"] = json!({ "sops_file": "secrets/default.yaml", "age_key_file": "age.key" });
        v["nixos"] = json!({ "age_key": { "sops": "hosts.age_key" } });
        v["verify"] =
            json!({ "user": { "username": "v", "password": { "sops": "verify.password" } } });
        v["terraform"] = json!({ "auth_core": { "modules": [], "variables": {
            "authentik_token": { "sops": ["authentik", "token.v2"], "file": "other.yaml" } } } });
        v["services"]["wiki"]["nixos"] = json!({ "env": {
            "WIKI_MODE": "public", "WIKI_KEY": { "sops": "wiki.key" } } });
        v["services"]["wiki"]["interface"]["db"]["password"] =
            json!({ "sops": "wiki.db_password" });
    })
    .expect("valid");
    assert_eq!(m.secrets.sops_file.as_deref(), Some("secrets/default.yaml"));
    assert!(m.secrets.write_outputs);
    assert_eq!(
        m.nixos.age_key_sops.as_ref().map(|r| r.key.join(".")),
        Some("hosts.age_key".into())
    );
    let user = m.verify.user.as_ref().expect("user");
    assert_eq!(
        user.password_sops.as_ref().map(|r| r.to_string()),
        Some("key verify.password of secrets.sops_file".into())
    );
    let wiki = m.service("wiki").expect("wiki");
    assert_eq!(
        wiki.nixos.env.get("WIKI_MODE"),
        Some(&EnvValue::Text("public".into()))
    );
    assert!(
        matches!(wiki.nixos.env.get("WIKI_KEY"), Some(EnvValue::Sops(r)) if r.key == ["wiki", "key"])
    );
    assert!(wiki.databases[0].password.is_some());
    // The reference, never a value, is what the model (and so the plan and the state) holds.
    let shown = serde_json::to_string(&m).expect("serialise");
    assert!(
        shown.contains("\"sops\"") || shown.contains("token.v2"),
        "{shown}"
    );
}

#[test]
fn malformed_references_are_refused_offline() {
    let errors = check(|v| {
        v["terraform"] = json!({ "infra": { "modules": [], "variables": {
            "a": { "sops": "" }, "b": { "sops": "x", "file": "-rf" }, "c": { "sops": 7 } } } });
        v["secrets"] = json!({ "sops_file": "s.yaml" });
    })
    .expect_err("refused");
    assert!(
        error_at(&errors, "terraform.infra.variables.a", "empty part"),
        "{errors:?}"
    );
    assert!(
        error_at(&errors, "terraform.infra.variables.b", "-"),
        "{errors:?}"
    );
    assert!(
        error_at(&errors, "terraform.infra.variables.c", "key path"),
        "{errors:?}"
    );
}

#[test]
fn a_reference_needs_a_file() {
    let errors = check(|v| {
        v["verify"] =
            json!({ "user": { "username": "v", "password": { "sops": "verify.password" } } });
    })
    .expect_err("refused");
    assert!(
        errors
            .iter()
            .any(|e| e.path.to_string() == "verify.user.password"
                && e.message.contains("no SOPS file")
                && e.hint
                    .as_deref()
                    .is_some_and(|h| h.contains("secrets.sops_file"))),
        "{errors:?}"
    );
}

#[test]
fn plaintext_secrets_are_still_refused() {
    let errors = check(|v| {
        v["verify"] = json!({ "user": { "username": "v", "password": "hunter22" } });
    })
    .expect_err("refused");
    assert!(
        errors
            .iter()
            .any(|e| e.path.to_string() == "verify.user.password"
                && e.hint.as_deref().is_some_and(|h| h.contains("sops"))
                && !e.message.contains("hunter22")),
        "{errors:?}"
    );
    let (_, warnings) = check(|v| {
        v["services"]["wiki"]["interface"]["db"]["password"] = json!("hunter22");
    })
    .expect("a warning only");
    assert!(warnings.iter().any(
        |w| w.path.to_string() == "services.wiki.interface.db.password"
            && w.message.contains("sops")
            && !w.message.contains("hunter22")
    ));
}

#[test]
fn env_names_are_checked() {
    let errors = check(|v| {
        v["services"]["wiki"]["nixos"] = json!({ "env": {
            "1BAD": "x", "NIXMOX_TF_X": "y", "OK": "line\nbreak", "ALSO": 3 } });
    })
    .expect_err("refused");
    assert!(
        error_at(
            &errors,
            "services.wiki.nixos.env.1BAD",
            "not an environment variable name"
        ),
        "{errors:?}"
    );
    assert!(
        error_at(
            &errors,
            "services.wiki.nixos.env.NIXMOX_TF_X",
            "nixmox's own"
        ),
        "{errors:?}"
    );
    assert!(
        error_at(&errors, "services.wiki.nixos.env.OK", "line"),
        "{errors:?}"
    );
    assert!(
        error_at(&errors, "services.wiki.nixos.env.ALSO", "a string"),
        "{errors:?}"
    );
}

#[test]
fn both_age_keys_is_one_too_many() {
    let errors = check(|v| {
        v["secrets"] = json!({ "sops_file": "s.yaml" });
        v["nixos"] = json!({ "age_key_file": "k.txt", "age_key": { "sops": "hosts.age_key" } });
    })
    .expect_err("refused");
    assert!(error_at(&errors, "nixos.age_key", "keep one"), "{errors:?}");
}
