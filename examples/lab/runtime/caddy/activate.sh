# caddy: HTTPS for every proxy domain with certificates from the lab CA
# ($LAB/ca), issued here with openssl and reused while still valid.
TLS=$STATE/tls

# cert_ok DOMAIN: the certificate exists, is signed by the current lab CA,
# matches its key and stays valid for at least another day.
cert_ok() {
  local crt=$TLS/$1.crt key=$TLS/$1.key
  [ -s "$crt" ] && [ -s "$key" ] || return 1
  openssl x509 -checkend 86400 -noout -in "$crt" >/dev/null 2>&1 || return 1
  openssl verify -CAfile "$LAB/ca/ca.crt" "$crt" >/dev/null 2>&1 || return 1
  [ "$(openssl x509 -noout -pubkey -in "$crt" | sha256sum)" = "$(openssl pkey -pubout -in "$key" 2>/dev/null | sha256sum)" ]
}

issue_cert() {
  local d=$1 tmp
  tmp=$(mktemp -d "$TLS/.issue.XXXXXX")
  (umask 077; openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/key" 2>/dev/null)
  openssl req -new -key "$tmp/key" -subj "/CN=$d" -out "$tmp/csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n' "$d" >"$tmp/ext"
  openssl x509 -req -in "$tmp/csr" -CA "$LAB/ca/ca.crt" -CAkey "$LAB/ca/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 90 -extfile "$tmp/ext" -out "$tmp/crt" 2>/dev/null ||
    { rm -rf "$tmp"; die "could not issue a certificate for $d from $LAB/ca"; }
  chmod 0600 "$tmp/key"; chmod 0644 "$tmp/crt"
  mv "$tmp/key" "$TLS/$d.key"; mv "$tmp/crt" "$TLS/$d.crt"
  rm -rf "$tmp"
  say "caddy: issued a certificate for $d"
}

activate() {
  local conf=$TOPLEVEL/etc/caddy/Caddyfile d certs=()
  [ -r "$LAB/ca/ca.crt" ] && [ -r "$LAB/ca/ca.key" ] || die "no lab CA in $LAB/ca (ca.crt, ca.key)"
  $DRY || { mkdir -p "$STATE/caddy"; install -d -m 0700 "$TLS"; }
  for d in $(cat "$TOPLEVEL/etc/caddy/domains"); do
    if ! cert_ok "$d"; then
      if $DRY; then say "would issue a certificate for $d"; else issue_cert "$d"; fi
    fi
    certs+=("$TLS/$d.crt" "$TLS/$d.key")
  done
  # New certificates change the fingerprint, so Caddy restarts to load them.
  daemon_ensure caddy "$(hash_of "$conf" "${certs[@]}")" \
    env XDG_DATA_HOME="$STATE/caddy/data" XDG_CONFIG_HOME="$STATE/caddy/config" \
    /usr/bin/caddy run --config "$conf" --adapter caddyfile
  wait_tcp caddy "$IP" 443
}
