//! How the cost grows with the stack: the lab with N generated application
//! hosts on top of its own seven (examples/lab/scale.nix, apps.nix), each
//! with its database, proxy route and OIDC client. For every N, each figure
//! is a ratio of two things measured in the same run:
//!
//! - first deploy of the whole stack (hosts made, no system yet):
//!   `--parallel 1` against the default;
//! - no-op re-apply against the naive loop (scripts/naive_apply.py) and
//!   against the unavoidable checks all at once (benches/support/floor.rs);
//! - one application changed (a new version of app01): the run against
//!   that host's own deploy steps alone (build, copy, switch, gate,
//!   verify; benches/support/floor.rs), with the seconds its steps took
//!   inside the run beside them;
//! - `verify` and `status` of the whole stack, per host;
//! - peak memory of nixmox, and the processes and ssh commands a run
//!   starts (counted with strace in a run of their own, not a timed one);
//! - what one fresh SSH connection to every host costs the machine, with
//!   its OpenSSH's default key exchange and with curve25519-sha256 alone.
//!
//! The no-op, its floor and the one-app change are measured twice: riding
//! on the SSH connections the runs before kept (`nixos.ssh.persist`, 60 s
//! by default: a re-run within a minute), and with every connection opened
//! anew (`NIXMOX_SSH_PERSIST=0`; the floor on connections of its own), what
//! a re-run after a longer pause costs.
//!
//! Needs root (lab hosts) and strace. Run:
//! `cargo bench --bench scale` (N = 4, 8, 16, 32), or choose the sizes:
//! `NIXMOX_SCALE_SIZES=16 cargo bench --bench scale`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "support/floor.rs"]
mod floor;
#[path = "../tests/support/lab_stack.rs"]
#[allow(dead_code)] // the bench uses the lab's files, not the test harness
mod lab_stack;

/// The middle value: of durations and of CPU seconds alike.
fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

