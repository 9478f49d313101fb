# authentik: the OIDC stand-in (server.mjs). The clients file that
# tf:auth-core writes is watched by the server itself, so a new client needs
# no restart; a changed config or server source does restart it. Beside it,
# the LDAP outpost stand-in (outpost.mjs), which needs tf:auth-core's token.
activate() {
  local conf=$TOPLEVEL/etc/authentik/config.json
  $DRY || install -d -m 0700 "$STATE/authentik"
  daemon_ensure authentik "$(hash_of "$conf")$(env_hash AUTHENTIK_)" "${NIXMOX_NODE_PREFIX:-/opt/nixmox}/bin/node" "$ROLE_SRC/server.mjs" "$conf"
  wait_tcp authentik "$IP" "$(sed -n 's/.*"listen":{[^}]*"port":\([0-9]*\).*/\1/p' "$conf")"
  # The LDAP outpost, when there is one: it reads its token from the env
  # file at start, so a new env file restarts it.
  if grep -q '"outpost":{' "$conf"; then
    daemon_ensure outpost "$(hash_of "$conf" "$ENV_FILE")" "${NIXMOX_NODE_PREFIX:-/opt/nixmox}/bin/node" "$ROLE_SRC/outpost.mjs" "$conf"
    wait_tcp outpost "$IP" 9300
  fi
}
