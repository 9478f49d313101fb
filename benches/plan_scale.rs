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
    long_lists();
    if let Some((_, t)) = results.iter().find(|(n, _)| *n == 2_000) {
        let target = 100.0;
        let ms = t.as_secs_f64() * 1e3;
        println!(
            "2,000 services: {ms:.2} ms = {:.2} of the 100 ms target",
            ms / target
        );
    }
}

/// Validation is linear in the length of a list: a `depends_on` of N
/// entries (half of them unknown, a tenth listed twice) against the time
/// it takes only to parse the same text. The ratio stays flat as N grows
/// ten times; a quadratic check would multiply it by ten.
fn long_lists() {
    println!("long depends_on lists: validate against parse alone, median of 5");
    println!(
        "{:>9}  {:>10}  {:>10}  {:>7}",
        "entries", "parse", "validate", "ratio"
    );
    let mut ratios = Vec::new();
    for n in [10_000usize, 100_000] {
        let mut v = nixmox::synth::manifest(20, 3, 7);
        let names: Vec<String> = v["services"]
            .as_object()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        let list: Vec<String> = (0..n)
            .map(|i| match i % 10 {
                0 => names[1].clone(),
                i if i % 2 == 0 => format!("unknown-{i}"),
                _ => format!("missing-{}", i / 10),
            })
            .collect();
        if let Some(first) = names.first() {
            v["services"][first]["depends_on"] = serde_json::json!(list);
        }
        let text = v.to_string();
        let time = |f: &dyn Fn()| {
            median(
                (0..5)
                    .map(|_| {
                        let t = Instant::now();
                        f();
                        t.elapsed()
                    })
                    .collect(),
            )
        };
        let parse = time(&|| {
            std::hint::black_box(serde_json::from_str::<serde_json::Value>(&text).ok());
        });
        let validate = time(&|| {
            let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            std::hint::black_box(
                nixmox::manifest::validate_value(Path::new("long.json"), &value).is_err(),
            );
        });
        let ratio = validate.as_secs_f64() / parse.as_secs_f64();
        println!(
            "{n:>9}  {:>8.2}ms  {:>8.2}ms  {ratio:>6.2}x",
            parse.as_secs_f64() * 1e3,
            validate.as_secs_f64() * 1e3
        );
        ratios.push(ratio);
    }
    if let [small, large] = ratios[..] {
        println!(
            "validate/parse ratio x{:.2} for size x10 (1.00 is linear; a quadratic check would give about 10)",
            large / small
        );
    }
}
