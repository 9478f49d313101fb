# authentik: the OIDC stand-in (server.mjs). The clients file that
# tf:auth-core writes is watched by the server itself, so a new client needs
# no restart; a changed config or server source does restart it.
activate() {
  local conf=$TOPLEVEL/etc/authentik/config.json
  $DRY || install -d -m 0700 "$STATE/authentik"
  daemon_ensure authentik "$(hash_of "$conf")" "${NIXMOX_NODE_PREFIX:-/opt/nixmox}/bin/node" "$ROLE_SRC/server.mjs" "$conf"
  wait_tcp authentik "$IP" "$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' "$conf")"
}
