//! Concurrent runs of one stack, on both state backends: five applies at
//! once take turns (exactly one runs at a time, the others wait for the
//! lock), and without --lock-timeout the second one fails naming the holder.
//! The runs are `apply --terraform-only` of a module whose apply takes a
//! second and records when it starts and ends, so turns are observed.

#[path = "support/postgres.rs"]
mod postgres;

use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};

fn project(dir: &Path) {
    let mut m: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/small/manifest.json"),
        )
        .expect("read"),
    )
    .expect("json");
    m["terraform"] = json!({"infra": {"modules": ["tf"]}});
    std::fs::write(dir.join("manifest.json"), m.to_string()).expect("write");
    std::fs::create_dir_all(dir.join("tf")).expect("mkdir");
    std::fs::write(
        dir.join("tf/main.tf"),
        format!(
            r#"resource "terraform_data" "slow" {{
  triggers_replace = timestamp()
  provisioner "local-exec" {{
    command = "echo start >> {log}; sleep 1; echo end >> {log}"
  }}
}}
"#,
            log = dir.join("turns.log").display()
        ),
    )
    .expect("write module");
}

fn spawn(dir: &Path, state: Option<&str>, extra: &[&str]) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nixmox"));
    c.args(["apply", "--terraform-only", "-m"])
        .arg(dir.join("manifest.json"))
        .args(extra);
    c.env(
        "NIXMOX_TERRAFORM",
        std::env::var("NIXMOX_TERRAFORM").unwrap_or_else(|_| "/opt/nixmox/bin/terraform".into()),
    );
    c.env_remove("NIXMOX_STATE").env_remove("NIXMOX_STATE_DIR");
    if let Some(s) = state {
        c.args(["--state", s]);
    }
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nixmox")
}

fn take_turns(dir: &Path, state: Option<&str>) {
    project(dir);
    let children: Vec<Child> = (0..5)
        .map(|_| spawn(dir, state, &["--lock-timeout", "120"]))
        .collect();
    for c in children {
        let o = c.wait_with_output().expect("wait");
        assert!(
            o.status.success(),
            "an apply failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let turns = std::fs::read_to_string(dir.join("turns.log")).expect("turns");
    let lines: Vec<&str> = turns.lines().collect();
    assert_eq!(lines.len(), 10, "{turns}");
    for pair in lines.chunks(2) {
        assert_eq!(pair, ["start", "end"], "two applies overlapped:\n{turns}");
    }

    // Without waiting: the second fails at once, naming the first.
    let first = spawn(dir, state, &[]);
    std::thread::sleep(std::time::Duration::from_millis(400));
    let second = spawn(dir, state, &[]).wait_with_output().expect("second");
    let err = String::from_utf8_lossy(&second.stderr).into_owned();
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains("holds the lock") && err.contains("nixmox apply --terraform-only"),
        "{err}"
    );
    assert!(first.wait_with_output().expect("first").status.success());
}

#[test]
fn five_applies_take_turns_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    take_turns(dir.path(), None);
}

#[test]
fn five_applies_take_turns_on_postgres() {
    let pg = postgres::Postgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    take_turns(dir.path(), Some(&pg.url("postgres")));
}
