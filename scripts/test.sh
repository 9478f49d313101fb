#!/usr/bin/env bash
# Sets up a fresh machine and runs every check a change must pass:
# formatting, clippy, the test suite, a bounded fuzz run, and the benchmarks
# (their figures are printed, not asserted: speed is judged by ratios, not by
# wall clock).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
# The tools setup.sh installed (terraform, sops, the lab's node), as the README says.
export PATH="${NIXMOX_TOOLS:-/opt/nixmox}/bin:$PATH"
cargo fmt --check
cargo clippy --all-targets -- -D warnings
# The lab's Terraform provider, its own workspace.
(cd tools/terraform-provider-nixmoxlab && cargo fmt --check && cargo clippy --release --locked -- -D warnings)
# Benches are run by cargo bench below, not as tests.
cargo test --lib --bins --tests
# Manifest parsing, validation and planning under libFuzzer for a bounded
# minute (fuzz/, its own workspace and target dir); a panic, a timeout or
# running out of memory fails the run. Stable Rust only: --sanitizer none.
(cd fuzz && cargo fuzz run --sanitizer none manifest -- -max_total_time=60 -rss_limit_mb=2048 -timeout=30)
# What tools and hosts print back, one target per parser, 15 s each: the
# host glance, a closure, psql's survey, Terraform's plan JSON, message
# stream and outputs, Nix's JSON, HTTP answers and DNS answers.
for target in glance closure psql terraform_plan terraform_stream terraform_outputs nix_json http_answer dns_answer; do
  (cd fuzz && cargo fuzz run --sanitizer none "$target" -- -max_total_time=15 -rss_limit_mb=2048 -timeout=30)
done
cargo bench --bench plan_scale
# The lab's no-op re-apply against the naive loop (needs root; prints figures, asserts nothing).
cargo bench --bench noop_apply
cargo bench --bench parallel_deploy
# Provider installs of many workspaces, with and without the shared cache.
cargo bench --bench terraform_init
# `nixmox serve` at 200 services: the page's and the API's answer times against its floor, idle cost.
cargo bench --bench serve_answer
# Evaluating 23 hosts with a stand-in for nixpkgs's cost: once, in parts, kept per flake source.
cargo bench --bench evaluation
# How the cost grows with the stack, on the lab with 16 generated applications
# (23 hosts; the README's table has 4 to 32): ratios, memory, processes.
NIXMOX_SCALE_SIZES=16 cargo bench --bench scale
