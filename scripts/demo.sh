#!/usr/bin/env bash
# The main job: on a fresh machine (as root), install what is missing, build
# nixmox, and deploy the whole lab stack — hosts made by real Terraform in
# network namespaces, DNS, PostgreSQL, Caddy, an OIDC provider standing in
# for Authentik, and three applications — then apply again and plan to show
# that nothing changes, and verify it end to end.
# `nixmox lab down -m examples/lab/manifest.nix` removes it all.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release
bin=$PWD/target/release/nixmox
manifest=examples/lab/manifest.nix
export PATH=/opt/nixmox/bin:$PATH

echo "demo: nixmox lab up (its age key and SOPS file, network, hosts through tf:infra, then every phase of the stack)"
time "$bin" lab up -m "$manifest"
# The lab manifest reads secrets from the SOPS file lab up made: validate
# opens every one of them.
"$bin" validate -m "$manifest"
"$bin" plan --offline -m "$manifest"
echo "demo: nixmox apply again: nothing changes"
time "$bin" apply -m "$manifest"
echo "demo: nixmox plan: every workspace, host and database asked; nothing to do (exit 0)"
"$bin" plan -m "$manifest"
echo "demo: nixmox verify: end to end, every OIDC login included"
"$bin" verify -m "$manifest"
"$bin" outputs -m "$manifest"
"$bin" lab status -m "$manifest"
mkdir -p target/demo
"$bin" graph -m "$manifest" --format svg -o target/demo/lab.svg
echo "demo: the stack is up; graph in target/demo/lab.svg; take it down with: $bin lab down -m $manifest"
