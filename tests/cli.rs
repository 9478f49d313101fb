//! The command line as users and scripts meet it: exit codes, the JSON
//! shapes, manifest discovery, and identical plans from every format.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn example(rel: &str) -> String {
    root().join("examples").join(rel).display().to_string()
}

fn nixmox(args: &[&str]) -> Output {
    nixmox_in(&root(), args, &[])
}

fn nixmox_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nixmox"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("NIXMOX_MANIFEST")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run nixmox")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(o)))
}

fn have_nix() -> bool {
    Command::new("nix-instantiate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The example manifests in every format this machine can read.
fn small_stack_files() -> Vec<String> {
    let mut files = vec![
        example("small/manifest.json"),
        example("small/manifest.toml"),
        example("small/manifest.yaml"),
    ];
    if have_nix() {
        files.push(example("small/manifest.nix"));
    } else {
        eprintln!("nix-instantiate not found: the .nix example is skipped");
    }
    files
}

#[test]
fn examples_validate() {
    let mut files = small_stack_files();
    if have_nix() {
        files.push(example("homelab/manifest.nix"));
    }
    for f in files {
        let o = nixmox(&["validate", "-m", &f]);
        assert_eq!(code(&o), 0, "{f}: {}", stderr(&o));
        assert!(stdout(&o).contains("is valid"), "{f}: {}", stdout(&o));
    }
}

#[test]
fn every_format_gives_the_identical_plan() {
    let plans: Vec<(String, Value)> = small_stack_files()
        .into_iter()
        .map(|f| {
            let o = nixmox(&["plan", "--offline", "--json", "-m", &f]);
            assert_eq!(code(&o), 0, "{f}: {}", stderr(&o));
            let mut v = json(&o);
            v["manifest"] = Value::Null;
            (f, v)
        })
        .collect();
    for (f, plan) in &plans[1..] {
        assert_eq!(
            plan, &plans[0].1,
            "{f} plans differently from {}",
            plans[0].0
        );
    }
}

const PHASES: [&str; 8] = [
    "tf:infra",
    "nix:core",
    "tf:auth-core",
    "tf:service-infra",
    "nix:service-config",
    "health",
    "tf:service-config",
    "verify",
];

#[test]
fn plan_json_has_the_documented_shape_and_a_valid_order() {
    let o = nixmox(&[
        "plan",
        "--offline",
        "--json",
        "-m",
        &example("small/manifest.json"),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["version"], 1);
    let steps = v["steps"].as_array().expect("steps array");
    let mut seen: Vec<&str> = Vec::new();
    for step in steps {
        let id = step["id"].as_str().expect("id is a string");
        let phase = step["phase"].as_str().expect("phase is a string");
        assert!(PHASES.contains(&phase), "unknown phase {phase}");
        for key in ["service", "workspace", "host"] {
            assert!(
                step[key].is_string() || step[key].is_null(),
                "{id}.{key} is {:?}",
                step[key]
            );
        }
        for after in step["after"].as_array().expect("after array") {
            let a = after.as_str().expect("after entries are strings");
            assert!(
                seen.contains(&a),
                "{id} waits for {a}, which does not come before it"
            );
        }
        seen.push(id);
    }
    let ids: Vec<&str> = steps.iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids[0], "tf:infra");
    assert_eq!(
        &ids[1..9],
        &[
            "nix:core:dns",
            "health:dns",
            "nix:core:postgresql",
            "health:postgresql",
            "nix:core:caddy",
            "health:caddy",
            "nix:core:authentik",
            "health:authentik",
        ]
    );
    assert_eq!(ids[9], "tf:auth-core");
    let search = steps
        .iter()
        .find(|s| s["id"] == "tf:service-infra:search")
        .expect("search infra step");
    assert_eq!(search["workspace"], "search-infra");
    assert!(search["after"]
        .as_array()
        .expect("after")
        .contains(&Value::from("verify:wiki")));
    let nix = steps
        .iter()
        .find(|s| s["id"] == "nix:service-config:wiki")
        .expect("wiki nix step");
    assert_eq!(nix["host"], "wiki.stack.example");
    assert_eq!(
        v["waves"],
        serde_json::json!([["status", "wiki"], ["search"]])
    );
}

#[test]
fn only_selects_a_service_and_what_it_depends_on() {
    let f = example("small/manifest.json");
    let o = nixmox(&["plan", "--offline", "--json", "--only", "search", "-m", &f]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    let services: std::collections::BTreeSet<&str> = v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["service"].as_str())
        .collect();
    let expected = ["authentik", "caddy", "dns", "postgresql", "search", "wiki"];
    assert_eq!(services.into_iter().collect::<Vec<_>>(), expected);

    let o = nixmox(&["plan", "--offline", "--only", "serch", "-m", &f]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("--on serch: no such service (did you mean 'search'?)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn exit_codes() {
    let f = example("small/manifest.json");
    assert_eq!(code(&nixmox(&["--help"])), 0);
    assert_eq!(code(&nixmox(&["plan", "--help"])), 0);
    assert_eq!(code(&nixmox(&["--version"])), 0);
    let o = nixmox(&["frobnicate"]);
    assert_eq!(code(&o), 1, "usage errors exit 1 (2 means changes pending)");
    // A Terraform-only plan of a stack without Terraform modules: nothing to
    // change, and no host (its addresses are fictional) contacted.
    let o = nixmox(&["plan", "--terraform-only", "-m", &f]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("No changes."), "{}", stdout(&o));
    // The example's addresses are fictional: it is only ever planned, never applied.
    let o = nixmox(&["apply", "--dry-run", "-m", &f]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("tf:auth-core"), "{}", stdout(&o));
    let o = nixmox(&["validate", "-m", "/nonexistent/manifest.json"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("/nonexistent/manifest.json"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn invalid_manifest_reports_every_error_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut v: Value = serde_json::from_str(
        &std::fs::read_to_string(example("small/manifest.json")).expect("read"),
    )
    .expect("json");
    v["services"]["wiki"]["depends_on"] = serde_json::json!(["postgresql", "postgress"]);
    v["services"]["status"]["ip"] = serde_json::json!("10.99.0.1");
    v["services"]["search"]["hostnme"] = serde_json::json!("x");
    let path = dir.path().join("bad.json");
    std::fs::write(&path, v.to_string()).expect("write");
    let p = path.display().to_string();

    let o = nixmox(&["validate", "-m", &p]);
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    assert!(err.contains("error: services.wiki.depends_on[1]: unknown service \"postgress\" (did you mean 'postgresql'?)"), "{err}");
    assert!(
        err.contains(
            "error: services.status.ip: ip 10.99.0.1 is outside network_cidr 10.77.0.0/24"
        ),
        "{err}"
    );
    assert!(
        err.contains("error: services.search.hostnme: unknown key (did you mean 'hostname'?)"),
        "{err}"
    );
    assert!(err.contains("3 errors"), "{err}");

    let o = nixmox(&["validate", "--json", "-m", &p]);
    assert_eq!(code(&o), 1);
    let v = json(&o);
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"].as_array().expect("errors").len(), 3);
    assert!(v["errors"][0]["path"].is_string());

    // Nothing else runs on an invalid manifest: plan and graph refuse too.
    assert_eq!(code(&nixmox(&["plan", "--offline", "-m", &p])), 1);
    assert_eq!(code(&nixmox(&["graph", "-m", &p])), 1);
}

#[test]
fn manifest_discovery_says_what_it_picked() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        example("small/manifest.json"),
        dir.path().join("manifest.json"),
    )
    .expect("copy");
    let o = nixmox_in(dir.path(), &["validate"], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("using manifest manifest.json (found in the current directory)"),
        "{}",
        stderr(&o)
    );

    std::fs::copy(
        example("small/manifest.yaml"),
        dir.path().join("nixmox.yaml"),
    )
    .expect("copy");
    let o = nixmox_in(dir.path(), &["validate"], &[]);
    assert!(
        stderr(&o).contains("using manifest nixmox.yaml"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("also found manifest.json"),
        "{}",
        stderr(&o)
    );

    let toml = example("small/manifest.toml");
    let o = nixmox_in(dir.path(), &["validate"], &[("NIXMOX_MANIFEST", &toml)]);
    assert_eq!(code(&o), 0);
    assert!(
        stdout(&o).contains("manifest.toml is valid"),
        "{}",
        stdout(&o)
    );

    let empty = tempfile::tempdir().expect("tempdir");
    let o = nixmox_in(empty.path(), &["validate"], &[]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("no manifest given and none found"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn graph_formats() {
    let f = example("small/manifest.json");
    let o = nixmox(&["graph", "-m", &f]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let dot = stdout(&o);
    assert!(dot.starts_with("digraph nixmox {"), "{dot}");
    assert!(dot.contains("\"wiki\" -> \"search\";"), "{dot}");
    assert!(dot.contains("subgraph cluster_core"), "{dot}");

    let o = nixmox(&["graph", "--format", "mermaid", "-m", &f]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).starts_with("flowchart LR"), "{}", stdout(&o));
    assert!(stdout(&o).contains("-->"));

    let o = nixmox(&["graph", "--format", "json", "-m", &f]);
    assert_eq!(code(&o), 0);
    let v = json(&o);
    assert_eq!(v["nodes"].as_array().expect("nodes").len(), 7);
    assert!(v["edges"]
        .as_array()
        .expect("edges")
        .contains(&serde_json::json!({"service": "search", "depends_on": "wiki"})));

    let o = nixmox(&["graph", "--format", "json", "--only", "wiki", "-m", &f]);
    let v = json(&o);
    let names: Vec<&str> = v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert_eq!(names, ["authentik", "caddy", "dns", "postgresql", "wiki"]);

    if Command::new("dot")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let o = nixmox(&["graph", "--format", "svg", "-m", &f]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(stdout(&o).contains("<svg"), "not SVG");
    } else {
        eprintln!("graphviz not installed: svg output not checked");
    }
    let o = nixmox_in(
        &root(),
        &["graph", "--format", "svg", "-m", &f],
        &[("NIXMOX_DOT", "/nonexistent/dot")],
    );
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("install graphviz"), "{}", stderr(&o));
}

#[test]
fn disabled_services_stay_out_of_the_plan() {
    if !have_nix() {
        eprintln!("nix-instantiate not found: skipped");
        return;
    }
    let o = nixmox(&[
        "plan",
        "--offline",
        "--json",
        "-m",
        &example("homelab/manifest.nix"),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["disabled"], serde_json::json!(["mail"]));
    assert!(!stdout(&o).contains("\"service\": \"mail\""));
    let o = nixmox(&[
        "plan",
        "--offline",
        "--only",
        "mail",
        "-m",
        &example("homelab/manifest.nix"),
    ]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("disabled"), "{}", stderr(&o));
}

#[test]
fn nix_errors_are_shown_as_nix_reported_them() {
    if !have_nix() {
        eprintln!("nix-instantiate not found: skipped");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broken.nix");
    std::fs::write(&path, "{ network = { domain = \"x\"; }\n").expect("write");
    let o = nixmox(&["validate", "-m", &path.display().to_string()]);
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    assert!(
        err.contains("Nix evaluation failed") && err.contains("syntax error"),
        "{err}"
    );

    let o = nixmox_in(
        &root(),
        &["validate", "-m", &path.display().to_string()],
        &[("NIXMOX_NIX_INSTANTIATE", "/nonexistent/nix-instantiate")],
    );
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("not found on PATH"), "{}", stderr(&o));

    // A manifest written as a function is called with its defaults.
    let func = dir.path().join("func.nix");
    let small = example("small/manifest.nix");
    std::fs::write(&func, format!("{{ extra ? 1 }}: import {small}\n")).expect("write");
    let o = nixmox(&["validate", "-m", &func.display().to_string()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn completions_are_printed() {
    for shell in ["bash", "zsh", "fish"] {
        let o = nixmox(&["completions", shell]);
        assert_eq!(code(&o), 0);
        assert!(stdout(&o).contains("nixmox"), "{shell}");
    }
}

/// The files a manifest names are checked at validate: a module path that
/// does not exist, two root modules in one phase, a root module outside
/// terraform.root, a migration that is not there, a terraform.root that is
/// no directory; each error names the service (by its path) and the path.
#[test]
fn missing_and_misplaced_paths_are_found_at_validate() {
    let dir = tempfile::tempdir().expect("tempdir");
    for d in ["tf/a", "tf/b", "elsewhere/c"] {
        std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
    }
    let mut v: Value = serde_json::from_str(
        &std::fs::read_to_string(example("small/manifest.json")).expect("read"),
    )
    .expect("json");
    v["terraform"] = serde_json::json!({"root": "tf", "infra": {"modules": ["elsewhere/c"]}});
    v["services"]["wiki"]["interface"]["terraform"] =
        serde_json::json!({"modules": ["tf/a", "tf/b"], "config": {"modules": ["tf/nope"]}});
    v["services"]["wiki"]["interface"]["db"] = serde_json::json!({"name": "wiki", "owner": "wiki",
        "mode": "native-migration", "migrations": ["migrations/001.sql"]});
    let path = dir.path().join("manifest.json");
    std::fs::write(&path, v.to_string()).expect("write");
    let o = nixmox(&["validate", "-m", &path.display().to_string()]);
    let err = stderr(&o);
    assert_eq!(code(&o), 1, "{err}");
    for needle in [
        "services.wiki.interface.terraform.config.modules[0]: module path \"tf/nope\" does not exist",
        "services.wiki.interface.terraform.modules[1]: \"tf/b\" is a second directory after \"tf/a\"",
        "terraform.infra.modules[0]: module \"elsewhere/c\" is outside terraform.root",
        "services.wiki.interface.db.migrations[0]: migration \"migrations/001.sql\" of service wiki",
    ] {
        assert!(err.contains(needle), "{needle} not in:\n{err}");
    }
    v["terraform"]["root"] = serde_json::json!("no-such-dir");
    std::fs::write(&path, v.to_string()).expect("write");
    let err = stderr(&nixmox(&["validate", "-m", &path.display().to_string()]));
    assert!(
        err.contains("terraform.root: terraform.root \"no-such-dir\""),
        "{err}"
    );
}

#[test]
fn skip_leaves_a_service_and_what_needs_it_out() {
    let f = example("small/manifest.json");
    let services = |v: &Value| -> Vec<String> {
        let set: std::collections::BTreeSet<String> = v["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter_map(|s| s["service"].as_str().map(str::to_string))
            .collect();
        set.into_iter().collect()
    };
    // search needs wiki: skipping wiki takes both out.
    let o = nixmox(&["plan", "--offline", "--json", "--skip", "wiki", "-m", &f]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(
        services(&v),
        ["authentik", "caddy", "dns", "postgresql", "status"]
    );
    assert_eq!(v["skipped"], serde_json::json!(["search", "wiki"]));
    // tf:infra still describes every host: a skipped one is never destroyed.
    let infra = &v["steps"][0];
    assert_eq!(infra["id"], "tf:infra");
    assert_eq!(infra["summary"], "provision 7 hosts");

    // A core service takes every application with it, and authentik needs postgresql.
    let o = nixmox(&["plan", "--offline", "--skip", "postgresql", "-m", &f]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains(
            "Skipped in this run (--skip, and what needs it): authentik, postgresql, search, status, wiki"
        ),
        "{}",
        stdout(&o)
    );

    let o = nixmox(&["plan", "--offline", "--skip", "wikki", "-m", &f]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("--skip wikki: no such service (did you mean 'wiki'?)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn force_names_a_service_of_the_run() {
    let f = example("small/manifest.json");
    let o = nixmox(&["plan", "--offline", "--force", "wiki", "-m", &f]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Activated even when current (--force): wiki"),
        "{}",
        stdout(&o)
    );
    let o = nixmox(&["plan", "--offline", "--json", "--force", "wiki", "-m", &f]);
    let v = json(&o);
    let step = v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == "nix:service-config:wiki")
        .expect("wiki's deploy step");
    assert!(
        step["summary"]
            .as_str()
            .is_some_and(|t| t.ends_with("(--force: activated even when current)")),
        "{step}"
    );
    assert_eq!(v["forced"], serde_json::json!(["wiki"]));
    let o = nixmox(&[
        "plan",
        "--offline",
        "--skip",
        "wiki",
        "--force",
        "search",
        "-m",
        &f,
    ]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o)
            .contains("--force search: the service is not part of this run (--skip leaves it out)"),
        "{}",
        stderr(&o)
    );
    let o = nixmox(&["apply", "--terraform-only", "--force", "wiki", "-m", &f]);
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
}

/// The usual repository: flake.nix at the root, the manifest at
/// nixos/service-manifest.nix, a git work tree. From its root, with no -m.
#[test]
fn a_repository_works_from_its_root() {
    if !have_nix() {
        eprintln!("skipped: nix-instantiate is not installed");
        return;
    }
    let repo = tempfile::tempdir().expect("tempdir");
    let root = std::fs::canonicalize(repo.path()).expect("canonical");
    std::fs::create_dir_all(root.join("nixos")).expect("mkdir");
    std::fs::copy(
        example("small/manifest.nix"),
        root.join("nixos/service-manifest.nix"),
    )
    .expect("copy");
    std::fs::write(root.join("flake.nix"), "{ outputs = { self }: { }; }\n").expect("write");
    let git = Command::new("git")
        .args(["init", "-q"])
        .current_dir(&root)
        .status()
        .expect("git");
    assert!(git.success());

    let o = nixmox_in(&root, &["validate"], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("using manifest nixos/service-manifest.nix"),
        "{}",
        stderr(&o)
    );
    assert!(
        stdout(&o).contains(&format!(
            "systems: flake {}, found at or above the manifest (Nix reads the files git tracks)",
            root.display()
        )),
        "{}",
        stdout(&o)
    );
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    let o = nixmox_in(&root, &["plan", "--offline"], &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("Plan for"), "{}", stdout(&o));

    // The same tree outside git would copy nixos/.nixmox into the Nix store: refused.
    std::fs::remove_dir_all(root.join(".git")).expect("rm .git");
    let o = nixmox_in(&root, &["validate"], &[]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(
        stderr(&o).contains("world-readable Nix store"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_plan_shows_the_auth_every_route_gets() {
    if !have_nix() {
        eprintln!("skipped: nix-instantiate is not installed");
        return;
    }
    let f = example("homelab/manifest.nix");
    let o = nixmox(&["plan", "--offline", "--json", "-m", &f]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // Every route is said: homelab's named routes all state their auth.
    assert!(!stderr(&o).contains("declares no auth"), "{}", stderr(&o));
    let v = json(&o);
    let route = |service: &str, name: &str| -> Value {
        v["routes"]
            .as_array()
            .expect("routes")
            .iter()
            .find(|r| r["service"] == service && r["route"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no route {service}/{name}"))
    };
    let loki = route("monitoring", "loki");
    assert_eq!(
        (&loki["auth"], &loki["auth_from"]),
        (&Value::Null, &json!("open"))
    );
    let grafana = route("monitoring", "grafana");
    assert_eq!(
        (
            &grafana["auth"],
            &grafana["client_id"],
            &grafana["auth_from"]
        ),
        (&json!("oidc"), &json!("monitoring-oidc"), &json!("service"))
    );
    let prometheus = route("monitoring", "prometheus");
    assert_eq!(prometheus["auth_from"], "route");

    let o = nixmox(&["plan", "--offline", "-m", &f]);
    assert!(
        stdout(&o).contains("loki.home.arpa/loki/api/v1/push  open (auth = \"none\")"),
        "{}",
        stdout(&o)
    );

    // A named route that says nothing is warned about; a word that is not
    // "inherit" or "none" is refused.
    let text = std::fs::read_to_string(&f).expect("read");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("homelab");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(example("homelab"))
        .arg(&dir)
        .status()
        .expect("cp");
    assert!(copied.success());
    let unsaid = dir.join("unsaid.nix");
    std::fs::write(&unsaid, text.replace("auth = \"inherit\";", "")).expect("write");
    let o = nixmox(&["validate", "-m", &unsaid.display().to_string()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("services.monitoring.interface.proxy.grafana.auth: route grafana declares no auth, so it takes the service's oidc auth"),
        "{}",
        stderr(&o)
    );
    let wrong = dir.join("wrong.nix");
    std::fs::write(&wrong, text.replace("auth = \"none\";", "auth = \"nonе\";")).expect("write");
    let o = nixmox(&["validate", "-m", &wrong.display().to_string()]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
}

#[test]
fn tags_and_globs_select_with_what_they_need() {
    let f = example("homelab/manifest.nix");
    let o = nixmox(&["plan", "--offline", "--json", "--on", "@dev", "-m", &f]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["selection"]["selectors"], json!(["@dev"]));
    assert_eq!(v["selection"]["chosen"], json!(["forgejo", "woodpecker"]));
    assert_eq!(
        v["selection"]["pulled_in"],
        json!(["authentik", "caddy", "dns", "postgresql"])
    );
    let o = nixmox(&["plan", "--offline", "--on", "@dev", "-m", &f]);
    assert!(
        stdout(&o).contains(
            "Selected (--on @dev): forgejo, woodpecker; with what they need: authentik, caddy, dns, postgresql"
        ),
        "{}",
        stdout(&o)
    );

    // A glob and a tag together, less a skipped service; --only is the same flag.
    let o = nixmox(&[
        "plan",
        "--offline",
        "--json",
        "--only",
        "v*,@family",
        "--skip",
        "media",
        "-m",
        &f,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        json(&o)["selection"]["chosen"],
        json!(["nextcloud", "vaultwarden"])
    );
    let o = nixmox(&["graph", "--format", "json", "--on", "@ops", "-m", &f]);
    let names: Vec<String> = json(&o)["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["name"].as_str().map(str::to_string))
        .collect();
    assert!(
        names.contains(&"monitoring".into()) && names.contains(&"forgejo".into()),
        "woodpecker needs forgejo: {names:?}"
    );
    assert!(!names.contains(&"media".into()), "{names:?}");

    // What selects nothing is an error naming what there is; nothing runs.
    for (sel, says) in [
        ("@deb", "--on @deb: selects nothing (did you mean '@dev'?)"),
        ("@nothing", "the tags: @admin, @dev, @family, @ops"),
        (
            "zz*",
            "--on zz*: selects nothing (it matches no enabled service)",
        ),
        ("[", "not a glob"),
        ("mail", "disabled"),
    ] {
        let o = nixmox(&["plan", "--offline", "--on", sel, "-m", &f]);
        assert_eq!(code(&o), 1, "{sel}");
        assert!(stderr(&o).contains(says), "{sel}: {}", stderr(&o));
    }

    // A tag must be a plain word.
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(root().join("examples/homelab/manifest.nix")).expect("read");
    let bad = dir.path().join("manifest.nix");
    std::fs::write(
        &bad,
        text.replacen(
            "tags = [ \"admin\" ];",
            "tags = [ \"-rf\" \"two words\" ];",
            1,
        ),
    )
    .expect("write");
    let o = nixmox(&["validate", "-m", &bad.display().to_string()]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("tags[0]") && stderr(&o).contains("tags[1]"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn build_hosts_are_checked_before_anything_runs() {
    let text = std::fs::read_to_string(root().join("examples/homelab/manifest.nix")).expect("read");
    assert!(text.contains("\n  health_check_timeout = 600;\n"));
    // A copy of the example with its migrations and modules beside it.
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for e in std::fs::read_dir(from).expect("read dir").flatten() {
            let (src, dst) = (e.path(), to.join(e.file_name()));
            if src.is_dir() {
                copy(&src, &dst);
            } else {
                std::fs::copy(&src, &dst).expect("copy");
            }
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    copy(&root().join("examples/homelab"), dir.path());
    let path = dir.path().join("manifest.nix");
    let with = |value: &str| {
        std::fs::write(
            &path,
            text.replacen(
                "\n  health_check_timeout = 600;\n",
                &format!("\n  health_check_timeout = 600;\n  nixos.build_host = {value};\n"),
                1,
            ),
        )
        .expect("write");
        nixmox(&["validate", "-m", &path.display().to_string()])
    };
    for ok in [
        "\"local\"",
        "\"target\"",
        "\"forgejo\"",
        "\"root@192.168.50.9\"",
        "\"192.168.50.9\"",
        "\"builder@fd00::9\"",
    ] {
        let o = with(ok);
        assert_eq!(code(&o), 0, "{ok}: {}", stderr(&o));
    }
    for (bad, says) in [
        (
            "\"forgjeo\"",
            "no enabled service with an ip to build on (did you mean 'forgejo'?)",
        ),
        ("\"mail\"", "no enabled service"),
        ("\"-oProxyCommand=sh\"", "not a builder nixmox can reach"),
        (
            "\"root@builder.home.arpa\"",
            "not a builder nixmox can reach",
        ),
        ("\"Root@192.168.50.9\"", "not a user name"),
        ("\"a b\"", "not a builder"),
        ("42", "expected a string"),
    ] {
        let o = with(bad);
        assert_eq!(code(&o), 1, "{bad} was taken");
        assert!(
            stderr(&o).contains("nixos.build_host") && stderr(&o).contains(says),
            "{bad}: {}",
            stderr(&o)
        );
    }
}
