//! `nixmox plan`, `apply --terraform-only` and `outputs` end to end with the
//! real Terraform, SOPS and age: outputs flow from tf:auth-core into a
//! service's config phase, land in a SOPS file that decrypts with the age
//! key, and the sensitive value shows up in no output and no file nixmox
//! leaves (Terraform's own state, which always holds outputs, excepted).

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tool(name: &str, env: &str) -> String {
    if let Ok(v) = std::env::var(env) {
        return v;
    }
    let p = format!("/opt/nixmox/bin/{name}");
    assert!(
        Path::new(&p).exists(),
        "{name} is not installed: run scripts/setup.sh"
    );
    p
}

struct Stack {
    dir: tempfile::TempDir,
    age_key: PathBuf,
}

impl Stack {
    fn new() -> Stack {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let mut m: Value = serde_json::from_str(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/small/manifest.json"),
            )
            .expect("read"),
        )
        .expect("json");
        m["terraform"] = json!({
            "infra": { "modules": ["tf/infra"] },
            "auth_core": { "modules": ["tf/auth-core"] },
            "retry": { "attempts": 2, "backoff_seconds": 0 }
        });
        m["services"]["wiki"]["interface"]["terraform"] = json!({
            "modules": ["tf/wiki-infra"],
            "variables": { "bucket": "wiki-data" },
            "config": { "modules": ["tf/wiki-config"] }
        });
        // nixmox reads the file before writing outputs into it (to keep
        // the user's other keys), with the key the manifest names.
        m["secrets"] =
            json!({ "sops_file": "secrets/outputs.sops.json", "age_key_file": "age.key" });
        std::fs::write(
            root.join("manifest.json"),
            serde_json::to_string_pretty(&m).expect("encode"),
        )
        .expect("write");

        let module = |name: &str, text: &str| {
            std::fs::create_dir_all(root.join("tf").join(name)).expect("mkdir");
            std::fs::write(root.join("tf").join(name).join("main.tf"), text).expect("write");
        };
        module(
            "infra",
            r#"
variable "hosts" { type = any }
resource "terraform_data" "host" {
  for_each = var.hosts
  input    = each.value.ip
}
output "host_ips" { value = { for k, h in terraform_data.host : k => h.output } }
"#,
        );
        module(
            "auth-core",
            r#"
variable "oidc_apps" { type = any }
resource "terraform_data" "client" {
  for_each = var.oidc_apps
  input    = each.key
}
output "client_ids" { value = { for k, c in terraform_data.client : k => c.output } }
output "wiki_client_secret" {
  value     = sha256("${terraform_data.client["wiki-oidc"].id}-nixmox")
  sensitive = true
}
"#,
        );
        module(
            "wiki-infra",
            r#"
variable "bucket" { type = string }
variable "service" { type = any }
resource "terraform_data" "bucket" { input = "${var.bucket}@${var.service.ip}" }
output "bucket" { value = terraform_data.bucket.output }
"#,
        );
        module(
            "wiki-config",
            r#"
variable "upstream_outputs" {
  type      = any
  sensitive = true
}
resource "terraform_data" "wiring" {
  input = nonsensitive(sha256(var.upstream_outputs["auth-core"]["wiki_client_secret"]))
}
output "secret_fingerprint" { value = terraform_data.wiring.output }
output "bucket_seen" { value = nonsensitive(var.upstream_outputs["wiki-infra"]["bucket"]) }
"#,
        );

        let age_key = root.join("age.key");
        let gen = Command::new("age-keygen")
            .arg("-o")
            .arg(&age_key)
            .output()
            .expect("age-keygen (run scripts/setup.sh)");
        assert!(
            gen.status.success(),
            "{}",
            String::from_utf8_lossy(&gen.stderr)
        );
        let key_text = std::fs::read_to_string(&age_key).expect("key");
        let recipient = key_text
            .lines()
            .find_map(|l| l.strip_prefix("# public key: "))
            .expect("public key line")
            .to_string();
        std::fs::write(
            root.join(".sops.yaml"),
            format!("creation_rules:\n  - path_regex: secrets/.*\n    age: {recipient}\n"),
        )
        .expect("write .sops.yaml");
        Stack { dir, age_key }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn nixmox(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_nixmox"))
            .args(args)
            .arg("-m")
            .arg(self.path("manifest.json"))
            .current_dir(self.dir.path())
            .env("NIXMOX_TERRAFORM", tool("terraform", "NIXMOX_TERRAFORM"))
            .env("NIXMOX_SOPS", tool("sops", "NIXMOX_SOPS"))
            .env_remove("NIXMOX_STATE_DIR")
            .env("NO_COLOR", "1")
            .output()
            .expect("run nixmox")
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn serial(path: &Path) -> u64 {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("state")).expect("state json");
    doc["serial"].as_u64().expect("serial")
}

/// Every file below `dir`, except Terraform's own state.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if name != "terraform.tfstate.d" {
                files(&p, out);
            }
        } else if !name.starts_with("terraform.tfstate") {
            out.push(p);
        }
    }
}

