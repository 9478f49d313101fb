#!/usr/bin/env bash
# Self-test of the lab systems, without `nixmox lab`: builds the toplevels,
# runs each in a throwaway host made here the way the lab makes hosts (a
# network namespace on a bridge + a private mount namespace with /run,
# /nix/var/nix/profiles and /var/lib/lab of its own), activates it, and
# checks every daemon from the root namespace. Then removes all of it.
#
# usage (root, from anywhere):  examples/lab/systems/selftest.sh [host...]
#   default: every host of the lab; KEEP=1 keeps the temporary $LAB.
#
# Only names this script owns are touched: namespaces nmxself-*, veths
# nmxs<N>, the bridge nmxselfbr (10.213.0.1/24), a temporary LAB. Nothing
# named nixmox-* is. Packets go only to lab addresses on that bridge.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../../.." && pwd)
FLAKE="path:$REPO/examples/lab"
export NIX_CONFIG=$'experimental-features = nix-command flakes\nsubstituters =\nsandbox = false'
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
ALL=(dns postgresql caddy authentik wiki notes dash)
if [ $# -gt 0 ]; then HOSTS=("$@"); else HOSTS=("${ALL[@]}"); fi
BR=nmxselfbr
PASS=0 FAIL=0

[ "$(id -u)" = 0 ] || { echo "selftest: must run as root (namespaces, mounts)" >&2; exit 1; }
has() { local h; for h in "${HOSTS[@]}"; do [ "$h" = "$1" ] && return 0; done; return 1; }
log() { printf '== %s\n' "$*"; }
ok() { PASS=$((PASS + 1)); printf 'PASS %s\n' "$1"; }
bad() { FAIL=$((FAIL + 1)); printf 'FAIL %s%s\n' "$1" "${2:+: $2}"; }
# check NAME EXPECTED-SUBSTRING CMD...: CMD's output must contain EXPECTED.
check() {
  local name=$1 want=$2 out; shift 2
  out=$("$@" 2>&1) || true
  if [[ $out == *"$want"* ]]; then ok "$name"; else bad "$name" "expected '$want', got: $(printf '%s' "$out" | head -c 400)"; fi
}

cleanup() {
  local ns pids i
  log "teardown"
  for ns in $(ip netns list | awk '$1 ~ /^nmxself-/ { print $1 }'); do
    pids=$(ip netns pids "$ns" || true)
    [ -n "$pids" ] && kill -TERM $pids 2>/dev/null || true
    for i in $(seq 1 50); do [ -z "$(ip netns pids "$ns")" ] && break; sleep 0.1; done
    pids=$(ip netns pids "$ns" || true)
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
    ip netns del "$ns"
  done
  ip link show "$BR" >/dev/null 2>&1 && ip link del "$BR"
  if [ -n "${MADE_MOUNTPOINT:-}" ]; then rmdir /var/lib/lab 2>/dev/null || true; fi
  if [ -n "${LAB:-}" ] && [ -z "${KEEP:-}" ]; then rm -rf "$LAB"; fi
  [ -n "${KEEP:-}" ] && echo "kept LAB=$LAB"
  return 0
}

# Leftovers of an interrupted run are ours by name; anything else on the lab
# subnet (a running lab) means stop rather than share the addresses.
if ip netns list | grep -q '^nmxself-' || ip link show "$BR" >/dev/null 2>&1; then cleanup; fi
if ip -4 -o addr show | grep -q ' inet 10\.213\.0\.'; then
  echo "selftest: 10.213.0.0/24 is already in use in this namespace (is the lab up?); not touching it" >&2; exit 1
fi
trap cleanup EXIT

LAB=$(mktemp -d /tmp/nmxself-lab.XXXXXX)
chmod 755 "$LAB"
export LAB
log "LAB=$LAB: lab CA"
mkdir -p "$LAB/ca"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=nixmox lab selftest CA" -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign,cRLSign \
  -keyout "$LAB/ca/ca.key" -out "$LAB/ca/ca.crt" 2>/dev/null
chmod 600 "$LAB/ca/ca.key"

log "build"
declare -A TOP IP HOLDER
for n in "${HOSTS[@]}"; do
  TOP[$n]=$(nix build --json --no-link "$FLAKE#nixosConfigurations.$n.config.system.build.toplevel" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["outputs"]["out"])')
  IP[$n]=$(sed -n "s/^IP='\(.*\)'$/\1/p" "${TOP[$n]}/bin/switch-to-configuration")
  echo "$n ${IP[$n]} ${TOP[$n]}"
done
again=$(nix build --json --no-link "$FLAKE#nixosConfigurations.${HOSTS[0]}.config.system.build.toplevel" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["outputs"]["out"])')
[ "$again" = "${TOP[${HOSTS[0]}]}" ] && ok "rebuild gives the same store path" || bad "rebuild gives the same store path"

log "hosts"
[ -d /var/lib/lab ] || { mkdir -p /var/lib/lab; MADE_MOUNTPOINT=1; }
ip link add "$BR" type bridge
ip addr add 10.213.0.1/24 dev "$BR"
ip link set "$BR" up
i=0
for n in "${HOSTS[@]}"; do
  i=$((i + 1))
  ns=nmxself-$n
  ip netns add "$ns"
  ip link add "nmxs$i" type veth peer name eth0 netns "$ns"
  ip link set "nmxs$i" master "$BR" up
  ip -n "$ns" addr add "${IP[$n]}/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  mkdir -p "$LAB/hosts/$n/profiles" "$LAB/hosts/$n/state"
  # The host's mount namespace, held open by a sleeping process.
  ip netns exec "$ns" unshare --mount --propagation private /bin/sh -c '
    mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -m 0700 /run/nixmox &&
    mount --bind "$0/profiles" /nix/var/nix/profiles &&
    mount --bind "$0/state" /var/lib/lab && touch "$0/.ready" && exec sleep infinity' "$LAB/hosts/$n" &
  HOLDER[$n]=$!
  for _ in $(seq 1 50); do [ -e "$LAB/hosts/$n/.ready" ] && break; sleep 0.1; done
  [ -e "$LAB/hosts/$n/.ready" ] || { echo "host $n did not come up" >&2; exit 1; }
done
inhost() { local n=$1; shift; nsenter -t "${HOLDER[$n]}" -m -n -- env LAB="$LAB" "$@"; }
put_env() { inhost "$1" /bin/sh -c 'umask 077; cat >/run/nixmox/env'; }

# What the orchestrator would provide: env files and tf:auth-core's clients.
NOTES_PW=$(openssl rand -hex 12)
WIKI_SECRET=$(openssl rand -hex 16)
has postgresql && printf 'NIXMOX_DB_PASSWORD_NOTES=%s\n' "$NOTES_PW" | put_env postgresql
has notes && printf 'NIXMOX_DB_PASSWORD_NOTES=%s\n' "$NOTES_PW" | put_env notes
has wiki && printf 'NIXMOX_TF_AUTH_CORE_WIKI_CLIENT_SECRET=%s\n' "$WIKI_SECRET" | put_env wiki
if has authentik; then
  cat >"$LAB/hosts/authentik/state/clients.json" <<EOF
{"clients": [
  {"slug": "wiki", "client_id": "wiki-oidc", "client_secret": "$WIKI_SECRET", "client_type": "confidential",
   "redirect_uris": ["https://docs.nixmox.test/oauth/callback"], "scopes": ["openid", "email", "profile"]},
  {"slug": "notes", "client_id": "notes-oidc", "client_type": "public",
   "redirect_uris": ["https://jot.nixmox.test/callback"], "scopes": ["openid", "email", "profile"]}]}
EOF
fi

log "switch"
for n in "${HOSTS[@]}"; do
  # /var/lib/lab is one directory shared by every lab host as a mount point:
  # if anything removes it in the root namespace, the kernel detaches the
  # mounts on it in every namespace. Say so instead of failing obscurely.
  inhost "$n" mountpoint -q /var/lib/lab || bad "$n: /var/lib/lab is not mounted (was /var/lib/lab removed by another lab run?)"
  inhost "$n" nix-env -p /nix/var/nix/profiles/system --set "${TOP[$n]}"
  if inhost "$n" "${TOP[$n]}/bin/switch-to-configuration" switch; then ok "switch $n"; else bad "switch $n"; fi
  check "$n: /run/current-system is its toplevel" "${TOP[$n]}" inhost "$n" readlink /run/current-system
done

log "checks"
CURL=(curl -sS --noproxy '*' --max-time 10 --cacert "$LAB/ca/ca.crt")
via() { printf -- '--resolve\n%s:443:%s\n--resolve\n%s:80:%s\n' "$1" "${IP[caddy]}" "$1" "${IP[caddy]}"; }
if has dns; then
  check "dns: docs.nixmox.test -> caddy" "${IP[caddy]:-10.213.0.4}" dig +short +time=2 +tries=1 @"${IP[dns]}" docs.nixmox.test A
  check "dns: wiki.nixmox.test -> wiki host" "10.213.0.10" dig +short +time=2 +tries=1 @"${IP[dns]}" wiki.nixmox.test A
  check "dns: metrics.nixmox.test (sub-proxy) -> caddy" "10.213.0.4" dig +short +time=2 +tries=1 @"${IP[dns]}" metrics.nixmox.test A
  check "dns: outside names are refused" "status: REFUSED" dig +time=2 +tries=1 @"${IP[dns]}" example.com A
fi
if has postgresql; then
  check "postgresql: select 1 as wiki (trust)" "1" env PGCONNECT_TIMEOUT=5 psql -h "${IP[postgresql]}" -U wiki -d wiki -Atc 'select 1'
  check "postgresql: notes_search as notes (scram)" "1" env PGCONNECT_TIMEOUT=5 PGPASSWORD="$NOTES_PW" psql -h "${IP[postgresql]}" -U notes -d notes_search -Atc 'select 1'
  check "postgresql: wrong password rejected" "password authentication failed" env PGCONNECT_TIMEOUT=5 PGPASSWORD=wrong psql -h "${IP[postgresql]}" -U notes -d notes -Atc 'select 1'
fi
if has caddy; then
  mapfile -t R < <(via docs.nixmox.test)
  check "caddy: https://docs.nixmox.test/ (lab CA)" "hello from wiki" "${CURL[@]}" "${R[@]}" https://docs.nixmox.test/
  check "caddy: http -> https" "308 https://docs.nixmox.test/x" "${CURL[@]}" "${R[@]}" -o /dev/null -w '%{http_code} %{redirect_url}' http://docs.nixmox.test/x
  mapfile -t R < <(via metrics.nixmox.test)
  check "caddy: metrics path prefix + header" "x-lab: nixmox" "${CURL[@]}" "${R[@]}" -D - -o /dev/null https://metrics.nixmox.test/metrics
  check "caddy: metrics healthz under the prefix" '"ok":true' "${CURL[@]}" "${R[@]}" https://metrics.nixmox.test/metrics/healthz
  mapfile -t R < <(via board.nixmox.test)
  check "caddy: forward_auth redirects to login" "302 https://auth.nixmox.test/application/o/authorize/?rd=https%3A%2F%2Fboard.nixmox.test%2Fx%3Fy%3D1" \
    "${CURL[@]}" "${R[@]}" -o /dev/null -w '%{http_code} %{redirect_url}' 'https://board.nixmox.test/x?y=1'
  check "caddy: forward_auth passes a session" "hello from dash (user labuser)" "${CURL[@]}" "${R[@]}" -b nixmox_session=1 https://board.nixmox.test/
fi
if has authentik; then
  check "authentik: ready" "ok" "${CURL[@]}" "http://${IP[authentik]}:9000/-/health/ready/"
  check "authentik: discovery (direct)" '"issuer":"https://auth.nixmox.test/application/o/wiki/"' "${CURL[@]}" "http://${IP[authentik]}:9000/application/o/wiki/.well-known/openid-configuration"
  if has caddy; then
    mapfile -t R < <(via auth.nixmox.test)
    disco=$("${CURL[@]}" "${R[@]}" https://auth.nixmox.test/application/o/notes/.well-known/openid-configuration || true)
    check "authentik: discovery through caddy" '"issuer":"https://auth.nixmox.test/application/o/notes/"' echo "$disco"
    authz=$(printf '%s' "$disco" | python3 -c 'import json,sys; print(json.load(sys.stdin)["authorization_endpoint"])' 2>/dev/null || echo none)
    q="client_id=notes-oidc&response_type=code&scope=openid&state=s1&nonce=n1&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
    check "authentik: registered redirect_uri -> 303 interaction" "303 https://auth.nixmox.test/application/o/notes/interaction/" \
      "${CURL[@]}" "${R[@]}" -o /dev/null -w '%{http_code} %{redirect_url}' "$authz?$q&redirect_uri=https%3A%2F%2Fjot.nixmox.test%2Fcallback"
    check "authentik: foreign redirect_uri -> 400" "invalid_redirect_uri" \
      "${CURL[@]}" "${R[@]}" -w ' %{http_code}' "$authz?$q&redirect_uri=https%3A%2F%2Fevil.example%2Fcb"
  fi
fi
for n in wiki notes; do
  has "$n" && check "$n: /healthz" '"ok":true,"service":"'"$n"'","db":"ok","oidc":"ok"' "${CURL[@]}" "http://${IP[$n]}:8080/healthz"
done
has dash && check "dash: /healthz" '"db":"none","oidc":"none"' "${CURL[@]}" "http://${IP[dash]}:8080/healthz"

log "idempotence"
pids() { cat "$LAB"/hosts/*/state/run/*.pid 2>/dev/null | sort | tr '\n' ' '; }
before=$(pids)
for n in "${HOSTS[@]}"; do inhost "$n" "${TOP[$n]}/bin/switch-to-configuration" switch >/dev/null; done
after=$(pids)
[ -n "$before" ] && [ "$before" = "$after" ] && ok "second switch restarts nothing ($before)" || bad "second switch restarts nothing" "$before -> $after"
if has wiki; then
  check "dry-activate reports unchanged" "app: unchanged" inhost wiki "${TOP[wiki]}/bin/switch-to-configuration" dry-activate
  check "boot only records" "nothing (re)started" inhost wiki "${TOP[wiki]}/bin/switch-to-configuration" boot
  old=$(cat "$LAB/hosts/wiki/state/run/app.pid")
  { printf 'NIXMOX_TF_AUTH_CORE_WIKI_CLIENT_SECRET=%s\n' "$WIKI_SECRET"; echo NIXMOX_TF_AUTH_CORE_EXTRA=1; } | put_env wiki
  check "changed env: dry-activate would restart" "would restart app" inhost wiki "${TOP[wiki]}/bin/switch-to-configuration" dry-activate
  check "changed env restarts the app" "app: configuration changed, restarting" inhost wiki "${TOP[wiki]}/bin/switch-to-configuration" switch
  [ "$old" != "$(cat "$LAB/hosts/wiki/state/run/app.pid")" ] && ok "wiki app has a new pid" || bad "wiki app has a new pid"
  check "wiki healthy after restart" '"ok":true' "${CURL[@]}" "http://${IP[wiki]}:8080/healthz"
fi
if has authentik && has caddy; then
  # Secrets must not reach any log.
  if grep -rqs -e "$WIKI_SECRET" -e "$NOTES_PW" "$LAB"/hosts/*/state/log; then bad "no secret in daemon logs"; else ok "no secret in daemon logs"; fi
fi

echo "selftest: $PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
