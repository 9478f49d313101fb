//! The Terraform `pg` state backend with a real PostgreSQL: workspaces live
//! in the database, and with state off the disk no file holds a sensitive
//! output at all.

#[path = "support/postgres.rs"]
mod postgres;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tool(name: &str, env: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| {
        let p = format!("/opt/nixmox/bin/{name}");
        assert!(
            Path::new(&p).exists(),
            "{name} is not installed: run scripts/setup.sh"
        );
        p
    })
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn pg_backend_keeps_state_and_secrets_off_the_disk() {
    let pg = postgres::Postgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let mut m: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/small/manifest.json"),
        )
        .expect("read"),
    )
    .expect("json");
    m["terraform"] =
        json!({ "infra": { "modules": ["tf/infra"] }, "auth_core": { "modules": ["tf/auth"] } });
    std::fs::write(root.join("manifest.json"), m.to_string()).expect("write");
    for (name, body) in [
        ("infra", "variable \"hosts\" { type = any }\nresource \"terraform_data\" \"h\" {\n  for_each = var.hosts\n  input = each.value.ip\n}\n"),
        (
            "auth",
            "resource \"terraform_data\" \"c\" { input = \"wiki\" }\noutput \"token\" {\n  value = sha256(\"${terraform_data.c.id}-token\")\n  sensitive = true\n}\n",
        ),
    ] {
        std::fs::create_dir_all(root.join("tf").join(name)).expect("mkdir");
        std::fs::write(root.join("tf").join(name).join("main.tf"), format!("terraform {{\n  backend \"pg\" {{}}\n}}\n{body}")).expect("write");
    }
    let nixmox = |args: &[&str]| -> Output {
        Command::new(env!("CARGO_BIN_EXE_nixmox"))
            .args(args)
            .arg("-m")
            .arg(root.join("manifest.json"))
            .env("NIXMOX_TERRAFORM", tool("terraform", "NIXMOX_TERRAFORM"))
            .env("PG_CONN_STR", pg.url("postgres"))
            .env("NO_COLOR", "1")
            .output()
            .expect("run nixmox")
    };
    // Before any apply the remote state is empty: auth-core waits on infra.
    let o = nixmox(&["plan", "--terraform-only"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("pending: its inputs wait on infra"));

    let o = nixmox(&["apply", "--terraform-only"]);
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(0), "{shown}");
    let o = nixmox(&["plan", "--terraform-only"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    let o = nixmox(&["outputs", "--json", "--show-sensitive"]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    let secret = v["workspaces"]["auth-core"]["token"]["value"]
        .as_str()
        .expect("token")
        .to_string();
    assert!(!shown.contains(&secret));

    // The workspaces are rows of the backend's table, not files.
    let psql = Path::new("/usr/bin/psql");
    let q = Command::new(psql)
        .args([
            "-At",
            "-c",
            "select name from terraform_remote_state.states order by name",
            &pg.url("postgres"),
        ])
        .output()
        .expect("psql");
    let names = String::from_utf8_lossy(&q.stdout).to_string();
    assert!(
        names.contains("auth-core") && names.contains("infra"),
        "{names} {}",
        String::from_utf8_lossy(&q.stderr)
    );

    let mut all = Vec::new();
    files(root, &mut all);
    assert!(
        !all.iter()
            .any(|f| f.to_string_lossy().contains("terraform.tfstate.d")),
        "local state was written"
    );
    for f in &all {
        let text = String::from_utf8_lossy(&std::fs::read(f).expect("read")).into_owned();
        assert!(!text.contains(&secret), "{} holds the secret", f.display());
    }
}
