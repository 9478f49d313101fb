//! `terraform init` of N workspaces that use one provider, with and without
//! the shared provider cache nixmox gives every workspace
//! (`TF_PLUGIN_CACHE_DIR`), in one run. The provider comes as a registry
//! serves it — a zip archive (here the lab's own provider, packed into a
//! filesystem mirror, since no registry is reachable): without the cache
//! every workspace unpacks its own copy; with it, it is unpacked once and
//! linked. Prints time and disk for both, and the ratios; asserts nothing.
//!
//! Needs scripts/setup.sh (Terraform and the lab's provider). Run:
//! `cargo bench --bench terraform_init`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const WORKSPACES: usize = 8;

/// The provider version scripts/setup.sh installs: the one in its Cargo.toml.
fn version() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/terraform-provider-nixmoxlab/Cargo.toml"),
    )
    .ok()
    .and_then(|c| {
        c.lines()
            .find_map(|l| l.strip_prefix("version = \""))
            .and_then(|v| v.strip_suffix('"'))
            .map(str::to_string)
    })
    .expect("the lab provider's version in its Cargo.toml")
}

fn terraform() -> String {
    std::env::var("NIXMOX_TERRAFORM").unwrap_or_else(|_| "/opt/nixmox/bin/terraform".into())
}

fn provider() -> PathBuf {
    let version = version();
    PathBuf::from(format!(
        "/usr/local/share/terraform/plugins/registry.terraform.io/nixmox/nixmoxlab/{version}/linux_amd64/terraform-provider-nixmoxlab_v{version}"
    ))
}

fn du(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if meta.is_dir() {
            total += du(&e.path());
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    total
}

/// Inits every workspace under `root` (fresh ones), returns the time taken
/// and the bytes the workspaces' data directories hold afterwards.
fn init_all(root: &Path, cli_config: &Path, cache: Option<&Path>) -> (Duration, u64) {
    let _ = std::fs::remove_dir_all(root);
    let version = version();
    let mut dirs = Vec::new();
    for i in 0..WORKSPACES {
        let d = root.join(format!("ws{i}"));
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(
            d.join("main.tf"),
            format!(
                "terraform {{\n  required_providers {{\n    nixmoxlab = {{ source = \"nixmox/nixmoxlab\", version = \"{version}\" }}\n  }}\n}}\n"
            ),
        )
        .expect("write");
        dirs.push(d);
    }
    if let Some(c) = cache {
        let _ = std::fs::remove_dir_all(c);
        std::fs::create_dir_all(c).expect("cache dir");
    }
    let started = Instant::now();
    for d in &dirs {
        let mut cmd = Command::new(terraform());
        cmd.args(["init", "-input=false", "-no-color"])
            .current_dir(d)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("TF_CLI_CONFIG_FILE", cli_config)
            .env_remove("TF_PLUGIN_CACHE_DIR");
        if let Some(c) = cache {
            cmd.env("TF_PLUGIN_CACHE_DIR", c);
        }
        let o = cmd.output().expect("terraform init");
        assert!(
            o.status.success(),
            "init in {}: {}",
            d.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let took = started.elapsed();
    let bytes = dirs.iter().map(|d| du(&d.join(".terraform"))).sum();
    (took, bytes)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if !provider().exists() {
        println!(
            "terraform_init: skipped, the lab's provider is not installed (run scripts/setup.sh)"
        );
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    // A filesystem mirror in the packed layout: the provider as a registry zip.
    let mirror = tmp
        .path()
        .join("mirror/registry.terraform.io/nixmox/nixmoxlab");
    std::fs::create_dir_all(&mirror).expect("mirror");
    let version = version();
    let zip = mirror.join(format!(
        "terraform-provider-nixmoxlab_{version}_linux_amd64.zip"
    ));
    let packed = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n    z.write(sys.argv[2], sys.argv[3])",
        ])
        .arg(&zip)
        .arg(provider())
        .arg(format!("terraform-provider-nixmoxlab_v{version}"))
        .status()
        .expect("python3");
    assert!(packed.success(), "cannot pack the provider");
    let cli_config = tmp.path().join("terraformrc");
    std::fs::write(
        &cli_config,
        format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path = \"{}\"\n    include = [\"registry.terraform.io/nixmox/nixmoxlab\"]\n  }}\n  direct {{\n    exclude = [\"registry.terraform.io/nixmox/nixmoxlab\"]\n  }}\n}}\n",
            tmp.path().join("mirror").display()
        ),
    )
    .expect("cli config");
    let provider_mib =
        std::fs::metadata(provider()).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;
    let runs = 3;
    let (mut without, mut with) = (Vec::new(), Vec::new());
    let (mut disk_without, mut disk_with) = (0, 0);
    for _ in 0..runs {
        let (t, b) = init_all(&tmp.path().join("no-cache"), &cli_config, None);
        without.push(t);
        disk_without = b;
        let (t, b) = init_all(
            &tmp.path().join("cache"),
            &cli_config,
            Some(&tmp.path().join("plugin-cache")),
        );
        with.push(t);
        disk_with = b;
    }
    let (a, b) = (median(without), median(with));
    println!(
        "terraform init of {WORKSPACES} workspaces sharing one provider ({provider_mib:.1} MiB unpacked, from a zip as a registry serves it), median of {runs}:"
    );
    println!(
        "  each workspace unpacks its own copy   {:>7.2} s   {:>7.1} MiB in the workspaces",
        a.as_secs_f64(),
        disk_without as f64 / 1048576.0
    );
    println!(
        "  one shared cache (TF_PLUGIN_CACHE_DIR) {:>7.2} s   {:>7.1} MiB in the workspaces (+{provider_mib:.1} MiB once in the cache)",
        b.as_secs_f64(),
        disk_with as f64 / 1048576.0
    );
    println!(
        "  the shared cache takes {:.2}x the time and {:.3}x the workspace disk",
        b.as_secs_f64() / a.as_secs_f64(),
        disk_with as f64 / disk_without.max(1) as f64
    );
}
