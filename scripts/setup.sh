#!/usr/bin/env bash
# Installs what nixmox's tests and demo need on a fresh Debian machine, and
# nothing that is already there. Safe to run again. Needs root for apt-get.
set -euo pipefail

log() { printf 'setup: %s\n' "$*"; }

need_apt=()
command -v nix-instantiate >/dev/null 2>&1 || need_apt+=(nix-bin)
command -v dot >/dev/null 2>&1 || need_apt+=(graphviz)

if ((${#need_apt[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    log "missing ${need_apt[*]}; run this script as root (it uses apt-get)" >&2
    exit 1
  fi
  log "installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
else
  log "system packages present (nix-bin, graphviz)"
fi

command -v cargo >/dev/null 2>&1 || { log "cargo (Rust) is required and was not found on PATH" >&2; exit 1; }
log "ok: $(nix-instantiate --version), $(dot -V 2>&1), $(cargo --version)"
