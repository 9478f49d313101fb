//! `nixmox serve`'s API through the real binary, over HTTP on loopback: the
//! reads, runs written by another process appearing live (SQLite and
//! PostgreSQL stores), every action refused without a login, bad input
//! refused naming the problem, the run lock honoured, reads closed off
//! loopback, and the token never in an answer. The stack's hosts sit on
//! loopback addresses: nothing here leaves the machine. The browser and the
//! login through the identity provider are proven on the lab
//! (tests/serve_lab.rs).

use nixmox::state::{Holder, SqliteStore, Store};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/script_stack.rs"]
#[allow(dead_code)]
mod script_stack;

#[path = "support/postgres.rs"]
mod postgres;

const TOKEN: &str = "test-token-7f3a9c2e41b8d6f05a9e";

struct Serve {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
    state: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A stack on loopback addresses with `serve` settings, and serve on it.
fn serve_with(serve: Value, state: Option<String>) -> Serve {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut m = script_stack::manifest(
        "127.0.0",
        "serve.test",
        &[("wiki", &[]), ("docs", &["wiki"])],
        1,
    );
    m["serve"] = serve;
    std::fs::write(dir.path().join("manifest.json"), m.to_string()).expect("manifest");
    std::fs::write(dir.path().join("serve.token"), format!("{TOKEN}\n")).expect("token");
    let state = state.unwrap_or_else(|| dir.path().join("state.db").display().to_string());
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_nixmox"))
        .arg("-m")
        .arg(dir.path().join("manifest.json"))
        .args(["serve", "--status-every", "0", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env("NIXMOX_STATE", &state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nixmox serve");
    let s = Serve {
        child,
        base: format!("http://127.0.0.1:{port}"),
        dir,
        state,
    };
    let until = Instant::now() + Duration::from_secs(20);
    while get(&s, "/healthz", &[]).0 != 200 {
        assert!(
            Instant::now() < until,
            "serve did not answer /healthz within 20 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    s
}

fn serve() -> Serve {
    serve_with(json!({"token_file": "serve.token"}), None)
}

/// The first place `text` loads something from another origin, if any
/// (an `xmlns` names a namespace, it loads nothing).
fn external_load(text: &str) -> Option<String> {
    for marker in [
        "src=\"",
        "src='",
        "href=\"",
        "href='",
        "url(",
        "@import",
        "fetch(\"",
        "fetch('",
        "EventSource(\"",
        "EventSource('",
    ] {
        for (i, _) in text.match_indices(marker) {
            let rest = text[i + marker.len()..].trim_start_matches(['"', '\'', ' ']);
            if rest.starts_with("http:") || rest.starts_with("https:") || rest.starts_with("//") {
                return Some(text[i..(i + 80).min(text.len())].to_string());
            }
        }
    }
    None
}

/// One request by curl: (status, body). `args` are extra curl arguments.
fn request(s: &Serve, method: &str, path: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "60",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
        ])
        .args(args)
        .arg(format!("{}{path}", s.base))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn get(s: &Serve, path: &str, args: &[&str]) -> (u16, String) {
    request(s, "GET", path, args)
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

const BEARER: &str = "Authorization: Bearer test-token-7f3a9c2e41b8d6f05a9e";

fn post(s: &Serve, path: &str, body: &str, auth: bool) -> (u16, Value) {
    let mut args = vec![
        "-H",
        "content-type: application/json",
        "--data-binary",
        body,
    ];
    if auth {
        args.extend(["-H", BEARER]);
    }
    let (code, text) = request(s, "POST", path, &args);
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn store(s: &Serve) -> SqliteStore {
    SqliteStore::open(Path::new(&s.state)).expect("open the store serve reads")
}

/// A whole run as another nixmox process would record it.
fn record_run(st: &mut dyn Store, steps: &[(&str, &str)], pause: Duration) -> i64 {
    let run = st.begin_run("apply").expect("begin");
    for (step, end) in steps {
        st.journal(run, step, "started", "").expect("journal");
        std::thread::sleep(pause);
        st.journal(run, step, end, "done").expect("journal");
    }
    st.finish_run(run, "ok").expect("finish");
    run
}

#[test]
fn reads_describe_the_stack_and_are_open_on_loopback() {
    let s = serve();
    let (code, body) = get(&s, "/api/stack", &[]);
    assert_eq!(code, 200, "{body}");
    let stack = json_of(&body);
    assert_eq!(stack["domain"], "serve.test");
    assert_eq!(stack["graph"]["nodes"].as_array().map(Vec::len), Some(6));
    assert!(stack["graph"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .any(|e| e["service"] == "docs" && e["depends_on"] == "wiki"));
    assert_eq!(stack["lock"], Value::Null);

    let services = json_of(&get(&s, "/api/services", &[]).1);
    let names: Vec<&str> = services["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|x| x["name"].as_str())
        .collect();
    for n in ["dns", "postgresql", "caddy", "authentik", "wiki", "docs"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    // Nothing has looked at the hosts yet: unknown, not "down".
    assert_eq!(services["services"][0]["live"], Value::Null);

    // The page and its assets: everything from here, nothing from elsewhere.
    let (code, page) = get(&s, "/", &[]);
    assert_eq!(code, 200);
    assert!(page.contains("/assets/app.js"), "{page}");
    for asset in [
        "/",
        "/assets/app.js",
        "/assets/dom.js",
        "/assets/graph.js",
        "/assets/style.css",
    ] {
        let (code, text) = get(&s, asset, &[]);
        assert_eq!(code, 200, "{asset}");
        // Loads from elsewhere: a src/href/url()/import/fetch of an absolute URL.
        let external = external_load(&text);
        assert!(external.is_none(), "{asset} loads {external:?}");
    }

    // The OpenAPI document names every endpoint the server has.
    let doc = json_of(&get(&s, "/api/openapi.json", &[]).1);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    for path in [
        "/api/session",
        "/api/stack",
        "/api/services",
        "/api/status/refresh",
        "/api/plan",
        "/api/runs",
        "/api/runs/{id}",
        "/api/runs/{id}/events",
        "/api/runs/{id}/log/{kind}",
        "/api/live",
        "/api/apply",
        "/api/services/{name}/rollback",
        "/api/unlock",
        "/metrics",
        "/auth/login",
        "/auth/callback",
        "/auth/logout",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "the OpenAPI document lacks {path}"
        );
    }

    let (code, metrics) = get(&s, "/metrics", &[]);
    assert_eq!(code, 200);
    assert!(metrics.contains("nixmox_lock_held 0"), "{metrics}");

    // Bad input is named.
    for (path, want) in [
        ("/api/runs/abc", 400),
        ("/api/runs/0", 400),
        ("/api/runs/99", 404),
        ("/api/runs?limit=0", 400),
        ("/api/runs?limit=many", 400),
        ("/api/runs/1/log/passwd", 400),
        ("/api/runs/1/log/events", 404),
        ("/api/runs/99/events", 404),
        ("/assets/..%2fCargo.toml", 404),
        ("/nowhere", 404),
    ] {
        let (code, body) = get(&s, path, &[]);
        assert_eq!(code, want, "{path}: {body}");
        assert!(
            json_of(&body)["error"]
                .as_str()
                .is_some_and(|e| !e.is_empty()),
            "{path}: {body}"
        );
    }
}

#[test]
fn a_run_recorded_by_another_process_streams_live() {
    let s = serve();
    let live = Command::new("curl")
        .args(["-s", "-N", "--max-time", "8"])
        .arg(format!("{}/api/live", s.base))
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    std::thread::sleep(Duration::from_millis(800));
    let mut st = store(&s);
    let run = record_run(
        &mut st,
        &[
            ("tf:infra", "unchanged"),
            ("nix:service-config:wiki", "changed"),
        ],
        Duration::from_millis(400),
    );
    let out = live.wait_with_output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("event: run"), "{text}");
    assert!(text.contains(&format!("\"id\":{run}")), "{text}");
    let steps = text
        .lines()
        .filter(|l| l.starts_with("data:") && l.contains("\"step\":\"nix:service-config:wiki\""))
        .count();
    assert_eq!(
        steps, 2,
        "started and changed of the wiki step, each once:\n{text}"
    );
    assert!(text.contains("\"status\":\"ok\""), "the run's end: {text}");

    // The run, step by step, with durations.
    let r = json_of(&get(&s, &format!("/api/runs/{run}"), &[]).1);
    assert_eq!(r["run"]["status"], "ok");
    assert_eq!(r["steps"][1]["step"], "nix:service-config:wiki");
    assert_eq!(r["steps"][1]["phase"], "nix:service-config");
    assert_eq!(r["steps"][1]["service"], "wiki");
    assert!(
        r["steps"][1]["seconds"].as_f64().is_some_and(|x| x >= 0.3),
        "{r}"
    );
    let runs = json_of(&get(&s, "/api/runs?limit=5", &[]).1);
    assert_eq!(runs["runs"][0]["id"], run);

    // A finished run's own stream replays it and ends; Last-Event-ID resumes.
    let (code, text) = get(&s, &format!("/api/runs/{run}/events"), &["-N"]);
    assert_eq!(code, 200);
    assert_eq!(text.matches("event: step").count(), 4, "{text}");
    assert!(text.contains("event: end"), "{text}");
    let (_, rest) = get(
        &s,
        &format!("/api/runs/{run}/events"),
        &["-N", "-H", "Last-Event-ID: 2"],
    );
    assert_eq!(rest.matches("event: step").count(), 2, "{rest}");

    // Its last deploy and its check show with the service; metrics count it.
    let services = json_of(&get(&s, "/api/services", &[]).1);
    let wiki = services["services"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == "wiki"))
        .expect("wiki")
        .clone();
    assert_eq!(wiki["last_deploy"]["run"], run);
    assert_eq!(wiki["last_deploy"]["status"], "changed");
    let metrics = get(&s, "/metrics", &[]).1;
    assert!(
        metrics.contains("nixmox_runs_total{command=\"apply\",status=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("nixmox_step_duration_seconds{step=\"nix:service-config:wiki\",phase=\"nix:service-config\"}"), "{metrics}");
}

#[test]
fn every_action_needs_a_login_and_bad_input_is_named() {
    let s = serve();
    for (path, body) in [
        ("/api/apply", r#"{"confirm": true}"#),
        ("/api/plan", "{}"),
        ("/api/unlock", "{}"),
        ("/api/services/wiki/rollback", r#"{"confirm": true}"#),
        ("/auth/logout", "{}"),
    ] {
        let (code, v) = post(&s, path, body, false);
        assert_eq!(code, 401, "{path} without a login: {v}");
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains("login")),
            "{path}: {v}"
        );
        // A wrong token, an unknown session: still nobody.
        let (code, _) = request(
            &s,
            "POST",
            path,
            &[
                "-H",
                "Authorization: Bearer wrong-token-0000000000",
                "--data-binary",
                body,
            ],
        );
        assert_eq!(code, 401, "{path} with a wrong token");
        let (code, _) = request(
            &s,
            "POST",
            path,
            &["-H", "Cookie: nixmox_session=forged", "--data-binary", body],
        );
        assert_eq!(code, 401, "{path} with a forged session");
    }
    for (path, body, want, says) in [
        ("/api/apply", "{}", 400, "confirm"),
        ("/api/apply", r#"{"confirm": false}"#, 400, "confirm"),
        ("/api/apply", "not json", 400, "JSON"),
        (
            "/api/apply",
            r#"{"confirm": true, "goal": "boot"}"#,
            400,
            "goal",
        ),
        (
            "/api/apply",
            r#"{"confirm": true, "only": ["wiki; rm -rf /"]}"#,
            400,
            "no enabled service",
        ),
        (
            "/api/apply",
            r#"{"confirm": true, "only": ["--force=dns"]}"#,
            400,
            "no enabled service",
        ),
        (
            "/api/services/nope/rollback",
            r#"{"confirm": true}"#,
            404,
            "no enabled service",
        ),
        ("/api/services/wiki/rollback", "{}", 400, "confirm"),
        ("/api/plan?wait=soon", "{}", 400, "wait"),
    ] {
        let (code, v) = post(&s, path, body, true);
        assert_eq!(code, want, "{path} {body}: {v}");
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains(says)),
            "{path} {body}: {v}"
        );
    }
    let big = format!(
        r#"{{"confirm": true, "only": ["{}"]}}"#,
        "a".repeat(100_000)
    );
    let (code, _) = post(&s, "/api/apply", &big, true);
    assert_eq!(code, 413, "a body over 64 KiB");
    // Nothing ran: no run was recorded.
    assert_eq!(json_of(&get(&s, "/api/runs", &[]).1)["runs"], json!([]));

    // The token never comes back in an answer.
    let (_, session) = get(&s, "/api/session", &["-H", BEARER]);
    assert_eq!(json_of(&session)["user"], "token");
    for path in [
        "/api/session",
        "/api/stack",
        "/api/services",
        "/metrics",
        "/api/openapi.json",
        "/",
    ] {
        let (_, text) = get(&s, path, &["-H", BEARER]);
        assert!(!text.contains(TOKEN), "{path} shows the token");
    }
}

#[test]
fn actions_take_the_run_lock_like_the_terminal() {
    let s = serve();
    let mut st = store(&s);
    let holder = Holder {
        command: "apply".into(),
        pid: 4_000_000,
        host: "elsewhere".into(),
        since: nixmox::state::now(),
    };
    st.acquire_lock(&holder, Duration::ZERO).expect("lock");
    let stack = json_of(&get(&s, "/api/stack", &[]).1);
    assert_eq!(stack["lock"]["host"], "elsewhere");
    assert!(get(&s, "/metrics", &[]).1.contains("nixmox_lock_held 1"));

    let (code, v) = post(&s, "/api/apply", r#"{"confirm": true}"#, true);
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("elsewhere")),
        "the holder is named: {v}"
    );
    let (code, v) = post(
        &s,
        "/api/services/wiki/rollback",
        r#"{"confirm": true}"#,
        true,
    );
    assert_eq!(code, 409, "{v}");

    let (code, v) = post(&s, "/api/unlock", "", true);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["removed"]["host"], "elsewhere");
    assert_eq!(json_of(&get(&s, "/api/stack", &[]).1)["lock"], Value::Null);
}

#[test]
fn a_plan_runs_from_the_api() {
    let s = serve();
    let (code, v) = post(&s, "/api/plan?wait=1", "{}", true);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["running"], false);
    assert!(v["error"].is_null(), "{v}");
    // The hosts (loopback addresses without sshd) cannot be looked at: plan says so and exits 2.
    assert_eq!(v["exit"], 2, "{v}");
    assert!(v["plan"].is_object(), "{v}");
    assert_eq!(json_of(&get(&s, "/api/plan", &[]).1)["plan"], v["plan"]);
}

#[test]
fn off_loopback_reads_need_a_login_too() {
    // Behind a proxy: the URL browsers use is not loopback, so loopback is everyone.
    let s = serve_with(
        json!({"token_file": "serve.token", "url": "https://nixmox.serve.test"}),
        None,
    );
    for path in [
        "/api/stack",
        "/api/services",
        "/api/runs",
        "/metrics",
        "/api/live",
    ] {
        let (code, body) = get(&s, path, &[]);
        assert_eq!(code, 401, "{path}: {body}");
        let (code, _) = get(&s, path, &["-H", BEARER, "--max-time", "2"]);
        assert!(
            code == 200 || path == "/api/live",
            "{path} with the token: {code}"
        );
    }
    // The page and who-am-I stay open, so a browser can log in.
    assert_eq!(get(&s, "/", &[]).0, 200);
    assert_eq!(json_of(&get(&s, "/api/session", &[]).1)["read_open"], false);
}

#[test]
fn a_short_token_file_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = script_stack::manifest("127.0.0", "serve.test", &[], 1);
    std::fs::write(dir.path().join("manifest.json"), m.to_string()).expect("manifest");
    let token: PathBuf = dir.path().join("t");
    std::fs::write(&token, "short\n").expect("token");
    let out = Command::new(env!("CARGO_BIN_EXE_nixmox"))
        .arg("-m")
        .arg(dir.path().join("manifest.json"))
        .args([
            "serve",
            "--status-every",
            "0",
            "--listen",
            "127.0.0.1:0",
            "--token-file",
        ])
        .arg(&token)
        .env("NIXMOX_STATE", dir.path().join("s.db"))
        .output()
        .expect("nixmox serve");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fewer than 16 characters") && err.contains(&token.display().to_string()),
        "{err}"
    );
    assert!(
        !err.contains("short"),
        "the token's content is not shown: {err}"
    );
}

#[test]
fn a_run_on_a_shared_postgresql_store_streams_live() {
    let pg = postgres::Postgres::start();
    let url = pg.url("postgres");
    let s = serve_with(json!({"token_file": "serve.token"}), Some(url.clone()));
    let live = Command::new("curl")
        .args(["-s", "-N", "--max-time", "6"])
        .arg(format!("{}/api/live", s.base))
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    std::thread::sleep(Duration::from_millis(800));
    let mut st = nixmox::state::PgStore::open(&url).expect("open the shared store");
    let run = record_run(
        &mut st,
        &[("tf:infra", "changed")],
        Duration::from_millis(300),
    );
    let text = String::from_utf8_lossy(&live.wait_with_output().expect("curl").stdout).into_owned();
    assert!(text.contains(&format!("\"id\":{run}")), "{text}");
    assert!(text.contains("\"step\":\"tf:infra\""), "{text}");
    let _ = &s.dir;
}

#[test]
fn the_login_endpoints_refuse_what_they_did_not_start() {
    // Without serve.oidc there is no login to start.
    let s = serve();
    let (code, body) = get(&s, "/auth/login", &[]);
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("serve.oidc"), "{body}");
    drop(s);

    // With it: a callback this browser did not start, or with the provider's
    // error, is refused before anything is asked of the identity provider.
    let s = serve_with(json!({"token_file": "serve.token", "oidc": true}), None);
    for (query, says) in [
        ("?code=abc&state=forged", "does not belong to a login"),
        (
            "?error=access_denied&error_description=%3Cscript%3E",
            "access_denied",
        ),
        ("", "does not belong to a login"),
    ] {
        let (code, body) = get(
            &s,
            &format!("/auth/callback{query}"),
            &["-H", "Cookie: nixmox_login=other"],
        );
        assert_eq!(code, 403, "{query}: {body}");
        assert!(
            json_of(&body)["error"]
                .as_str()
                .is_some_and(|e| e.contains(says)),
            "{query}: {body}"
        );
    }
    let session = json_of(&get(&s, "/api/session", &[]).1);
    assert_eq!(session["oidc"], true);
    assert_eq!(session["user"], Value::Null);
}

#[test]
fn a_status_refresh_and_a_run_log_are_served() {
    let s = serve();
    let (code, v) = post(&s, "/api/status/refresh", "", false);
    assert_eq!(code, 202, "a reader may ask for a fresh look: {v}");
    // The hosts sit on loopback addresses without sshd: the look ends, each unknown or down.
    let until = Instant::now() + Duration::from_secs(120);
    let services = loop {
        let v = json_of(&get(&s, "/api/services", &[]).1);
        if v["status_refreshing"] == false && !v["status_at"].is_null() {
            break v;
        }
        assert!(Instant::now() < until, "the status look did not end: {v}");
        std::thread::sleep(Duration::from_millis(300));
    };
    let stack = json_of(&get(&s, "/api/stack", &[]).1);
    assert!(
        services["services"][0]["live"] == false || !stack["status_error"].is_null(),
        "either the hosts are seen down or the look's failure is named: {services} {stack}"
    );

    // A run's log, from where that run ran.
    let mut st = store(&s);
    let run = record_run(&mut st, &[("tf:infra", "changed")], Duration::ZERO);
    let dir = s.dir.path().join(".nixmox/runs").join(run.to_string());
    std::fs::create_dir_all(&dir).expect("runs dir");
    std::fs::write(dir.join("events.jsonl"), "{\"step\":\"tf:infra\"}\n").expect("log");
    let (code, text) = get(&s, &format!("/api/runs/{run}/log/events"), &[]);
    assert_eq!(code, 200, "{text}");
    assert_eq!(text, "{\"step\":\"tf:infra\"}\n");
    let (code, _) = get(&s, &format!("/api/runs/{run}/log/ssh"), &[]);
    assert_eq!(code, 404, "no ssh log was written");
}
