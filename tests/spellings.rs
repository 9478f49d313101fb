//! Older spellings found in real manifests: each either means what its
//! author meant or is refused with a hint that says what to write instead.

use nixmox::manifest::{validate_value, Diagnostic, LoadError, Manifest};
use serde_json::{json, Value};
use std::path::Path;

fn small() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/small/manifest.json");
    let text = std::fs::read_to_string(&path).expect("read examples/small/manifest.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn accepted(change: impl FnOnce(&mut Value)) -> (Manifest, Vec<Diagnostic>) {
    let mut v = small();
    change(&mut v);
    match validate_value(Path::new("spellings.json"), &v) {
        Ok(valid) => (valid.manifest, valid.warnings),
        Err(e) => panic!("refused: {e:?}"),
    }
}

fn refused(change: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut v = small();
    change(&mut v);
    match validate_value(Path::new("spellings.json"), &v) {
        Ok(_) => panic!("accepted:\n{v:#}"),
        Err(LoadError::Invalid { errors, .. }) => errors
            .iter()
            .map(|d| {
                format!(
                    "{}: {} ({})",
                    d.path,
                    d.message,
                    d.hint.as_deref().unwrap_or("")
                )
            })
            .collect(),
        Err(other) => panic!("{other}"),
    }
}

#[test]
fn standalone_marks_the_database_server_itself() {
    let (m, warnings) = accepted(|v| {
        v["core_services"]["postgresql"]["interface"] =
            json!({"db": {"mode": "standalone", "port": 5432}});
    });
    assert!(m
        .service("postgresql")
        .expect("postgresql")
        .databases
        .is_empty());
    assert!(
        warnings.iter().any(
            |w| w.path.to_string() == "core_services.postgresql.interface.db.mode"
                && w.message.contains("the database server itself")
        ),
        "{warnings:?}"
    );
    let errors =
        refused(|v| v["services"]["wiki"]["interface"]["db"]["mode"] = json!("standalone"));
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("services.wiki.interface.db.mode")
                && e.contains("\"terraform\"")
                && e.contains("\"native-migration\"")),
        "{errors:?}"
    );
}

#[test]
fn local_auth_is_the_identity_provider_logging_in_itself() {
    let (m, warnings) = accepted(|v| {
        v["core_services"]["authentik"]["interface"] = json!({"auth": {"type": "local"}});
    });
    assert!(m.service("authentik").expect("authentik").auth.is_none());
    assert!(
        !warnings.iter().any(|w| w.path.to_string().contains("auth")),
        "{warnings:?}"
    );
    let errors = refused(|v| v["services"]["wiki"]["interface"]["auth"] = json!({"type": "local"}));
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("services.wiki.interface.auth.type")
                && e.contains("forward_auth")),
        "{errors:?}"
    );
}

#[test]
fn schema_files_are_migrations() {
    let (m, _) = accepted(|v| {
        v["services"]["wiki"]["interface"]["db"]["mode"] = json!("native-migration");
        v["services"]["wiki"]["interface"]["db"]["schema_files"] = json!(["Cargo.toml"]);
    });
    let wiki = m.service("wiki").expect("wiki");
    assert_eq!(wiki.databases[0].migrations, ["Cargo.toml"]);
    let errors = refused(|v| {
        v["services"]["wiki"]["interface"]["db"]["migrations"] = json!(["a.sql"]);
        v["services"]["wiki"]["interface"]["db"]["schema_files"] = json!(["b.sql"]);
    });
    assert!(
        errors
            .iter()
            .any(|e| e.contains("two spellings of one field")),
        "{errors:?}"
    );
}

#[test]
fn sizes_may_carry_units() {
    let (m, _) = accepted(|v| {
        v["services"]["wiki"]["resources"] = json!({"memory": "2GB", "disk_gb": "64G", "cores": 2});
    });
    let r = m
        .service("wiki")
        .and_then(|s| s.host.resources.clone())
        .expect("resources");
    assert_eq!((r.memory, r.disk_gb), (Some(2048), Some(64)));
    let errors = refused(|v| v["services"]["wiki"]["resources"] = json!({"memory": "lots"}));
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("services.wiki.resources.memory") && e.contains("\"2GB\"")),
        "{errors:?}"
    );
    let errors = refused(|v| v["services"]["wiki"]["resources"] = json!({"disk_gb": "1536M"}));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("not a whole number of GiB")),
        "{errors:?}"
    );
}
