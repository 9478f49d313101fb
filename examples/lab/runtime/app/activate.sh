# An application: server.mjs on each upstream port of the service. It reads
# its secrets from /run/nixmox/env at start, so a changed env file restarts it.
activate() {
  local conf=$TOPLEVEL/etc/app/config.json host port
  daemon_ensure app "$(hash_of "$conf" "$ENV_FILE")" "${NIXMOX_NODE_PREFIX:-/opt/nixmox}/bin/node" "$ROLE_SRC/server.mjs" "$conf"
  while read -r host port; do
    [ -n "$host" ] && wait_tcp app "$host" "$port"
  done <"$TOPLEVEL/etc/app/listen"
}
