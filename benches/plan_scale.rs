//! Planning at scale: parse + validate + graph + plan of generated manifests
//! (no tools run), at 200, 2,000 and 10,000 services.
//!
//! Run: `cargo bench --bench plan_scale`. Prints the median time per size,
//! the time per service, the growth ratio between sizes (linear growth means
//! the ratio of times is close to the ratio of sizes) and the peak memory.

use std::path::Path;
use std::time::{Duration, Instant};

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn plan_once(text: &str) -> usize {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => panic!("generated manifest is not JSON: {e}"),
    };
    let validated = match nixmox::manifest::validate_value(Path::new("generated.json"), &value) {
        Ok(v) => v,
        Err(e) => panic!("generated manifest is invalid: {e:?}"),
    };
    match nixmox::plan::build(&validated.manifest, &[]) {
        Ok(plan) => plan.steps.len(),
        Err(e) => panic!("plan failed: {e}"),
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let sizes = [200usize, 2_000, 10_000];
    let mut results: Vec<(usize, Duration)> = Vec::new();
    println!("plan at scale: parse + validate + graph + plan, median of runs");
    println!(
        "{:>8}  {:>10}  {:>12}  {:>8}  {:>14}",
        "services", "median", "per service", "steps", "peak RSS"
    );
    for &n in &sizes {
        let apps = n - 4;
        let text = nixmox::synth::manifest(apps, 3, 42).to_string();
        let runs = if n >= 10_000 { 5 } else { 11 };
        let mut steps = 0;
        let samples: Vec<Duration> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                steps = std::hint::black_box(plan_once(&text));
                t.elapsed()
            })
            .collect();
        let m = median(samples);
        let per = m.as_secs_f64() * 1e6 / n as f64;
        let rss = peak_rss_kib()
            .map(|k| format!("{} MiB", k / 1024))
            .unwrap_or_else(|| "n/a".into());
        println!(
            "{n:>8}  {:>8.2}ms  {per:>10.2}us  {steps:>8}  {rss:>14}",
            m.as_secs_f64() * 1e3
        );
        results.push((n, m));
    }
    for pair in results.windows(2) {
        let ((n0, t0), (n1, t1)) = (pair[0], pair[1]);
        let ratio = t1.as_secs_f64() / t0.as_secs_f64();
        let size_ratio = n1 as f64 / n0 as f64;
        println!(
            "growth {n0} -> {n1}: time x{ratio:.2} for size x{size_ratio:.0} (linearity {:.2}; 1.00 is linear)",
            ratio / size_ratio
        );
    }
    if let Some((_, t)) = results.iter().find(|(n, _)| *n == 2_000) {
        let target = 100.0;
        let ms = t.as_secs_f64() * 1e3;
        println!(
            "2,000 services: {ms:.2} ms = {:.2} of the 100 ms target",
            ms / target
        );
    }
}