#[test]
fn terraform_phases_end_to_end() {
    let s = Stack::new();
    let mut shown = String::new();

    // Nothing applied yet: tf:infra plans, everything downstream waits on it.
    let o = s.nixmox(&["plan", "--terraform-only"]);
    shown += &text(&o);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("infra") && out.contains("+7 ~0 -0"), "{out}");
    assert!(out.contains("pending: its inputs wait on infra"), "{out}");

    let o = s.nixmox(&["apply", "--terraform-only"]);
    shown += &text(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for line in ["tf:infra", "tf:auth-core", "wiki-infra", "wiki-config"] {
        assert!(out.contains(line), "{line} missing from:\n{out}");
    }
    assert!(
        out.contains("search-infra") && out.contains("skipped: no modules"),
        "{out}"
    );

    let states: Vec<PathBuf> = ["infra", "auth-core", "wiki-infra", "wiki-config"]
        .iter()
        .map(|ws| {
            s.path(&format!(
                ".nixmox/terraform/{ws}/terraform.tfstate.d/{ws}/terraform.tfstate"
            ))
        })
        .collect();
    let serials: Vec<u64> = states.iter().map(|p| serial(p)).collect();

    // A second run changes nothing, and plan says so with exit 0.
    let o = s.nixmox(&["apply", "--terraform-only", "--json"]);
    shown += &text(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let events: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event a line"))
        .collect();
    assert!(
        events
            .iter()
            .filter(|e| e["event"] == "phase")
            .all(|e| e["status"] == "unchanged" || e["status"] == "skipped"),
        "{events:?}"
    );
    assert_eq!(
        states.iter().map(|p| serial(p)).collect::<Vec<_>>(),
        serials,
        "state rewritten by a no-op run"
    );
    let o = s.nixmox(&["plan", "--terraform-only"]);
    shown += &text(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("No changes."));

    // Outputs: redacted unless asked for.
    let o = s.nixmox(&["outputs"]);
    shown += &text(&o);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("wiki_client_secret = (sensitive)"),
        "{}",
        text(&o)
    );
    let o = s.nixmox(&["outputs", "--json"]);
    shown += &text(&o);
    let redacted: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(
        redacted["workspaces"]["auth-core"]["wiki_client_secret"]["value"],
        "(sensitive)"
    );
    assert_eq!(
        redacted["workspaces"]["wiki-config"]["bucket_seen"]["value"],
        "wiki-data@10.77.0.10"
    );
    let o = s.nixmox(&["outputs", "--json", "--show-sensitive"]);
    let full: Value = serde_json::from_slice(&o.stdout).expect("json");
    let secret = full["workspaces"]["auth-core"]["wiki_client_secret"]["value"]
        .as_str()
        .expect("secret")
        .to_string();
    assert_eq!(secret.len(), 64);

    // The secret reached the config phase (its fingerprint is the sha256 of it).
    let fp = full["workspaces"]["wiki-config"]["secret_fingerprint"]["value"]
        .as_str()
        .expect("fingerprint");
    let mut sha = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    std::io::Write::write_all(&mut sha.stdin.take().expect("stdin"), secret.as_bytes())
        .expect("write");
    let sum = String::from_utf8_lossy(&sha.wait_with_output().expect("sha").stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(fp, sum);

    // The SOPS file decrypts with the age key to the right values.
    let dec = Command::new(tool("sops", "NIXMOX_SOPS"))
        .args(["--decrypt", "--input-type", "json", "--output-type", "json"])
        .arg(s.path("secrets/outputs.sops.json"))
        .env("SOPS_AGE_KEY_FILE", &s.age_key)
        .output()
        .expect("sops");
    assert!(
        dec.status.success(),
        "{}",
        String::from_utf8_lossy(&dec.stderr)
    );
    let plain: Value = serde_json::from_slice(&dec.stdout).expect("decrypted json");
    assert_eq!(plain["auth-core"]["wiki_client_secret"], secret.as_str());
    assert_eq!(plain["wiki-infra"]["bucket"], "wiki-data@10.77.0.10");

    // The public JSON for Nix holds no secret; nothing else does either.
    let public: Value = serde_json::from_str(
        &std::fs::read_to_string(s.path(".nixmox/outputs.json")).expect("outputs.json"),
    )
    .expect("json");
    assert_eq!(public["infra"]["host_ips"]["wiki"], "10.77.0.10");
    assert!(public["auth-core"].get("wiki_client_secret").is_none());
    assert!(!shown.contains(&secret), "a sensitive output was printed");
    let mut all = Vec::new();
    files(s.dir.path(), &mut all);
    for f in &all {
        let bytes = std::fs::read(f).expect("read");
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&secret),
            "{} holds the secret",
            f.display()
        );
    }
    // Saved plans (which hold variable values) are gone.
    let plans: Vec<String> = std::fs::read_dir("/dev/shm")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("nixmox-") && n.ends_with(".tfplan"))
        .collect();
    assert!(plans.is_empty(), "saved plans left behind: {plans:?}");
    assert!(
        !s.path(".nixmox/terraform/.plans").exists()
            || std::fs::read_dir(s.path(".nixmox/terraform/.plans"))
                .map(|d| d.count())
                .unwrap_or(0)
                == 0
    );
}

