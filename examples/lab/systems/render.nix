# Config files of the lab daemons, rendered from the normalised manifest.
{ m }:
let
  inherit (builtins) concatMap concatStringsSep elem filter genList head length
    map match toJSON toString;

  lines = l: concatStringsSep "\n" l + "\n";
  unique = l: builtins.foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ] l;
  hostPort = u: let p = match "(.*):([0-9]+)" u; in { host = head p; port = builtins.fromJSON (builtins.elemAt p 1); };
  isIp = s: match "[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+" s != null;
  hostnameOf = s: s.hostname or "${s.name}.${m.domain}";

  authentikIp = m.authentik.ip;
  authentikPort =
    let r = m.authentik.routes; in if r == [ ] then 9000 else (hostPort (head r).upstream).port;
  tlsDir = "/var/lib/lab/tls";
in
rec {
  # Unbound: the lab zone only. "." is refused rather than recursed, so a
  # lab resolver never sends a query off the machine.
  unbound = s:
    let
      hostnames = map hostnameOf m.enabled;
      hostRecords = map (h: "  local-data: \"${hostnameOf h}. IN A ${h.ip}\"") m.enabled;
      proxyRecords = map (d: "  local-data: \"${d}. IN A ${m.caddy.ip}\"")
        (filter (d: !elem d hostnames) m.domains);
    in lines ([
      "server:"
      "  interface: ${s.ip}"
      "  interface: 127.0.0.1"
      "  port: 53"
      "  do-ip6: no"
      "  do-daemonize: no"
      # No privilege drop, no chroot: the lab host is a namespace, not a machine.
      "  username: \"\""
      "  chroot: \"\""
      "  directory: \"/var/lib/lab/unbound\""
      "  pidfile: \"\""
      "  use-syslog: no"
      "  logfile: \"\""
      "  verbosity: 1"
      "  module-config: \"iterator\""
      "  access-control: 0.0.0.0/0 refuse"
      "  access-control: ${m.cidr} allow"
      "  access-control: 127.0.0.0/8 allow"
      "  local-zone: \".\" refuse"
      "  local-zone: \"${m.domain}.\" static"
    ] ++ hostRecords ++ proxyRecords ++ [
      "remote-control:"
      "  control-enable: no"
    ]);

  # PostgreSQL: "<database> <owner>" per line (additionaldbs included), and
  # the server settings passed as -c options.
  databases = lines (map (d: "${d.name} ${d.owner}") m.databases);
  pgSettings = s: lines [ "listen_addresses=${s.ip}" "port=5432" ];

  # Caddy: one site per proxy domain; routes on a domain become `handle`
  # blocks, longest path first, "/" last.
  caddyfile = s:
    let
      routeBlock = i: r:
        let
          p = let t = match "(.*[^/])/*" r.path; in if t == null then "" else head t;
          fa = r.auth != null && (r.auth.type or "") == "forward_auth";
          faUpstream = r.auth.forward_auth_upstream or "${authentikIp}:${toString authentikPort}";
          label = if r.name == null then r.service else "${r.service}.${r.name}";
        in concatStringsSep "\n" ([ "\t# route ${label}, path ${r.path}" ]
          ++ (if p == "" then [ "\thandle {" ] else [ "\t@route${toString i} path ${p} ${p}/*" "\thandle @route${toString i} {" ])
          ++ map (h: "\t\theader ${h} ${toJSON r.headers.${h}}") (builtins.attrNames r.headers)
          ++ (if fa then [
            # Authentik's proxy outpost protocol: 2xx lets the request through
            # with the user headers, anything else (a 302 to the login) is returned.
            "\t\tforward_auth ${faUpstream} {"
            "\t\t\turi /outpost.goauthentik.io/auth/caddy"
            "\t\t\tcopy_headers X-Authentik-Username X-Authentik-Groups X-Authentik-Email X-Authentik-Name X-Authentik-Uid"
            "\t\t}"
          ] else [ ])
          ++ (if r.extra_config == null then [ ] else [ "\t\t${r.extra_config}" ])
          ++ [ "\t\treverse_proxy ${r.upstream}" "\t}" ]);
      site = d:
        let rs = m.sortByPathLength (filter (r: r.domain == d) m.routes);
        in concatStringsSep "\n" ([
          "https://${d} {"
          "\tbind ${s.ip}"
          "\ttls ${tlsDir}/${d}.crt ${tlsDir}/${d}.key"
        ] ++ genList (i: routeBlock i (builtins.elemAt rs i)) (length rs) ++ [ "}" ]);
    in lines ([
      "# Generated from the lab manifest. Certificates come from the lab CA"
      "# (issued by switch-to-configuration), so no ACME is ever attempted."
      "{"
      # The admin API only on the host's own loopback; autosave goes to XDG_CONFIG_HOME.
      "\tadmin 127.0.0.1:2019"
      "\tauto_https off"
      "\tstorage file_system /var/lib/lab/caddy"
      "}"
      ""
      "${concatStringsSep ", " (map (d: "http://${d}") m.domains)} {"
      "\tbind ${s.ip}"
      "\tredir https://{host}{uri} 308"
      "}"
      ""
    ] ++ map site m.domains);

  # The authentik stand-in (runtime/authentik/server.mjs).
  authentikConfig = s: {
    listen = { host = s.ip; port = authentikPort; };
    public_host = m.authDomain;
    cookie_domain = m.domain;
    slugs = m.slugs;
    state_dir = "/var/lib/lab/authentik";
    # The manifest's clients, without secrets: only for the log and /-/clients.
    manifest_clients = map (c: { inherit (c) slug client_id client_type; }) m.clients;
    # The LDAP outpost (runtime/authentik/outpost.mjs) when the manifest asks for one.
    outpost = if m.ldapOutpost then { name = "ldap"; port = 9300; } else null;
  };

  # An application (runtime/app/server.mjs).
  appListen = s:
    let ups = unique (map (r: r.upstream) s.routes);
        at = u: let hp = hostPort u; in { host = if isIp hp.host then hp.host else s.ip; inherit (hp) port; };
    in if ups != [ ] then map at ups else map (port: { host = s.ip; inherit port; }) (s.ports or [ ]);
  appConfig = s:
    let c = if s.clients == [ ] then null else head s.clients; in {
      service = s.name;
      # The application's version: a new one is a new system for its host only.
      version = s.version or null;
      listen = appListen s;
      prefixes = filter (p: p != "/" && p != "") (map (r: r.path) s.routes);
      databases = concatMap (d: map (name: { inherit name; inherit (d) owner host port; })
        ([ d.name ] ++ d.additional)) s.dbs;
      oidc = if c == null then null else {
        inherit (c) client_id client_type slug;
        issuer = m.issuer c.slug;
        # Fetched directly from the authentik host, not through Caddy.
        discovery_url = "http://${authentikIp}:${toString authentikPort}/application/o/${c.slug}/.well-known/openid-configuration";
      };
    };
}
