#!/usr/bin/env bash
# Proves the README's two commands on a machine nobody touched: a Debian 12
# root made anew with debootstrap from Debian's packages, holding nothing but
# a clone of this checkout and the machine's Rust toolchain (read-only; every
# fresh machine has one). In it, as root:
#
#   1. with the package registries reachable: scripts/setup.sh from nothing,
#      then every crate the builds need fetched (so step 2 needs no network);
#   2. in a network namespace of its own that holds only loopback (no route
#      anywhere; the lab's bridge and hosts live inside it too):
#      scripts/demo.sh (the main job: the whole lab stack deployed, applied
#      again, taken down), then scripts/test.sh (every check).
#
# Whatever was installed by hand on this machine cannot help: the root has
# its own /etc, /usr, /nix and /opt. Needs root, debootstrap (installed when
# missing), unshare and ip. Usage:
#
#   scripts/clean-root.sh [all|demo|test]   (default: all)
#
# NIXMOX_CLEAN_ROOT: where the root is made (default /var/tmp/nixmox-clean-root);
# it is removed first and after a successful run (NIXMOX_KEEP_ROOT=1 keeps it).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
what=${1:-all}
case $what in all | demo | test) ;; *)
  echo "usage: $0 [all|demo|test]" >&2
  exit 2
  ;;
esac