/// Encrypts `doc` (YAML) into `rel` under the stack's `.sops.yaml`, as a
/// user keeps their secrets.
fn encrypt(s: &Stack, rel: &str, doc: &str) {
    use std::io::Write;
    let mut child = Command::new(tool("sops", "NIXMOX_SOPS"))
        .args(["--encrypt", "--input-type", "yaml", "--output-type", "yaml"])
        .arg("--filename-override")
        .arg(s.path(rel))
        .arg("/dev/stdin")
        .current_dir(s.dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sops");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(doc.as_bytes())
        .expect("feed sops");
    let out = child.wait_with_output().expect("sops");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = s.path(rel);
    std::fs::create_dir_all(path.parent().expect("a directory")).expect("mkdir");
    std::fs::write(path, &out.stdout).expect("write");
}

fn decrypt(s: &Stack, rel: &str) -> Value {
    let dec = Command::new(tool("sops", "NIXMOX_SOPS"))
        .args(["--decrypt", "--output-type", "json"])
        .arg(s.path(rel))
        .env("SOPS_AGE_KEY_FILE", &s.age_key)
        .output()
        .expect("sops");
    assert!(
        dec.status.success(),
        "{}",
        String::from_utf8_lossy(&dec.stderr)
    );
    serde_json::from_slice(&dec.stdout).expect("decrypted json")
}

/// The user's own SOPS file, one section per service: a Terraform variable
/// comes from it (decrypted in memory, never shown), outputs are written
/// back into it without losing a key, a re-run leaves it untouched, and a
/// missing key or decryption key is an error at `validate` that names the
/// file and the key path, never a value.
#[test]
fn values_from_the_users_sops_file() {
    let s = Stack::new();
    let token = format!("tok-{}-{}", std::process::id(), serial_seed());
    encrypt(
        &s,
        "secrets/default.yaml",
        &format!(
            "# the user's own comment\nwiki:\n  bucket_token: {token}\nauthentik:\n  secret_key: keep-me-untouched\n"
        ),
    );
    let mut m: Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("manifest.json")).expect("read"))
            .expect("json");
    m["secrets"] = json!({ "sops_file": "secrets/default.yaml", "age_key_file": "age.key" });
    m["services"]["wiki"]["interface"]["terraform"]["variables"]["bucket_token"] =
        json!({ "sops": "wiki.bucket_token" });
    let write_manifest = |m: &Value| {
        std::fs::write(
            s.path("manifest.json"),
            serde_json::to_string_pretty(m).expect("encode"),
        )
        .expect("write manifest")
    };
    write_manifest(&m);
    std::fs::write(
        s.path("tf/wiki-infra/main.tf"),
        r#"
variable "bucket" { type = string }
variable "service" { type = any }
variable "bucket_token" {
  type      = string
  sensitive = true
}
resource "terraform_data" "bucket" { input = "${var.bucket}@${var.service.ip}" }
resource "terraform_data" "token" { input = nonsensitive(sha256(var.bucket_token)) }
output "bucket" { value = terraform_data.bucket.output }
output "token_fingerprint" { value = terraform_data.token.output }
"#,
    )
    .expect("write module");

    let mut shown = String::new();
    let o = s.nixmox(&["validate"]);
    shown += &text(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = s.nixmox(&["apply", "--terraform-only"]);
    shown += &text(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Terraform got the value itself.
    let o = s.nixmox(&["outputs", "--json"]);
    let outs: Value = serde_json::from_slice(&o.stdout).expect("outputs json");
    let mut sha = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    {
        use std::io::Write;
        sha.stdin
            .take()
            .expect("stdin")
            .write_all(token.as_bytes())
            .expect("write");
    }
    let sum = String::from_utf8_lossy(&sha.wait_with_output().expect("sha").stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        outs["workspaces"]["wiki-infra"]["token_fingerprint"]["value"], sum,
        "{outs:#}"
    );

    // Outputs went into the same file; the user's keys and comment stayed.
    let plain = decrypt(&s, "secrets/default.yaml");
    assert_eq!(plain["authentik"]["secret_key"], "keep-me-untouched");
    assert_eq!(plain["wiki"]["bucket_token"], token.as_str());
    assert!(
        plain["auth-core"]["wiki_client_secret"].is_string(),
        "{plain:#}"
    );
    assert_eq!(plain["wiki-infra"]["bucket"], "wiki-data@10.77.0.10");
    let written = std::fs::read(s.path("secrets/default.yaml")).expect("read");
    let yaml = Command::new(tool("sops", "NIXMOX_SOPS"))
        .args(["--decrypt"])
        .arg(s.path("secrets/default.yaml"))
        .env("SOPS_AGE_KEY_FILE", &s.age_key)
        .output()
        .expect("sops");
    assert!(
        String::from_utf8_lossy(&yaml.stdout).contains("# the user's own comment"),
        "the user's comment was lost"
    );

    // A re-run writes nothing: the file is byte for byte the same.
    let o = s.nixmox(&["apply", "--terraform-only"]);
    shown += &text(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        std::fs::read(s.path("secrets/default.yaml")).expect("read"),
        written,
        "a no-op run rewrote the SOPS file"
    );

    // The value shows up nowhere nixmox printed or left (Terraform's own
    // state and saved plans excepted).
    assert!(!shown.contains(&token), "the SOPS value was printed");
    let mut all = Vec::new();
    files(s.dir.path(), &mut all);
    for f in all.iter().filter(|f| {
        let n = f.to_string_lossy();
        !n.contains("terraform.tfstate") && !n.ends_with(".tfplan")
    }) {
        let bytes = std::fs::read(f).expect("read");
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&token),
            "{} holds the SOPS value",
            f.display()
        );
    }

    // A key that is not there: validate names it and the file, and what is there.
    m["services"]["wiki"]["interface"]["terraform"]["variables"]["bucket_token"] =
        json!({ "sops": "wiki.bucket_tokn" });
    write_manifest(&m);
    let o = s.nixmox(&["validate"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("wiki.bucket_tokn") && t.contains("default.yaml") && t.contains("bucket_token"),
        "{t}"
    );
    assert!(!t.contains(&token), "{t}");

    // No key that opens the file: said so, with what to do.
    m["services"]["wiki"]["interface"]["terraform"]["variables"]["bucket_token"] =
        json!({ "sops": "wiki.bucket_token" });
    let other = s.path("other.key");
    let gen = Command::new("age-keygen")
        .arg("-o")
        .arg(&other)
        .output()
        .expect("age-keygen");
    assert!(gen.status.success());
    m["secrets"]["age_key_file"] = json!("other.key");
    write_manifest(&m);
    let o = Command::new(env!("CARGO_BIN_EXE_nixmox"))
        .args(["plan", "--terraform-only", "-m"])
        .arg(s.path("manifest.json"))
        .env("NIXMOX_SOPS", tool("sops", "NIXMOX_SOPS"))
        .env_remove("SOPS_AGE_KEY_FILE")
        .env("HOME", s.dir.path())
        .output()
        .expect("nixmox");
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("SOPS_AGE_KEY_FILE") && t.contains("default.yaml"),
        "{t}"
    );
    assert!(t.contains("nothing was run"), "{t}");
}

/// A value that differs from run to run.
fn serial_seed() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}
