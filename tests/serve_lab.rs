//! `nixmox serve` on the lab, in a real headless Chromium (Debian's,
//! driven by playwright-core: tests/browser/serve.mjs): the page lists the
//! stack; an apply started from a terminal shows up live; an action
//! without a login is refused; the login goes through the lab's identity
//! provider (nixmox's own client, registered by tf:auth-core); an apply
//! started from the page runs and its steps stream in. Afterwards no
//! secret of the lab is in serve's output. Needs root (the lab).

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/lab_stack.rs"]
#[allow(dead_code)]
mod lab_stack;
use lab_stack::{text, Lab};

#[path = "support/faults.rs"]
#[allow(dead_code)]
mod faults;

fn tools() -> PathBuf {
    PathBuf::from(std::env::var("NIXMOX_TOOLS").unwrap_or_else(|_| "/opt/nixmox".into()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn the_page_on_the_lab_live_and_behind_the_login() {
    lab_stack::require_root("the serve browser test");
    let playwright = tools().join("node_modules/playwright-core");
    assert!(
        playwright.join("package.json").exists(),
        "{} is missing: run scripts/setup.sh",
        playwright.display()
    );
    let lab = Lab::new();
    // serve's own port in its URL: the redirect URI tf:auth-core registers.
    let port = free_port();
    let manifest = std::fs::read_to_string(lab.manifest()).expect("manifest");
    assert!(
        manifest.contains("http://127.0.0.1:8470"),
        "the lab's serve.url moved"
    );
    std::fs::write(
        lab.manifest(),
        manifest.replace("http://127.0.0.1:8470", &format!("http://127.0.0.1:{port}")),
    )
    .expect("manifest");

    let up = lab.nixmox(&["lab", "up"]);
    assert_eq!(up.status.code(), Some(0), "lab up failed:\n{}", text(&up));
    // Each apply below has a change to deploy: dash's new version answers
    // 503 for its first 5 s, so its gate (and the run) lasts long enough
    // to watch its steps arrive.
    faults::set_version(&lab, "dash", "slow-health-1");

    let log = tempfile::NamedTempFile::new().expect("log file");
    let mut serve = lab
        .command(&[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--status-every",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(log.reopen().expect("log"))
        .spawn()
        .expect("nixmox serve");
    let base = format!("http://127.0.0.1:{port}");
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = Command::new("curl")
            .args(["-sf", "--max-time", "2"])
            .arg(format!("{base}/healthz"))
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            break;
        }
        assert!(Instant::now() < until, "serve did not answer within 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }

    let secrets = lab.secrets();
    let password = secrets["authentik"]["labuser_password"]
        .as_str()
        .expect("the lab user's password")
        .to_string();
    let shots = std::env::var("NIXMOX_SERVE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| lab.state_dir.path().join("screenshots"));
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    // The terminal apply runs as `lab.command` would run it.
    let apply_args = serde_json::json!(["-m", lab.manifest(), "apply", "--yes", "--json"]);
    let mut browser = Command::new(tools().join("bin/node"));
    browser
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/serve.mjs"))
        .env("PLAYWRIGHT_CORE", &playwright)
        .env("SERVE_URL", &base)
        .env("HOST_RULES", "MAP auth.nixmox.test 10.213.0.4")
        .env("NIXMOX_BIN", env!("CARGO_BIN_EXE_nixmox"))
        .env("NIXMOX_APPLY_ARGS", apply_args.to_string())
        .env("LAB_USER", "labuser")
        .env("LAB_PASSWORD", &password)
        .env("SERVICES", "dns,postgresql,caddy,authentik,wiki,notes,dash")
        .env("SCREENSHOT_DIR", &shots)
        .env(
            "BEFORE_PAGE_APPLY",
            serde_json::json!([
                "sed",
                "-i",
                "s/slow-health-1/slow-health-2/",
                lab.manifest()
            ])
            .to_string(),
        );
    lab.env(&mut browser);
    let out = browser
        .output()
        .expect("node (scripts/setup.sh installs it)");
    let _ = serve.kill();
    let _ = serve.wait();
    let mut serve_log = String::new();
    let _ = log.reopen().expect("log").read_to_string(&mut serve_log);
    let report = text(&out);
    println!("{report}");
    assert!(
        out.status.success(),
        "the browser test failed:\n{report}\nserve said:\n{serve_log}"
    );
    for step in [
        "page-lists-services",
        "terminal-apply-appears-live",
        "action-without-login-refused",
        "login-through-idp",
        "apply-from-page-streams",
    ] {
        assert!(
            report.contains(&format!("ok {step}")),
            "{step} did not pass:\n{report}"
        );
    }
    let streamed: usize = report
        .lines()
        .find_map(|l| l.strip_prefix("streamed_steps "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        streamed > 0,
        "no step streamed in before the page's apply ended:\n{report}"
    );
    assert!(serve_log.contains("labuser logged in"), "{serve_log}");

    // No secret of the lab in serve's output or the browser test's.
    let mut known = vec![password];
    known.extend(
        secrets["authentik"]["bootstrap_token"]
            .as_str()
            .map(str::to_string),
    );
    // nixmox's own client secret, which serve redeemed the login's code with.
    let own = lab.secrets()["auth-core"]["client_secrets"]["nixmox"]
        .as_str()
        .map(str::to_string);
    assert!(
        own.is_some(),
        "tf:auth-core registered no secret for nixmox's client"
    );
    known.extend(own);
    for s in &known {
        assert!(
            !serve_log.contains(s.as_str()),
            "serve's output holds a secret"
        );
        assert!(
            !report.contains(s.as_str()),
            "the browser test's output holds a secret"
        );
    }
}
