#!/usr/bin/env bash
# The main job as far as it reaches today: build nixmox, then validate, plan
# and graph the homelab example. (The full deploy of the lab stack arrives
# with the lab, NixOS and engine work; see README.)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release
bin=target/release/nixmox
manifest=examples/homelab/manifest.nix

"$bin" validate -m "$manifest"
"$bin" plan --offline -m "$manifest"
mkdir -p target/demo
"$bin" graph -m "$manifest" --format svg -o target/demo/homelab.svg
echo "demo: dependency graph written to target/demo/homelab.svg"
