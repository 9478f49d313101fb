//! The lab's own Terraform provider and drift, end to end, as root: a second
//! apply changes nothing; a host's resources change in place; a lab host
//! removed behind nixmox's back, an OIDC client deleted in the identity
//! provider and a client's redirect URIs changed by hand are each named by
//! `status` (exit 2: workspace, resource, what drifted), shown by `plan`,
//! and put back by `apply`, after which the stack verifies again; `destroy`
//! deletes what the provider made.

use serde_json::Value;
use std::process::{Command, Output};

#[path = "support/lab_stack.rs"]
#[allow(dead_code)] // spawn() serves the kill test
mod lab_stack;
use lab_stack::{text, Lab};

fn events(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn step<'a>(ev: &'a [Value], id: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["step"] == id).collect()
}

/// The identity provider's admin API, as someone with its token would use it.
fn admin(lab: &Lab, method: &str, path: &str, body: Option<&str>) -> Output {
    let token = std::fs::read_to_string(
        lab.lab_dir
            .path()
            .join("hosts/authentik/state/authentik/admin.token"),
    )
    .expect("the admin token");
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "10", "-X", method])
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", token.trim()))
        .args(["-H", "content-type: application/json"]);
    if let Some(b) = body {
        c.args(["-d", b]);
    }
    c.arg(format!("http://10.213.0.5:9000{path}"))
        .output()
        .expect("curl")
}

/// The pk of the OAuth2 provider for `client_id`, from Terraform's outputs of the workspace.
fn provider_pk(lab: &Lab, client_id: &str) -> String {
    for pk in 1..20 {
        let o = admin(lab, "GET", &format!("/api/v3/providers/oauth2/{pk}/"), None);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        if v["client_id"] == client_id {
            return pk.to_string();
        }
    }
    panic!("no provider for {client_id}");
}

/// `status` names the drift (exit 2), `plan` shows it (exit 2), `apply`
/// puts it back, then status is clean and every check passes.
#[track_caller]
fn drift_is_named_shown_and_healed(lab: &Lab, workspace: &str, needle: &str) {
    let o = lab.nixmox(&["status"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("terraform {workspace}: drift: ")))
        .unwrap_or_else(|| panic!("no drift line for {workspace}:\n{out}"));
    assert!(line.contains(needle), "{needle} not in {line}");
    let o = lab.nixmox(&["status", "--json"]);
    let st: Value = serde_json::from_slice(&o.stdout).expect("status JSON");
    assert!(
        st["terraform_drift"][workspace]
            .as_str()
            .unwrap_or_default()
            .contains(needle),
        "{st:#}"
    );
    let o = lab.nixmox(&["plan"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(needle),
        "plan does not show {needle}:\n{}",
        text(&o)
    );
    let o = lab.nixmox(&["apply", "-y"]);
    assert!(o.status.success(), "apply: {}", text(&o));
    let o = lab.nixmox(&["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = lab.nixmox(&["verify", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("verify JSON");
    assert_eq!(
        (v["failed"].clone(), v["skipped"].clone()),
        (0.into(), 0.into()),
        "{v:#}"
    );
}

#[test]
fn the_lab_provider_reads_the_real_objects() {
    lab_stack::require_root("the drift test");
    let lab = Lab::new();
    let o = lab.nixmox(&["lab", "up"]);
    assert!(o.status.success(), "lab up: {}", text(&o));

    // No-op: both workspaces planned clean, nothing applied.
    let o = lab.nixmox(&["apply", "--json"]);
    let ev = events(&o);
    assert!(o.status.success(), "{}", text(&o));
    for id in ["tf:infra", "tf:auth-core"] {
        assert_eq!(
            step(&ev, id).last().map(|e| e["status"].clone()),
            Some("unchanged".into()),
            "{id}"
        );
    }

    // Update in place: a host's cores change; the host is not re-created.
    let good = std::fs::read_to_string(lab.manifest()).expect("read");
    let more = good.replacen(
        "vmid = 9010;",
        "vmid = 9010;\n      resources = { cores = 3; memory = 1024; };",
        1,
    );
    assert_ne!(
        more, good,
        "the lab manifest changed shape: update this test"
    );
    std::fs::write(lab.manifest(), &more).expect("write");
    let record = lab.lab_dir.path().join("hosts/wiki/lxc.json");
    let before = std::fs::metadata(lab.lab_dir.path().join("hosts/wiki/ssh_host_ed25519_key"))
        .expect("host key")
        .modified()
        .expect("mtime");
    let o = lab.nixmox(&["plan", "--terraform-only"]);
    assert!(text(&o).contains("+0 ~1 -0"), "{}", text(&o));
    let o = lab.nixmox(&["apply", "-y"]);
    assert!(o.status.success(), "{}", text(&o));
    let r: Value = serde_json::from_slice(&std::fs::read(&record).expect("record")).expect("json");
    assert_eq!(
        (r["cores"].clone(), r["memory"].clone()),
        (3.into(), 1024.into()),
        "{r}"
    );
    let after = std::fs::metadata(lab.lab_dir.path().join("hosts/wiki/ssh_host_ed25519_key"))
        .expect("host key")
        .modified()
        .expect("mtime");
    assert_eq!(
        before, after,
        "the host was re-created for an in-place change"
    );

    // A lab host removed behind nixmox's back.
    let o = lab.nixmox(&["lab", "host-down", "dash", "10.213.0.12"]);
    assert!(o.status.success(), "{}", text(&o));
    drift_is_named_shown_and_healed(&lab, "infra", "nixmoxlab_lxc.host[\"dash\"] deleted");

    // An OIDC client deleted in the identity provider.
    let pk = provider_pk(&lab, "notes-oidc");
    let o = admin(
        &lab,
        "DELETE",
        &format!("/api/v3/providers/oauth2/{pk}/"),
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    drift_is_named_shown_and_healed(
        &lab,
        "auth-core",
        "nixmoxlab_provider_oauth2.client[\"notes-oidc\"] deleted",
    );

    // A client's redirect URIs changed by hand.
    let pk = provider_pk(&lab, "wiki-oidc");
    let o = admin(
        &lab,
        "PATCH",
        &format!("/api/v3/providers/oauth2/{pk}/"),
        Some(r#"{"redirect_uris": ["https://elsewhere.invalid/cb"]}"#),
    );
    assert!(o.status.success(), "{}", text(&o));
    drift_is_named_shown_and_healed(
        &lab,
        "auth-core",
        "nixmoxlab_provider_oauth2.client[\"wiki-oidc\"] changed: redirect_uris",
    );
    // The drift names the attribute, never a value (the secret included).
    let o = lab.nixmox(&["status"]);
    assert!(!text(&o).contains("elsewhere.invalid"));

    // Destroy deletes what the provider made: the clients, then the hosts.
    let o = lab.nixmox(&["destroy", "--yes"]);
    assert!(o.status.success(), "destroy: {}", text(&o));
    for host in ["wiki", "dash", "dns"] {
        assert!(
            !std::path::Path::new(&format!("/run/netns/nixmox-{host}")).exists(),
            "host {host} is still there"
        );
        assert!(!lab
            .lab_dir
            .path()
            .join(format!("hosts/{host}/lxc.json"))
            .exists());
    }
}