ROOT=${NIXMOX_CLEAN_ROOT:-/var/tmp/nixmox-clean-root}
SUITE=bookworm
MIRROR=${NIXMOX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
NETNS=nixmox-clean-root
log() { printf 'clean-root: %s\n' "$*"; }
die() {
  log "$*" >&2
  exit 1
}

[[ $(id -u) -eq 0 ]] || die "run as root: it makes a Debian root with debootstrap and mounts into it"
[[ $ROOT == /*/* && $ROOT != *..* ]] || die "NIXMOX_CLEAN_ROOT must be an absolute path two levels deep or more, not $ROOT"

# The machine's Rust toolchain (its sysroot: cargo, rustc, clippy, rustfmt),
# shared read-only. Nothing else from ~/.cargo: tools installed there on this
# machine (cargo-fuzz, …) are for setup.sh to install in the root.
command -v rustc >/dev/null 2>&1 || die "rustc (Rust) is required on PATH"
sysroot=$(rustc --print sysroot)
[[ -x $sysroot/bin/cargo ]] || die "no cargo in the Rust toolchain at $sysroot"

# Everything mounted under the root, deepest first.
mounts_under() { awk -v r="$ROOT" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/self/mounts | sort -r; }

teardown() {
  # Every process of a step lives in the step's own PID namespace and died
  # with it; what is left to undo are the mounts.
  local m
  for m in $(mounts_under); do umount -l "$m" 2>/dev/null || true; done
  ip netns del "$NETNS" 2>/dev/null || true
  [[ -z $(mounts_under) ]] || die "cannot unmount everything under $ROOT: $(mounts_under | tr '\n' ' ')"
}

remove_root() {
  teardown
  # --one-file-system: never follow into anything still mounted (the toolchain is read-only anyway).
  [[ -e $ROOT ]] && rm -rf --one-file-system "$ROOT"
  return 0
}

# Runs a command in the root, as a fresh login shell would: the toolchain on
# PATH, a CARGO_HOME of its own. The root becomes the root of a mount
# namespace of its own (pivot_root, not chroot: Nix returns to its original
# mount namespace before it starts ssh, which would leave a mere chroot),
# in a PID namespace of its own (whatever the step leaves running, the lab's
# daemons included, dies with it). `offline`: in a network namespace of its
# own that holds only loopback, and cargo told not to try the network.
in_root() {
  local net=$1 cmd=$2 pre=() offline=()
  if [[ $net == offline ]]; then
    ip netns add "$NETNS"
    ip -n "$NETNS" link set lo up
    pre=(ip netns exec "$NETNS")
    offline=(CARGO_NET_OFFLINE=true)
  fi
  # The machine's pointers at its certificate bundle, where it has them.
  local v pass=()
  for v in SSL_CERT_FILE SSL_CERT_DIR CURL_CA_BUNDLE PIP_CERT REQUESTS_CA_BUNDLE NODE_EXTRA_CA_CERTS NIX_SSL_CERT_FILE GIT_SSL_CAINFO; do
    [[ -n ${!v:-} ]] && pass+=("$v=${!v}")
  done
  local rc=0
  # shellcheck disable=SC2016 # expanded by the inner shell
  "${pre[@]}" unshare --mount --pid --fork --propagation private -- /bin/sh -c '
    set -e
    cd "$1"
    mkdir -p .host-root
    pivot_root . .host-root
    cd /
    mount -t proc proc /proc
    mount -t sysfs sysfs /sys
    umount -l /.host-root
    rmdir /.host-root
    shift
    exec /usr/sbin/chroot / "$@"' sh "$ROOT" \
    /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 CI=true \
    PATH=/root/.cargo/bin:/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CARGO_HOME=/root/.cargo "${pass[@]}" "${offline[@]}" \
    /bin/bash -c "$cmd" || rc=$?
  [[ $net == offline ]] && ip netns del "$NETNS" 2>/dev/null
  return $rc
}

mount_all() {
  # The root is a mount point of its own, as / is on any machine (pivot_root
  # needs it, and so does `ip netns exec`, which the lab uses).
  mount --bind "$ROOT" "$ROOT"
  mount --rbind /dev "$ROOT/dev" && mount --make-rslave "$ROOT/dev"
  mkdir -p "$ROOT/dev/shm" "$ROOT/run"
  mount -t tmpfs -o mode=1777 shm "$ROOT/dev/shm"
  mount -t tmpfs -o mode=755 run "$ROOT/run"
  mkdir -p "$ROOT/opt/rust"
  mount --bind "$sysroot" "$ROOT/opt/rust" && mount -o remount,bind,ro "$ROOT/opt/rust"
}

if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

trap 'teardown' EXIT
remove_root
started=$SECONDS
log "debootstrap $SUITE into $ROOT (from $MIRROR)"
debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1 ||
  die "debootstrap failed; see $ROOT.debootstrap.log"
rm -f "$ROOT.debootstrap.log"
# How this machine reaches the package registries, as every machine of its
# kind is set up: name resolution, the certificate authorities it trusts
# beyond Debian's own list (those the registries' TLS chains to; the root's
# ca-certificates, once setup.sh installs it, takes them in), and the pip and
# npm settings that point at that trust. Nothing installed is carried over.
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
mkdir -p "$ROOT/usr/local/share/ca-certificates"
if [[ -r /etc/ssl/certs/ca-certificates.crt ]]; then
  python3 - /etc/ssl/certs/ca-certificates.crt /usr/share/ca-certificates "$ROOT/usr/local/share/ca-certificates" <<'PY'
import os, re, sys
bundle, debian_dir, out = sys.argv[1:]
pem = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)
debian = set()
for d, _, files in os.walk(debian_dir):
    for f in files:
        with open(os.path.join(d, f), errors="replace") as fh:
            debian.update(c.strip() for c in pem.findall(fh.read()))
with open(bundle) as fh:
    extra = [c for c in pem.findall(fh.read()) if c.strip() not in debian]
for i, c in enumerate(extra):
    with open(os.path.join(out, f"machine-{i}.crt"), "w") as fh:
        fh.write(c + "\n")
PY
fi
for f in /etc/pip.conf /etc/npmrc; do [[ -e $f ]] && cp "$f" "$ROOT$f"; done
# Debian's security updates, as on any Debian 12 machine.
cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb ${MIRROR%/debian}/debian-security $SUITE-security main
EOF
# The checkout: its files as git sees them (tracked, and new ones not
# ignored), never build output or state left in this working tree.
mkdir -p "$ROOT/work/nixmox"
git -C "$repo" ls-files -z --cached --others --exclude-standard |
  (cd "$repo" && xargs -0 -r tar --no-recursion -cf - --) | tar -xf - -C "$ROOT/work/nixmox"
# A clone is a git repository: Nix reads the lab's flake through git (the
# tracked files only), so the copy is one too, every file committed.
git -C "$ROOT/work/nixmox" init -q
git -C "$ROOT/work/nixmox" add -A
git -C "$ROOT/work/nixmox" -c user.name=clean-root -c user.email=clean-root@localhost \
  commit -q -m "the checkout under test"
log "root made in $((SECONDS - started)) s: $(du -sh --exclude=work "$ROOT" 2>/dev/null | cut -f1)"
mount_all

step() {
  local name=$1 offline=$2 cmd=$3 t=$SECONDS
  log "== $name"
  in_root "$offline" "$cmd" ||
    die "$name failed in the clean root (after $((SECONDS - t)) s); rerun with NIXMOX_KEEP_ROOT=1 to look inside"
  log "== $name: ok in $((SECONDS - t)) s"
}

step "scripts/setup.sh from nothing" online "cd /work/nixmox && scripts/setup.sh"
step "fetching the crates the builds need" online \
  "cd /work/nixmox && cargo fetch --locked -q && (cd fuzz && cargo fetch -q) && (cd tools/terraform-provider-nixmoxlab && cargo fetch --locked -q)"
if [[ $what == all || $what == demo ]]; then
  step "scripts/demo.sh (the main job, no network)" offline \
    "cd /work/nixmox && scripts/demo.sh && target/release/nixmox lab down -m examples/lab/manifest.nix"
fi
if [[ $what == all || $what == test ]]; then
  step "scripts/test.sh (every check, no network)" offline "cd /work/nixmox && scripts/test.sh"
fi
log "all steps passed in $((SECONDS - started)) s"
if [[ ${NIXMOX_KEEP_ROOT:-} == 1 ]]; then
  trap - EXIT
  log "kept $ROOT (NIXMOX_KEEP_ROOT=1)"
else
  trap - EXIT
  remove_root
fi
