#!/usr/bin/env bash
# Sets up a fresh machine and runs every check a change must pass:
# formatting, clippy, the test suite, and the benchmarks (their figures are
# printed, not asserted: speed is judged by ratios, not by wall clock).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo fmt --check
cargo clippy --all-targets -- -D warnings
# Benches are run by cargo bench below, not as tests.
cargo test --lib --bins --tests
cargo bench --bench plan_scale
# The lab's no-op re-apply against the naive loop (needs root; prints figures, asserts nothing).
cargo bench --bench noop_apply
cargo bench --bench parallel_deploy
