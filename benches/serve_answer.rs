//! `nixmox serve` at 200 services: how long the page and each API answer
//! take on loopback, against the server's own floor (`/healthz`, measured
//! in the same run) and against what a script did before serve (running
//! `nixmox graph --format json`, a process per question); and what serve
//! costs when idle (CPU over 10 s, resident memory).
//!
//! The stack is generated (fictional addresses: serve never looks at its
//! hosts here, `--status-every 0`), its store holds 50 applies of all 200
//! services (80,000 journal entries) written beforehand.
//!
//! Run: `cargo bench --bench serve_answer`.

use nixmox::state::{SqliteStore, Store};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SERVICES: usize = 200;
const RUNS: usize = 50;
const SAMPLES: usize = 40;

/// One keep-alive HTTP/1.1 connection, as a browser holds it.
struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to serve");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        s.set_nodelay(true).expect("nodelay");
        Conn {
            reader: BufReader::new(s),
        }
    }

    /// GET `path`: (status, body length).
    fn get(&mut self, path: &str) -> (u16, usize) {
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        self.reader
            .get_mut()
            .write_all(req.as_bytes())
            .expect("send");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body).expect("body");
        (status, length)
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// utime + stime of a process, in clock ticks (100 per second on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn fill_store(path: &Path, names: &[String]) -> i64 {
    let mut st = SqliteStore::open(path).expect("store");
    let mut last = 0;
    for _ in 0..RUNS {
        let run = st.begin_run("apply").expect("run");
        for n in names {
            for step in [
                format!("nix:service-config:{n}"),
                format!("health:{n}"),
                format!("tf:service-config:{n}"),
                format!("verify:{n}"),
            ] {
                st.journal(run, &step, "started", "").expect("journal");
                st.journal(run, &step, "unchanged", "no change")
                    .expect("journal");
            }
            st.record_health(run, n, "verify", true, "3 checks passed")
                .expect("health");
        }
        st.finish_run(run, "ok").expect("finish");
        last = run;
    }
    for n in names {
        st.set_last_good(
            n,
            &format!("/nix/store/{:0>32}-nixos-system-{n}", 0),
            "inputs",
        )
        .expect("last good");
    }
    last
}