/// The connections a comparison rides on: those runs kept, or each opened anew.
fn control(anew: bool) -> nixmox::nixos::ssh_control::Control {
    nixmox::nixos::ssh_control::Control::with_persist(if anew { 0 } else { 60 })
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A copy of the lab with `apps` generated applications, its own lab and
/// state directories; taken down when dropped.
struct Stack {
    root: tempfile::TempDir,
    apps: usize,
    /// Whether runs open every SSH connection anew (`NIXMOX_SSH_PERSIST=0`)
    /// instead of riding on kept ones (60 s, the default).
    anew: std::sync::atomic::AtomicBool,
}

impl Stack {
    fn new(apps: usize) -> Stack {
        let root = tempfile::tempdir().expect("tempdir");
        let stack = Stack {
            root,
            apps,
            anew: std::sync::atomic::AtomicBool::new(false),
        };
        lab_stack::copy_tree(
            &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/lab"),
            &stack.dir(),
        );
        stack.write_scale("1.0");
        for args in [&["init", "-q"][..], &["add", "-A"]] {
            git(&stack.dir(), args);
        }
        lab_stack::rehome(&stack.manifest(), &stack.lab());
        stack
    }

    fn dir(&self) -> PathBuf {
        self.root.path().join("stack")
    }
    fn lab(&self) -> PathBuf {
        self.root.path().join("lab")
    }
    fn state(&self) -> PathBuf {
        self.root.path().join("state")
    }
    fn manifest(&self) -> PathBuf {
        self.dir().join("manifest.nix")
    }
    fn hosts(&self) -> usize {
        self.apps + 7
    }

    /// scale.nix with app01 at `version` (the others at 1.0).
    fn write_scale(&self, version: &str) {
        std::fs::write(
            self.dir().join("scale.nix"),
            format!(
                "{{ apps = {}; versions = {{ app01 = \"{version}\"; }}; }}\n",
                self.apps
            ),
        )
        .expect("write scale.nix");
        if self.dir().join(".git").exists() {
            git(&self.dir(), &["add", "-A"]);
        }
    }

    fn vars(&self) -> Vec<(&'static str, PathBuf)> {
        floor::lab_env(&self.lab(), &self.state())
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .arg("-m")
            .arg(self.manifest())
            .envs(self.vars())
            .env("NIXMOX_SSH_PERSIST", self.persist())
            .env("NO_COLOR", "1");
        c
    }

    fn persist(&self) -> &'static str {
        if self.anew.load(std::sync::atomic::Ordering::SeqCst) {
            "0"
        } else {
            "60"
        }
    }

    fn set_anew(&self, anew: bool) {
        self.anew.store(anew, std::sync::atomic::Ordering::SeqCst);
    }

    fn nixmox(&self, args: &[&str]) -> Output {
        self.command(env!("CARGO_BIN_EXE_nixmox"), args)
            .output()
            .expect("nixmox")
    }

    fn must(&self, args: &[&str]) -> Output {
        let o = self.nixmox(args);
        assert!(
            o.status.success(),
            "nixmox {args:?} on {} hosts: {}{}",
            self.hosts(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    /// A run timed, with nixmox's own peak resident memory (its VmHWM, read
    /// while it runs: the last reading before it exits is the peak).
    fn measured(&self, args: &[&str]) -> (Duration, u64, Output) {
        let start = Instant::now();
        let mut child = self
            .command(env!("CARGO_BIN_EXE_nixmox"), args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nixmox");
        let status = format!("/proc/{}/status", child.id());
        let reader = {
            let mut out = child.stdout.take().expect("stdout");
            let mut err = child.stderr.take().expect("stderr");
            std::thread::spawn(move || {
                use std::io::Read;
                let (mut a, mut b) = (Vec::new(), Vec::new());
                let e = std::thread::spawn(move || {
                    let _ = err.read_to_end(&mut b);
                    b
                });
                let _ = out.read_to_end(&mut a);
                (a, e.join().unwrap_or_default())
            })
        };
        let mut peak = 0;
        loop {
            if let Some(kib) = std::fs::read_to_string(&status).ok().and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            }) {
                peak = kib;
            }
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let elapsed = start.elapsed();
        let status = child.wait().expect("wait");
        let (stdout, stderr) = reader.join().expect("reader");
        (
            elapsed,
            peak,
            Output {
                status,
                stdout,
                stderr,
            },
        )
    }

    /// The processes a run starts, and how many of them are SSH clients,
    /// from an strace of its own (slower, so never a timed run).
    fn counted(&self, args: &[&str]) -> (usize, usize) {
        let log = self.root.path().join("strace.log");
        let mut full = vec![
            "-f",
            "-z",
            "-qq",
            "-e",
            "trace=execve",
            "-e",
            "signal=none",
            "-o",
        ];
        let log_text = log.display().to_string();
        full.push(&log_text);
        full.push(env!("CARGO_BIN_EXE_nixmox"));
        full.extend_from_slice(args);
        let o = self
            .command("strace", &full)
            .output()
            .expect("strace (scripts/setup.sh installs it)");
        assert!(
            o.status.success(),
            "strace nixmox {args:?} ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let text = std::fs::read_to_string(&log).expect("strace log");
        let execs = lab_stack::started(&text);
        let ssh = execs.iter().filter(|e| e[0] == "ssh").count();
        // The first exec is nixmox itself.
        (execs.len().saturating_sub(1), ssh)
    }

    /// `ssh … true` to every lab host (the addresses of the lab's
    /// known_hosts), eight at a time as a run looks at them, no master:
    /// what opening a run's connections costs, in wall time and in CPU
    /// seconds of the whole machine (both ends are on it). `kex` forces a
    /// key exchange algorithm.
    fn ssh_everywhere(&self, kex: Option<&str>) -> (Duration, f64) {
        let known =
            std::fs::read_to_string(self.lab().join("ssh/known_hosts")).expect("known_hosts");
        let mut hosts: Vec<String> = known
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(|h| {
                h.trim_start_matches('[')
                    .split(']')
                    .next()
                    .unwrap_or(h)
                    .to_string()
            })
            .collect();
        hosts.sort();
        hosts.dedup();
        assert_eq!(hosts.len(), self.hosts(), "{hosts:?}");
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (busy, start) = (busy_seconds(), Instant::now());
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(h) = hosts.get(i) else { break };
                    let mut c = Command::new("ssh");
                    c.arg("-i")
                        .arg(self.lab().join("ssh/id_ed25519"))
                        .arg("-o")
                        .arg(format!(
                            "UserKnownHostsFile={}",
                            self.lab().join("ssh/known_hosts").display()
                        ))
                        .args(["-o", "BatchMode=yes", "-o", "ControlMaster=no"]);
                    if let Some(k) = kex {
                        c.arg("-o").arg(format!("KexAlgorithms={k}"));
                    }
                    let o = c
                        .arg(format!("root@{h}"))
                        .arg("true")
                        .output()
                        .expect("ssh");
                    assert!(
                        o.status.success(),
                        "ssh {h}: {}",
                        String::from_utf8_lossy(&o.stderr)
                    );
                });
            }
        });
        (start.elapsed(), busy_seconds() - busy)
    }

    /// Hosts made, nothing deployed, no run recorded: what a first deploy
    /// starts from.
    fn fresh(&self) {
        let _ = self.nixmox(&["lab", "down"]);
        let _ = std::fs::remove_dir_all(self.state());
        self.must(&["lab", "up", "--no-systems"]);
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.nixmox(&["lab", "down"]);
    }
}

