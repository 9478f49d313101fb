# dns: Unbound serving the lab zone (config: etc/unbound/unbound.conf).
activate() {
  local conf=$TOPLEVEL/etc/unbound/unbound.conf
  if ! $DRY; then
    mkdir -p "$STATE/unbound"
    unbound-checkconf "$conf" >/dev/null || die "unbound-checkconf rejected $conf"
  fi
  daemon_ensure unbound "$(hash_of "$conf")" /usr/sbin/unbound -d -p -c "$conf"
  wait_tcp unbound "$IP" 53
}