/// First paint and all rows drawn in headless Chromium, against the same
/// browser loading `/healthz`; skipped (and said so) without the tools.
fn paint(port: u16) {
    let tools = std::path::PathBuf::from(
        std::env::var("NIXMOX_TOOLS").unwrap_or_else(|_| "/opt/nixmox".into()),
    );
    let (node, playwright) = (
        tools.join("bin/node"),
        tools.join("node_modules/playwright-core"),
    );
    if !node.exists() || !playwright.exists() || !Path::new("/usr/bin/chromium").exists() {
        println!("the page in Chromium: not measured (run scripts/setup.sh for node, playwright-core and chromium)");
        return;
    }
    let out = Command::new(node)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/paint.mjs"))
        .env("PLAYWRIGHT_CORE", playwright)
        .env("SERVE_URL", format!("http://127.0.0.1:{port}"))
        .env("SERVICES", SERVICES.to_string())
        .output()
        .expect("node");
    let v: serde_json::Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) if out.status.success() => v,
        _ => {
            println!(
                "the page in Chromium: the measurement failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
    };
    let (floor, fcp, rows) = (
        v["floor_ms"].as_f64().unwrap_or(0.0),
        v["fcp_ms"].as_f64().unwrap_or(0.0),
        v["rows_ms"].as_f64().unwrap_or(0.0),
    );
    println!(
        "the page in headless Chromium, median of 5 fresh loads: first contentful paint {fcp:.0} ms, all {SERVICES} service rows drawn {rows:.0} ms; /healthz loads in {floor:.0} ms ({:.1}x)",
        rows / floor.max(1.0)
    );
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = nixmox::synth::manifest(SERVICES - 4, 3, 42);
    let names: Vec<String> = manifest["services"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let path = dir.path().join("manifest.json");
    std::fs::write(&path, manifest.to_string()).expect("manifest");
    let state = dir.path().join("state.db");
    let t = Instant::now();
    let last_run = fill_store(&state, &names);
    println!(
        "store: {RUNS} applies of {SERVICES} services written in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let bin = env!("CARGO_BIN_EXE_nixmox");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let mut serve = Command::new(bin)
        .arg("-m")
        .arg(&path)
        .args(["serve", "--status-every", "0", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env("NIXMOX_STATE", &state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nixmox serve");
    let started = Instant::now();
    let mut conn = loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            drop(s);
            break Conn::open(port);
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    println!("serve up in {:.0} ms", ms(started.elapsed()));

    let run_path = format!("/api/runs/{last_run}");
    let paths: [&str; 9] = [
        "/healthz",
        "/",
        "/assets/app.js",
        "/api/session",
        "/api/stack",
        "/api/services",
        "/api/runs",
        &run_path,
        "/metrics",
    ];
    let mut medians = Vec::new();
    for p in paths {
        let mut samples = Vec::new();
        let mut size = 0;
        for _ in 0..SAMPLES {
            let t = Instant::now();
            let (status, len) = conn.get(p);
            samples.push(t.elapsed());
            assert_eq!(status, 200, "{p} answered {status}");
            size = len;
        }
        medians.push((p, median(samples), size));
    }
    let floor = medians[0].1;
    println!("\nanswer times on loopback at {SERVICES} services, median of {SAMPLES} (one keep-alive connection)");
    println!(
        "{:<22} {:>9} {:>9} {:>10}",
        "request", "ms", "x floor", "bytes"
    );
    for (p, m, size) in &medians {
        let shown = if *p == run_path.as_str() {
            "/api/runs/{id}"
        } else {
            p
        };
        println!(
            "{shown:<22} {:>9.2} {:>9.1} {size:>10}",
            ms(*m),
            m.as_secs_f64() / floor.as_secs_f64()
        );
    }
    // What the page asks for before it can draw: the page, its script and
    // style, who is asking, the stack, the services, the runs.
    let page: Duration = medians
        .iter()
        .filter(|(p, _, _)| {
            matches!(
                *p,
                "/" | "/assets/app.js"
                    | "/api/session"
                    | "/api/stack"
                    | "/api/services"
                    | "/api/runs"
            )
        })
        .map(|x| x.1)
        .sum();
    let style = ["/assets/style.css", "/assets/dom.js", "/assets/graph.js"]
        .iter()
        .map(|p| {
            let t = Instant::now();
            conn.get(p);
            t.elapsed()
        })
        .sum::<Duration>();
    println!(
        "the page's requests in sequence: {:.1} ms",
        ms(page + style)
    );

    // The baseline a script had: a process per question.
    let mut cli = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let out = Command::new(bin)
            .arg("-m")
            .arg(&path)
            .args(["graph", "--format", "json"])
            .env("NIXMOX_STATE", &state)
            .output()
            .expect("nixmox graph");
        assert!(out.status.success());
        cli.push(t.elapsed());
    }
    let cli = median(cli);
    let stack = medians
        .iter()
        .find(|x| x.0 == "/api/stack")
        .map(|x| x.1)
        .unwrap_or(floor);
    println!(
        "GET /api/stack {:.2} ms vs `nixmox graph --format json` {:.1} ms: {:.0}x faster",
        ms(stack),
        ms(cli),
        cli.as_secs_f64() / stack.as_secs_f64()
    );

    // The page in a real browser, when the browser tests' tools are here.
    paint(port);

    // Idle: no request for 10 s.
    let pid = serve.id();
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(10));
    let idle = cpu_ticks(pid) - before;
    println!(
        "idle: {:.2} % of one core over 10 s, {} MiB resident",
        idle as f64 / 10.0,
        rss_kib(pid) / 1024
    );
    let _ = serve.kill();
    let _ = serve.wait();
}