/// The cores the machine's CPU seconds are spread over.
fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

/// The least time the run's work takes on this machine, however ordered:
/// its CPU seconds spread evenly over every core.
fn least(cpu: &Cpu) -> f64 {
    cpu.run / cores()
}

/// CPU seconds of this process and of every process it and its children
/// started and waited for: nixmox and its tools, not the lab's daemons (nor
/// the SSH connections kept in the background).
fn own_seconds() -> f64 {
    let of = |who| {
        // SAFETY: getrusage fills the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
        t(u.ru_utime) + t(u.ru_stime)
    };
    of(libc::RUSAGE_SELF) + of(libc::RUSAGE_CHILDREN)
}

/// CPU seconds the whole machine has spent busy so far (/proc/stat).
fn busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy: f64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    busy / 100.0
}

fn git(dir: &Path, args: &[&str]) {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git");
    assert!(o.status.success(), "git {args:?}");
}

/// The slowest steps of an `apply --json` stream: where a run's time went.
fn slowest(json: &[u8], n: usize) -> String {
    let mut steps: Vec<(f64, String)> = String::from_utf8_lossy(json)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step" && e["status"] != "started")
        .filter_map(|e| Some((e["seconds"].as_f64()?, e["step"].as_str()?.to_string())))
        .collect();
    steps.sort_by(|a, b| b.0.total_cmp(&a.0));
    steps
        .iter()
        .take(n)
        .map(|(t, s)| format!("{s} {t:.2} s"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs of what is compared with a baseline taken in turns with it (the
/// no-op and its floor, the one-app change and its own deploy): two more
/// than of the rest, since the ratio is the target and a lab host's
/// activation alone varies by half a second from run to run.
fn compared_runs(runs: usize) -> usize {
    runs + 2
}

/// The seconds of every step of `service` in an `apply --json` stream.
fn own_steps(json: &[u8], service: &str) -> Duration {
    String::from_utf8_lossy(json)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step" && e["service"] == service && e["status"] != "started")
        .filter_map(|e| e["seconds"].as_f64())
        .map(Duration::from_secs_f64)
        .sum()
}

/// CPU seconds (medians) of the one-app change.
struct Cpu {
    /// The whole machine's during the run: nixmox, the tools it starts and
    /// the lab's hosts answering. Over the cores, the least time any run
    /// doing the same work could take here.
    run: f64,
    /// Of those, nixmox's and its tools' (on real hosts the rest is theirs).
    here: f64,
    /// The whole machine's during app01's own deploy alone.
    alone: f64,
}

struct Row {
    apps: usize,
    hosts: usize,
    cold: Duration,
    serial: Duration,
    side_by_side: Duration,
    naive: Duration,
    noop: Duration,
    noop_slowest: String,
    floor: Duration,
    change: Duration,
    change_slowest: String,
    /// app01's own deploy steps alone, and the seconds of its steps in the run.
    own: Duration,
    own_in_run: Duration,
    /// What the one-app run and app01's own deploy cost the machine, kept
    /// connections and anew.
    change_cpu: Cpu,
    change_cpu_cold: Cpu,
    /// The same with every SSH connection opened anew.
    noop_cold: Duration,
    floor_cold: Duration,
    change_cold: Duration,
    own_cold: Duration,
    own_in_run_cold: Duration,
    verify: Duration,
    status: Duration,
    /// One fresh SSH connection to every host: with the machine's default
    /// key exchange, and with curve25519-sha256 alone (wall, CPU seconds).
    ssh_default: (Duration, f64),
    ssh_curve25519: (Duration, f64),
    peak_kib: u64,
    noop_counts: (usize, usize),
    change_counts: (usize, usize),
    verify_counts: (usize, usize),
    status_counts: (usize, usize),
}

fn measure(apps: usize, runs: usize) -> Row {
    let stack = Stack::new(apps);
    let time_of = |args: &[&str]| -> (Duration, u64) {
        let (t, peak, o) = stack.measured(args);
        assert!(
            o.status.success(),
            "nixmox {args:?} on {} hosts: {}",
            stack.hosts(),
            String::from_utf8_lossy(&o.stdout)
        );
        (t, peak)
    };
    // First deploys: once cold (its systems built), then side by side and
    // one at a time, each from hosts with nothing on them.
    stack.fresh();
    let (cold, mut peak) = time_of(&["apply"]);
    stack.fresh();
    let (serial, _) = time_of(&["apply", "--parallel", "1"]);
    stack.fresh();
    let (side_by_side, p) = time_of(&["apply"]);
    peak = peak.max(p);

    // No-op re-applies and their floor, taken in turns (a drift of the lab
    // over the minutes of a size weighs on both alike): on kept
    // connections, then anew. Then the naive loop.
    let mut noop_slowest = String::new();
    let mut noops = |anew: bool| {
        stack.set_anew(anew);
        let (mut times, mut floors) = (Vec::new(), Vec::new());
        for _ in 0..compared_runs(runs) {
            // nixmox first: on kept connections, the floor rides on those.
            let (t, p, o) = stack.measured(&["apply", "--json"]);
            assert!(o.status.success(), "no-op apply");
            peak = peak.max(p);
            times.push(t);
            if !anew {
                noop_slowest = slowest(&o.stdout, 4);
            }
            floors.push(floor::unavoidable(
                &stack.manifest(),
                &stack.vars(),
                &control(anew),
            ));
        }
        stack.set_anew(false);
        (median(times), median(floors))
    };
    let (noop, floor) = noops(false);
    let (noop_cold, floor_cold) = noops(true);
    let naive = median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                let o = Command::new("python3")
                    .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/naive_apply.py"))
                    .arg(stack.manifest())
                    .arg(stack.state())
                    .arg(stack.lab())
                    .envs(stack.vars())
                    .output()
                    .expect("naive loop");
                assert!(
                    o.status.success(),
                    "naive loop: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                start.elapsed()
            })
            .collect(),
    );
    // A nixmox run after the naive loop, so that every host's connection
    // is kept for what follows.
    let _ = stack.measured(&["apply"]);

    // One application changed, a new version each time: its own deploy
    // steps alone (benches/support/floor.rs), then the run with the next
    // version, so that the run is always the last to touch the stack. On
    // kept connections, then anew.
    let mut change_slowest = String::new();
    let mut version = 0;
    let mut changes = |anew: bool| {
        stack.set_anew(anew);
        let (mut times, mut alone, mut in_run) = (Vec::new(), Vec::new(), Vec::new());
        let (mut run_cpu, mut alone_cpu, mut here_cpu) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..compared_runs(runs) {
            version += 1;
            stack.write_scale(&format!("1.{version}"));
            let busy = busy_seconds();
            alone.push(floor::own_deploy(
                &stack.manifest(),
                &stack.vars(),
                &control(anew),
                "app01",
            ));
            alone_cpu.push(busy_seconds() - busy);
            version += 1;
            stack.write_scale(&format!("1.{version}"));
            let (busy, here) = (busy_seconds(), own_seconds());
            let (t, p, o) = stack.measured(&["apply", "--json"]);
            run_cpu.push(busy_seconds() - busy);
            here_cpu.push(own_seconds() - here);
            assert!(o.status.success(), "apply of a changed app01");
            peak = peak.max(p);
            times.push(t);
            in_run.push(own_steps(&o.stdout, "app01"));
            if !anew {
                change_slowest = slowest(&o.stdout, 4);
            }
        }
        stack.set_anew(false);
        let cpu = Cpu {
            run: median(run_cpu),
            here: median(here_cpu),
            alone: median(alone_cpu),
        };
        ((median(times), median(alone), median(in_run)), cpu)
    };
    let ((change, own, own_in_run), change_cpu) = changes(false);
    let ((change_cold, own_cold, own_in_run_cold), change_cpu_cold) = changes(true);

    let mut verifies = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..runs {
        let (t, p) = time_of(&["verify"]);
        verifies.push(t);
        peak = peak.max(p);
        let (t, p) = time_of(&["status"]);
        statuses.push(t);
        peak = peak.max(p);
    }

    let ssh_default = stack.ssh_everywhere(None);
    let ssh_curve25519 = stack.ssh_everywhere(Some("curve25519-sha256"));

    let noop_counts = stack.counted(&["apply"]);
    stack.write_scale("2.0");
    let change_counts = stack.counted(&["apply"]);
    let verify_counts = stack.counted(&["verify"]);
    let status_counts = stack.counted(&["status"]);
    Row {
        apps,
        hosts: stack.hosts(),
        cold,
        serial,
        side_by_side,
        naive,
        noop,
        noop_slowest,
        floor,
        change,
        change_slowest,
        own,
        own_in_run,
        change_cpu,
        change_cpu_cold,
        noop_cold,
        floor_cold,
        change_cold,
        own_cold,
        own_in_run_cold,
        verify: median(verifies),
        status: median(statuses),
        ssh_default,
        ssh_curve25519,
        peak_kib: peak,
        noop_counts,
        change_counts,
        verify_counts,
        status_counts,
    }
}

fn print(r: &Row, runs: usize) {
    let per = |d: Duration| secs(d) / r.hosts as f64 * 1000.0;
    println!(
        "\nscale: {} generated apps, {} hosts (median of {runs} where repeated)",
        r.apps, r.hosts
    );
    println!(
        "  first deploy (systems built)       {:>7.2} s",
        secs(r.cold)
    );
    println!(
        "  first deploy --parallel 1          {:>7.2} s",
        secs(r.serial)
    );
    println!(
        "  first deploy (default --parallel)  {:>7.2} s   {:.2}x faster than --parallel 1",
        secs(r.side_by_side),
        secs(r.serial) / secs(r.side_by_side)
    );
    println!(
        "  no-op: naive loop                  {:>7.2} s",
        secs(r.naive)
    );
    for (how, floor, noop) in [
        ("kept connections", r.floor, r.noop),
        ("connections anew", r.floor_cold, r.noop_cold),
    ] {
        println!(
            "  no-op, {how} (median of {}, in turns with the floor):",
            compared_runs(runs)
        );
        println!(
            "    unavoidable checks               {:>7.2} s",
            secs(floor)
        );
        println!(
            "    nixmox apply                     {:>7.2} s   {:.1}x faster than the naive loop (target at 32: 10x), {:.2}x the unavoidable checks (target: 1.2x)",
            secs(noop),
            secs(r.naive) / secs(noop),
            secs(noop) / secs(floor)
        );
    }
    println!(
        "    slowest steps (last run on kept connections): {}",
        r.noop_slowest
    );
    println!("  one app changed (median of {}):", compared_runs(runs));
    for (how, change, own, in_run, cpu) in [
        (
            "kept connections",
            r.change,
            r.own,
            r.own_in_run,
            &r.change_cpu,
        ),
        (
            "connections anew",
            r.change_cold,
            r.own_cold,
            r.own_in_run_cold,
            &r.change_cpu_cold,
        ),
    ] {
        println!(
            "    {how}: {:>7.2} s   {:.2}x app01's own deploy steps alone ({:.2} s; target: 1.5x); its steps in the run {:.2} s",
            secs(change),
            secs(change) / secs(own),
            secs(own),
            secs(in_run)
        );
        println!(
            "      machine CPU: the run {:.2} CPU-s ({:.2} of them nixmox and its tools, the rest the lab's hosts), app01's own deploy alone {:.2} CPU-s; on {} cores no run doing this work takes less than {:.2} s, {:.2}x the own deploy",
            cpu.run,
            cpu.here,
            cpu.alone,
            cores(),
            least(cpu),
            least(cpu) / secs(own)
        );
    }
    println!(
        "    slowest steps (last run on kept connections): {}",
        r.change_slowest
    );
    println!(
        "  verify                             {:>7.2} s   {:.0} ms per host",
        secs(r.verify),
        per(r.verify)
    );
    println!(
        "  status                             {:>7.2} s   {:.0} ms per host",
        secs(r.status),
        per(r.status)
    );
    println!(
        "  a fresh ssh to every host          {:>7.2} s   {:.2} CPU-s; with curve25519-sha256 key exchange {:.2} s, {:.2} CPU-s",
        secs(r.ssh_default.0),
        r.ssh_default.1,
        secs(r.ssh_curve25519.0),
        r.ssh_curve25519.1
    );
    println!(
        "  nixmox peak memory                 {:>7.1} MiB",
        r.peak_kib as f64 / 1024.0
    );
    for (what, (procs, ssh)) in [
        ("no-op apply", r.noop_counts),
        ("one-app apply", r.change_counts),
        ("verify", r.verify_counts),
        ("status", r.status_counts),
    ] {
        println!(
            "  {what:<14} processes {procs:>5} ({:.1} per host), ssh commands {ssh:>3} ({:.2} per host)",
            procs as f64 / r.hosts as f64,
            ssh as f64 / r.hosts as f64
        );
    }
}

fn main() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    {
        println!("scale: skipped, it needs root to bring the lab up");
        return;
    }
    let sizes: Vec<usize> = std::env::var("NIXMOX_SCALE_SIZES")
        .unwrap_or_else(|_| "4,8,16,32".into())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .ok()
                .filter(|n| (1..=32).contains(n))
                .unwrap_or_else(|| {
                    panic!("NIXMOX_SCALE_SIZES: {n:?} is not a number of apps from 1 to 32")
                })
        })
        .collect();
    let runs: usize = std::env::var("NIXMOX_SCALE_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|r| (1..=9).contains(r))
        .unwrap_or(3);
    let mut rows = Vec::new();
    for n in sizes {
        let row = measure(n, runs);
        print(&row, runs);
        rows.push(row);
    }
    println!("\nkept: on the connections the runs before kept (a re-run within nixos.ssh.persist); anew: every connection opened anew.");
    println!("\n| apps | hosts | first deploy p1/default | no-op vs naive, kept / anew | no-op / floor, kept / anew | one app / own deploy alone, kept / anew | one app: the machine's least / own deploy, kept / anew | verify | status | peak MiB | processes (no-op) | ssh commands (no-op) | fresh ssh to every host, CPU-s: default kex / curve25519 |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.2}x | {:.1}x / {:.1}x | {:.2}x / {:.2}x | {:.2}x / {:.2}x | {:.2}x / {:.2}x | {:.2} s | {:.2} s | {:.0} | {} | {} | {:.2} / {:.2} |",
            r.apps,
            r.hosts,
            secs(r.serial) / secs(r.side_by_side),
            secs(r.naive) / secs(r.noop),
            secs(r.naive) / secs(r.noop_cold),
            secs(r.noop) / secs(r.floor),
            secs(r.noop_cold) / secs(r.floor_cold),
            secs(r.change) / secs(r.own),
            secs(r.change_cold) / secs(r.own_cold),
            least(&r.change_cpu) / secs(r.own),
            least(&r.change_cpu_cold) / secs(r.own_cold),
            secs(r.verify),
            secs(r.status),
            r.peak_kib as f64 / 1024.0,
            r.noop_counts.0,
            r.noop_counts.1,
            r.ssh_default.1,
            r.ssh_curve25519.1
        );
    }
}
