//! Hostile and careless input, through the real binary, in all four manifest
//! formats where the format matters: values that would become command-line
//! options, control characters headed for a config file, probes with other
//! URL schemes, numbers that would change on the way, YAML tags, byte order
//! marks, files that are not files, a manifest whose evaluation is stopped,
//! floods of errors, and escape sequences that must never reach a terminal
//! raw. Each case expects a message that names the path and the problem.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn small() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/small/manifest.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json")
}

fn mutate(change: impl FnOnce(&mut Value)) -> Value {
    let mut v = small();
    change(&mut v);
    v
}

/// A Nix string literal: `\`, `"` and `${` escaped; line breaks, tabs and
/// carriage returns as escapes, anything else as it is.
fn nix_string(s: &str) -> String {
    let mut out = String::from("\"");
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The manifest as a Nix expression.
fn nix(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => nix_string(s),
        Value::Array(items) => format!(
            "[ {} ]",
            items
                .iter()
                .map(|i| format!("({})", nix(i)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Value::Object(map) => format!(
            "{{ {} }}",
            map.iter()
                .map(|(k, v)| format!("{} = {};", nix_string(k), nix(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

const FORMATS: [&str; 4] = ["json", "toml", "yaml", "nix"];

fn render(v: &Value, format: &str) -> String {
    match format {
        "json" => serde_json::to_string_pretty(v).expect("json"),
        "toml" => toml::to_string(v).expect("toml"),
        "yaml" => serde_yaml_ng::to_string(v).expect("yaml"),
        "nix" => nix(v),
        other => panic!("no format {other}"),
    }
}

fn nixmox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nixmox"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run nixmox")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

/// `validate --json` of `v` written in `format`: (exit code, errors as
/// "path: message (hint)" lines, the raw output).
fn validate(v: &Value, format: &str) -> (Option<i32>, Vec<String>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        &format!("manifest.{format}"),
        &render(v, format),
    );
    let o = nixmox(&["validate", "--json", "-m", &path.display().to_string()]);
    let raw = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let report: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    let errors = report["errors"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|d| {
                    format!(
                        "{}: {}{}",
                        d["path"].as_str().unwrap_or_default(),
                        d["message"].as_str().unwrap_or_default(),
                        d["hint"]
                            .as_str()
                            .map(|h| format!(" ({h})"))
                            .unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (o.status.code(), errors, raw)
}

/// In every format: refused (exit 1) with an error at `path` mentioning each needle.
#[track_caller]
fn refused_everywhere(v: &Value, path: &str, needles: &[&str]) {
    for format in FORMATS {
        let (code, errors, raw) = validate(v, format);
        assert_eq!(code, Some(1), "{format}: accepted:\n{raw}");
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(&format!("{path}: "))
                    && needles.iter().all(|n| e.contains(n))),
            "{format}: no error at {path} mentioning {needles:?}:\n{raw}"
        );
    }
}

// ------------------------------------------------ values that become arguments

#[test]
fn an_ssh_user_that_would_be_an_option() {
    let v = mutate(|v| v["nixos"] = json!({"ssh": {"user": "-oProxyCommand=touch /tmp/pwned"}}));
    refused_everywhere(
        &v,
        "nixos.ssh.user",
        &["is not a user name", "read a leading '-' as an option"],
    );
    let v = mutate(|v| v["services"]["wiki"]["nixos"] = json!({"ssh": {"user": "-F/tmp/evil"}}));
    refused_everywhere(&v, "services.wiki.nixos.ssh.user", &["is not a user name"]);
}

#[test]
fn a_key_path_with_a_space_or_a_dash() {
    let v = mutate(|v| v["nixos"] = json!({"ssh": {"key": "/home/me/my keys/id_ed25519"}}));
    refused_everywhere(&v, "nixos.ssh.key", &["has a space", "NIX_SSHOPTS"]);
    let v =
        mutate(|v| v["nixos"] = json!({"ssh": {"known_hosts_file": "-oStrictHostKeyChecking=no"}}));
    refused_everywhere(
        &v,
        "nixos.ssh.known_hosts_file",
        &["starts with '-'", "option"],
    );
    let v = mutate(|v| v["services"]["wiki"]["nixos"] = json!({"ssh": {"key": "a b"}}));
    refused_everywhere(&v, "services.wiki.nixos.ssh.key", &["NIX_SSHOPTS"]);
}

#[test]
fn a_flake_module_or_migration_that_would_be_an_option() {
    let v = mutate(|v| v["nixos"] = json!({"flake": "--impure"}));
    refused_everywhere(&v, "nixos.flake", &["starts with '-'"]);
    let v = mutate(|v| v["terraform"] = json!({"infra": {"modules": ["-chdir=/"]}}));
    refused_everywhere(&v, "terraform.infra.modules[0]", &["starts with '-'"]);
    let v = mutate(|v| {
        v["services"]["wiki"]["interface"]["db"] = json!({"name": "wiki", "owner": "wiki",
            "mode": "native-migration", "migrations": ["--help"]})
    });
    refused_everywhere(
        &v,
        "services.wiki.interface.db.migrations[0]",
        &["starts with '-'"],
    );
    let v = mutate(|v| v["services"]["wiki"]["nixos"] = json!({"attribute": "-x"}));
    refused_everywhere(&v, "services.wiki.nixos.attribute", &["starts with '-'"]);
}

// ------------------------------------------------ control characters

#[test]
fn a_header_value_with_a_line_break_is_refused() {
    let v = mutate(|v| {
        v["services"]["wiki"]["interface"]["proxy"]["headers"] =
            json!({"X-Frame-Options": "DENY\r\nreverse_proxy attacker:80"})
    });
    refused_everywhere(
        &v,
        "services.wiki.interface.proxy.headers.X-Frame-Options",
        &["a carriage return (CR)", "one line of plain text"],
    );
}

#[test]
fn control_characters_anywhere_in_a_value() {
    for (value, what) in [
        ("wiki\nsearch", "a line break (LF)"),
        ("wiki\u{1b}[2J", "an escape character (ESC)"),
        ("wiki\u{0}", "a NUL byte"),
        ("wiki\u{202e}", "invisible formatting character U+202E"),
    ] {
        let v = mutate(|v| v["services"]["search"]["depends_on"] = json!([value]));
        for format in ["json", "yaml", "toml"] {
            let (code, errors, raw) = validate(&v, format);
            assert_eq!(code, Some(1), "{raw}");
            assert!(
                errors
                    .iter()
                    .any(|e| e.starts_with("services.search.depends_on[0]: ") && e.contains(what)),
                "{format} {value:?}:\n{raw}"
            );
        }
    }
    // Where line breaks are the syntax (a Caddy snippet), they stay; other
    // control characters do not.
    let v = mutate(|v| {
        v["services"]["wiki"]["interface"]["proxy"]["extra_config"] =
            json!("encode gzip\nheader -Server")
    });
    for format in FORMATS {
        let (code, _, raw) = validate(&v, format);
        assert_eq!(code, Some(0), "{format}: {raw}");
    }
    let v = mutate(|v| {
        v["services"]["wiki"]["interface"]["proxy"]["extra_config"] = json!("encode gzip\r\n}")
    });
    refused_everywhere(
        &v,
        "services.wiki.interface.proxy.extra_config",
        &["carriage return", "only line breaks and tabs"],
    );
}

// ------------------------------------------------ probes

#[test]
fn a_probe_with_another_url_scheme_is_no_command() {
    for (probe, scheme) in [
        ("file:///etc/passwd", "file"),
        ("ftp://10.77.0.10/x", "ftp"),
        ("Gopher://x", "gopher"),
    ] {
        let v =
            mutate(|v| v["services"]["wiki"]["interface"]["health"] = json!({"readiness": probe}));
        refused_everywhere(
            &v,
            "services.wiki.interface.health.readiness",
            &[
                &format!("is a {scheme}:// URL"),
                "http://, https:// or tcp://",
            ],
        );
    }
    // The named forms still work, in any case of the scheme.
    let v = mutate(|v| {
        v["services"]["wiki"]["interface"]["health"] = json!({
            "startup": "test -e /run/current-system && curl -fsS http://localhost:8080/",
            "readiness": "HTTP://10.77.0.10:8080/healthz", "liveness": "tcp://10.77.0.10:8080"})
    });
    for format in FORMATS {
        let (code, _, raw) = validate(&v, format);
        assert_eq!(code, Some(0), "{format}: {raw}");
    }
}

// ------------------------------------------------ values silently changed

#[test]
fn numbers_that_would_change_on_the_way_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let small_json = serde_json::to_string(&small()).expect("json");
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "json",
            small_json
                .replacen(
                    "\"retry_attempts\": 4",
                    "\"retry_attempts\": 123456789012345678901234",
                    1,
                )
                .replacen(
                    "\"retry_attempts\":4",
                    "\"retry_attempts\":123456789012345678901234",
                    1,
                ),
            &["beyond 64 bits"],
        ),
        (
            "yaml",
            format!(
                "{}retry_attempts: 123456789012345678901234567\n",
                render(
                    &mutate(|v| {
                        v.as_object_mut().map(|o| o.remove("retry_attempts"));
                    }),
                    "yaml"
                )
            ),
            &["at retry_attempts", "beyond 64 bits"],
        ),
        (
            "yaml",
            format!("{}retry_delay: .nan\n", render(&small(), "yaml")),
            &["at retry_delay", "NaN"],
        ),
        (
            "yaml",
            format!("{}retry_delay: -.inf\n", render(&small(), "yaml")),
            &["at retry_delay", "minus infinity"],
        ),
        (
            "toml",
            format!("retry_delay = inf\n{}", render(&small(), "toml")),
            &["at retry_delay", "infinity"],
        ),
        (
            "toml",
            format!("retry_delay = nan\n{}", render(&small(), "toml")),
            &["at retry_delay", "NaN"],
        ),
        (
            "yaml",
            format!(
                "{}enable_rollback: !!python/object:os.system {{}}\n",
                render(&small(), "yaml")
            ),
            &["YAML tag !!python/object:os.system"],
        ),
        (
            "yaml",
            format!("{}enable_rollback: !secret yes\n", render(&small(), "yaml")),
            &["YAML tag !secret"],
        ),
    ];
    for (format, text, needles) in cases {
        let path = write(dir.path(), &format!("m.{format}"), &text);
        let o = nixmox(&["validate", "-m", &path.display().to_string()]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{format} accepted:\n{text}");
        assert!(
            needles.iter().all(|n| stderr.contains(n)),
            "{format}: {needles:?} not in:\n{stderr}"
        );
        assert!(!stderr.contains("fractional"), "{stderr}");
    }
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    for format in ["json", "toml", "yaml"] {
        let path = write(
            dir.path(),
            &format!("m.{format}"),
            &format!("\u{feff}{}", render(&small(), format)),
        );
        let o = nixmox(&["validate", "-m", &path.display().to_string()]);
        assert!(
            o.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn domains_compare_without_case_or_the_root_dot() {
    // A hostname written in capitals with the root dot is inside the domain.
    let v = mutate(|v| v["services"]["wiki"]["hostname"] = json!("Wiki.STACK.example."));
    for format in FORMATS {
        let (code, _, raw) = validate(&v, format);
        assert_eq!(code, Some(0), "{format}: {raw}");
        assert!(
            !raw.contains("outside the stack's domain"),
            "{format}: {raw}"
        );
    }
    let v = mutate(|v| v["services"]["wiki"]["hostname"] = json!("STATUS.stack.example."));
    refused_everywhere(
        &v,
        "services.wiki.hostname",
        &["is already used by service 'status'"],
    );
}

#[test]
fn a_gateway_on_the_network_or_broadcast_address() {
    for (gw, which) in [("10.77.0.0", "network"), ("10.77.0.255", "broadcast")] {
        let v = mutate(|v| v["network"]["gateway"] = json!(gw));
        refused_everywhere(
            &v,
            "network.gateway",
            &[&format!("the {which} address of network_cidr")],
        );
    }
}

// ------------------------------------------------ bounded work, honest output

#[test]
fn a_flood_of_errors_is_counted_not_printed() {
    let unknown: Vec<String> = (0..20_000).map(|i| format!("nope{i}")).collect();
    let v = mutate(|v| v["services"]["search"]["depends_on"] = json!(unknown));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "m.json", &render(&v, "json"));
    let o = nixmox(&["validate", "-m", &path.display().to_string()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    let lines = stderr.lines().count();
    assert!(lines < 110, "{lines} lines printed");
    assert!(
        stderr.contains("and 19900 more errors not shown"),
        "{stderr}"
    );
    assert!(stderr.contains("is invalid: 20000 errors"), "{stderr}");
    let o = nixmox(&["validate", "--json", "-m", &path.display().to_string()]);
    let report: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(report["errors"].as_array().map(Vec::len), Some(101));
}

#[test]
fn no_escape_sequence_reaches_the_terminal_or_json_raw() {
    let evil = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m";
    let v = mutate(|v| {
        v["services"][format!("x{evil}")] =
            json!({"ip": "10.77.0.40", "hostname": "x.stack.example", "vmid": 240});
        v["services"]["wiki"]["depends_on"] = json!([format!("y{evil}")]);
        v["services"]["wiki"][format!("z{evil}")] = json!(1);
    });
    for format in ["json", "yaml"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), &format!("m.{format}"), &render(&v, format));
        for args in [
            vec!["validate"],
            vec!["validate", "--json"],
            vec!["plan", "--offline"],
        ] {
            let mut a: Vec<&str> = args.clone();
            let shown = path.display().to_string();
            a.extend(["-m", &shown]);
            let o = nixmox(&a);
            assert_eq!(o.status.code(), Some(1), "{args:?} accepted");
            for (stream, bytes) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
                let text = String::from_utf8_lossy(bytes);
                assert!(
                    !text
                        .chars()
                        .any(|c| c == '\u{1b}' || c == '\u{7}' || c == '\u{9b}'),
                    "{format} {args:?} {stream} holds a raw escape: {text:?}"
                );
            }
            let text = String::from_utf8_lossy(&o.stderr);
            assert!(
                args.contains(&"--json") || text.contains("\\u{1b}"),
                "{text}"
            );
        }
    }
}

// ------------------------------------------------ files that are not files

#[test]
fn a_manifest_that_is_no_regular_file_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("manifest.json");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo")
        .success());
    let zero = dir.path().join("zero.yaml");
    std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
    let nix_fifo = dir.path().join("stack.nix");
    assert!(Command::new("mkfifo")
        .arg(&nix_fifo)
        .status()
        .expect("mkfifo")
        .success());
    for (path, kind) in [
        (&fifo, "FIFO"),
        (&zero, "character device"),
        (&nix_fifo, "FIFO"),
    ] {
        let started = Instant::now();
        let o = nixmox(&["validate", "-m", &path.display().to_string()]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr.contains(&format!(
                "{}: not a regular file (a {kind})",
                path.display()
            )),
            "{stderr}"
        );
        // Refused, not read: no hang on the FIFO, no gigabytes of zeros.
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}

#[test]
fn a_module_file_that_is_a_fifo_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("infra");
    std::fs::create_dir(&module).expect("mkdir");
    assert!(Command::new("mkfifo")
        .arg(module.join("main.tf"))
        .status()
        .expect("mkfifo")
        .success());
    let v = mutate(|v| v["terraform"] = json!({"infra": {"modules": ["infra"]}}));
    let path = write(dir.path(), "manifest.json", &render(&v, "json"));
    let o = Command::new(env!("CARGO_BIN_EXE_nixmox"))
        .args([
            "plan",
            "--terraform-only",
            "-m",
            &path.display().to_string(),
        ])
        .env("NIXMOX_STATE_DIR", dir.path().join("state"))
        .env("NO_COLOR", "1")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("module infra:")
            && stderr.contains("main.tf: not a regular file")
            && stderr.contains("FIFO"),
        "{stderr}"
    );
}

// ------------------------------------------------ evaluation

#[test]
fn evaluation_bounds_say_what_was_hit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let deep = write(
        dir.path(),
        "deep.nix",
        "let f = n: if n == 0 then 1 else [ (f (n - 1)) ]; in { network.domain = \"x.lan\"; deep = f 300; }",
    );
    let o = nixmox(&["validate", "-m", &deep.display().to_string()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr.contains("nested deeper than 128 levels"), "{stderr}");
}

/// nix-instantiate (and what it starts) never outlives nixmox: a stand-in
/// that ignores SIGTERM the way Nix does while it evaluates, with a child of
/// its own, is gone with nixmox when nixmox is terminated.
#[test]
fn the_evaluator_never_outlives_nixmox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pids = dir.path().join("pids");
    let fake = write(
        dir.path(),
        "nix-instantiate",
        &format!(
            "#!/bin/sh\ntrap '' TERM\nsleep 300 &\necho \"$$ $!\" > {}\nwait\n",
            pids.display()
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let manifest = write(dir.path(), "stack.nix", "{ }");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nixmox"))
        .args(["validate", "-m", &manifest.display().to_string()])
        .env("NIXMOX_NIX_INSTANTIATE", &fake)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pids.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&pids).expect("the stand-in started");
    let alive = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map(|s| !s.contains("State:\tZ"))
            .unwrap_or(false)
    };
    let ours: Vec<&str> = text.split_whitespace().collect();
    assert!(ours.iter().all(|p| alive(p)));
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill")
        .success());
    let status = child.wait().expect("wait");
    assert!(!status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while ours.iter().any(|p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in &ours {
        assert!(!alive(p), "process {p} outlived nixmox");
    }
}
