# Body of every lab host's bin/switch-to-configuration (bash). The generated
# header before it sets TOPLEVEL, HOST, ROLE, IP, CIDR and ROLE_SRC; the role's
# $ROLE_SRC/activate.sh defines `activate`.
#
# There is no systemd on a lab host: daemons are started detached (setsid),
# with a pidfile and a fingerprint of their configuration under
# /var/lib/lab/run. A daemon that runs with the same fingerprint is left
# alone; a changed fingerprint restarts it. So a second switch is a no-op.
set -euo pipefail
umask 022
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
# The lab directory: from sshd (SetEnv), else what the host recorded at start.
LAB=${LAB:-$(cat /run/nixmox/lab 2>/dev/null || echo /var/lib/nixmox-lab)}
STATE=/var/lib/lab
RUN=$STATE/run
LOGDIR=$STATE/log
ENV_FILE=/run/nixmox/env
DRY=false
DAEMONS=()

say() { printf '%s: %s\n' "$HOST" "$*"; }
die() { say "error: $*" >&2; exit 1; }

# env_get KEY: the value of KEY in /run/nixmox/env (KEY=VALUE lines), without
# ever echoing it. Returns 1 when absent.
env_get() {
  [ -r "$ENV_FILE" ] || return 1
  local line
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in "$1="*) printf '%s' "${line#*=}"; return 0 ;; esac
  done <"$ENV_FILE"
  return 1
}

# env_hash PREFIX: a fingerprint of the env file's lines starting with PREFIX
# (so a daemon restarts when the values it reads change, and only then).
env_hash() {
  { [ -r "$ENV_FILE" ] && grep "^$1" "$ENV_FILE" || true; } | sha256sum | cut -c1-64
}

# hash_of FILE...: one sha256 over the files' contents ("absent" for missing ones).
hash_of() {
  local f
  for f in "$@"; do
    if [ -e "$f" ]; then sha256sum <"$f"; else echo "absent $f"; fi
  done | sha256sum | cut -c1-64
}

# running PID: the process runs. One that has exited but is not reaped yet
# answers kill -0 as a zombie: it is gone. A lab host has no init of its
# own; its daemons are reaped by the machine's, which may take its time
# (seconds, under some container runtimes), where a real host's is prompt.
running() {
  kill -0 "$1" 2>/dev/null || return 1
  ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

daemon_pid() {
  local p
  p=$(cat "$RUN/$1.pid" 2>/dev/null) || return 1
  [ -n "$p" ] && running "$p" || return 1
  echo "$p"
}

daemon_stop() {
  local pid i
  pid=$(daemon_pid "$1") || { rm -f "$RUN/$1.pid" "$RUN/$1.fp"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 150); do running "$pid" || break; sleep 0.1; done
  running "$pid" && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$RUN/$1.pid" "$RUN/$1.fp"
}

# daemon_ensure NAME CONFIG_HASH CMD...: make NAME run CMD with this config.
# The fingerprint covers the command line too (it names store paths).
daemon_ensure() {
  local name=$1 fp pid i
  fp=$(printf '%s\n' "$2" "${@:3}" | sha256sum | cut -c1-64)
  shift 2
  DAEMONS+=("$name")
  pid=$(daemon_pid "$name") || pid=
  if [ -n "$pid" ] && [ "$(cat "$RUN/$name.fp" 2>/dev/null)" = "$fp" ]; then
    say "$name: unchanged (pid $pid)"; return 0
  fi
  if $DRY; then
    if [ -n "$pid" ]; then say "would restart $name (configuration changed)"; else say "would start $name"; fi
    return 0
  fi
  if [ -n "$pid" ]; then say "$name: configuration changed, restarting"; daemon_stop "$name"; fi
  rm -f "$RUN/$name.pid"
  # A clean environment: nothing from the SSH session (secrets included)
  # leaks into the daemon; it reads /run/nixmox/env itself when it needs to.
  # A daemon whose pid cannot be recorded (a full disk) is not started: it
  # could never be stopped or restarted.
  setsid -f env -i PATH="$PATH" HOME="$STATE" LANG=C.UTF-8 LAB="$LAB" \
    /bin/sh -c 'echo $$ >"$0" || exit 1; exec "$@"' "$RUN/$name.pid" "$@" \
    </dev/null >>"$LOGDIR/$name.log" 2>&1 9>&-
  for i in $(seq 1 50); do [ -s "$RUN/$name.pid" ] && break; sleep 0.1; done
  echo "$fp" >"$RUN/$name.fp"
  sleep 0.2
  pid=$(daemon_pid "$name") || { tail -n 20 "$LOGDIR/$name.log" >&2; die "$name exited at start (log: $LOGDIR/$name.log)"; }
  say "$name: started (pid $pid)"
}

# wait_tcp NAME HOST PORT: bounded wait (30 s) until a TCP connect succeeds.
wait_tcp() {
  $DRY && return 0
  local i
  for i in $(seq 1 150); do
    if timeout 1 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null; then return 0; fi
    daemon_pid "$1" >/dev/null || { tail -n 20 "$LOGDIR/$1.log" >&2; die "$1 died (log: $LOGDIR/$1.log)"; }
    sleep 0.2
  done
  die "$1 not listening on $2:$3 after 30 s (log: $LOGDIR/$1.log)"
}

# Daemons of an earlier configuration that this one no longer has.
stop_stale() {
  local f name keep d
  for f in "$RUN"/*.pid; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .pid); keep=false
    for d in "${DAEMONS[@]}"; do [ "$d" = "$name" ] && keep=true; done
    $keep && continue
    if $DRY; then say "would stop $name (not in this configuration)"; else say "$name: stopping (not in this configuration)"; daemon_stop "$name"; fi
  done
}

# The system's version (an application's), or nothing.
version_of() {
  cat "$TOPLEVEL"/sw/share/*/version 2>/dev/null | head -n1
}

# The host's own address on eth0, as its system wants it: a lab fault,
# version "cut-network", drops it after its activation (as a bad network
# configuration would: the host is cut off, SSH included); any other
# system puts it back first, so going back to it heals the host.
ensure_address() {
  case "$(ip -4 -o addr show dev eth0 2>/dev/null)" in *" $IP/"*) return 0 ;; esac
  ip addr add "$IP/${CIDR#*/}" dev eth0
}

# The host's sshd, as its system wants it: a lab fault, version
# "stop-sshd", stops it after its activation (SIGSTOP: it accepts
# connections and never answers, as an sshd a bad configuration broke;
# the sessions it already serves go on); any other system lets it go on
# first, so going back to it heals the host.
ensure_sshd() {
  local pid
  pid=$(cat /run/sshd.pid 2>/dev/null) || return 0
  kill -CONT "$pid" 2>/dev/null || true
}

main() {
  local goal=${1:-}
  case $goal in
    switch | test) ;;
    dry-activate) DRY=true ;;
    boot)
      # No bootloader on a lab host: only record what would boot next.
      mkdir -p "$RUN"
      ln -sfn "$TOPLEVEL" "$STATE/boot-configuration"
      say "boot: recorded $TOPLEVEL as the next boot configuration; nothing (re)started"
      return 0 ;;
    *) echo "usage: switch-to-configuration {switch|test|boot|dry-activate}" >&2; return 1 ;;
  esac
  [ "$(id -u)" = 0 ] || die "must run as root"
  [ -d "$STATE" ] || die "$STATE is missing: is this a lab host?"
  # shellcheck source=/dev/null
  . "$ROLE_SRC/activate.sh"
  if $DRY; then
    say "would point /run/current-system at $TOPLEVEL"
    activate
    stop_stale
    return 0
  fi
  mkdir -p "$RUN" "$LOGDIR"
  chmod 755 "$STATE"
  # One activation at a time per host.
  exec 9>"$RUN/switch.lock"
  flock -w 60 9 || die "another switch-to-configuration holds $RUN/switch.lock"
  ln -sfn "$TOPLEVEL" /run/.current-system.new
  mv -T /run/.current-system.new /run/current-system
  [ "$(version_of)" = cut-network ] || ensure_address
  ensure_sshd
  activate
  stop_stale
  if [ "$(version_of)" = cut-network ]; then
    say "fault: dropping this host's address (cut-network)"
    ip -4 addr flush dev eth0
  fi
  if [ "$(version_of)" = stop-sshd ] && [ -s /run/sshd.pid ]; then
    say "fault: stopping this host's sshd (stop-sshd)"
    kill -STOP "$(cat /run/sshd.pid)"
  fi
  [ "$goal" = switch ] && ln -sfn "$TOPLEVEL" "$STATE/boot-configuration"
  say "$goal: done ($TOPLEVEL)"
}
