# The manifest, normalised the way the Rust parser reads it
# (src/manifest/parse/interface.rs): defaults, both proxy forms, db aliases.
{ manifest }:
let
  inherit (builtins) any attrNames attrValues concatMap elem filter hasAttr head
    isAttrs length map mapAttrs sort;

  net = manifest.network;
  tag = core: mapAttrs (name: s: s // { inherit name core; });
  all = attrValues (tag true (manifest.core_services or { }))
    ++ attrValues (tag false (manifest.services or { }));
  enabledRaw = filter (s: s.enable or true) all;

  byName = name: head (filter (s: s.name == name) enabledRaw ++ [ null ]);
  coreRoles = [ "dns" "postgresql" "caddy" "authentik" ];
  roleOf = s: if s.core && elem s.name coreRoles then s.name else "app";
  iface = s: s.interface or { };

  # Proxy: the single form has domain/upstream/path (or a plain value under a
  # route field); otherwise every attribute is a named sub-proxy.
  proxyKeys = [ "domain" "path" "upstream" "headers" "tls" "authz" "extra_config" "auth" ];
  isSingle = p: any (k: hasAttr k p) [ "domain" "upstream" "path" ]
    || any (k: elem k proxyKeys && !isAttrs p.${k}) (attrNames p);
  routesOf = s:
    let p = (iface s).proxy or null;
        mk = sub: r: {
          service = s.name;
          name = sub;
          inherit (r) domain upstream;
          path = r.path or "/";
          headers = r.headers or { };
          extra_config = r.extra_config or null;
          # A route's auth: its own block, "inherit" (the service's), "none"
          # (open), or, unsaid, the service's (as nixmox reads the manifest).
          auth = if !(r ? auth) || r.auth == "inherit" then (iface s).auth or null
                 else if r.auth == "none" then null
                 else r.auth;
          ownAuth = if r ? auth && isAttrs r.auth then r.auth else null;
        };
    in if p == null then [ ]
       else if isSingle p then [ (mk null p) ]
       else map (sub: mk sub p.${sub}) (attrNames p);

  # Databases: `db` and every `dbs.<key>`; name/database and owner/role aliases.
  dbsOf = s:
    let i = iface s;
        mk = d: let name = d.name or d.database; in {
          inherit name;
          owner = d.owner or d.role or name;
          host = d.host or pgHost.ip;
          port = d.port or 5432;
          additional = d.additionaldbs or [ ];
        };
    in (if i ? db then [ (mk i.db) ] else [ ])
       ++ map (k: mk i.dbs.${k}) (attrNames (i.dbs or { }));

  # OIDC clients: the service's own auth, plus routes with their own oidc auth.
  clientOf = s: default: a:
    if a == null || (a.type or "") != "oidc" then [ ] else [{
      slug = s.name;
      client_id = a.oidc.client_id or default;
      client_type = a.oidc.client_type or "confidential";
      redirect_uris = a.oidc.redirect_uris or [ ];
      scopes = a.oidc.scopes or [ "openid" "email" "profile" ];
    }];
  clientsOf = s:
    clientOf s "${s.name}-oidc" ((iface s).auth or null)
    ++ concatMap (r: if r.name == null then [ ] else clientOf s "${s.name}-${r.name}-oidc" r.ownAuth) (routesOf s);

  enabled = map (s: s // {
    role = roleOf s;
    routes = routesOf s;
    dbs = dbsOf s;
    clients = clientsOf s;
  }) enabledRaw;

  pgHost = byName "postgresql";
  unique = l: builtins.foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ] l;
in
rec {
  inherit enabled;
  # Enabled services by name, with their normalised routes, dbs and clients.
  byName = name: head (filter (s: s.name == name) enabled ++ [ null ]);
  domain = net.domain;
  ldapOutpost = (net.outposts or { }) ? ldap;
  cidr = net.network_cidr;
  caddy = byName "caddy";
  authentik = byName "authentik";
  routes = concatMap (s: s.routes) enabled;
  domains = unique (map (r: r.domain) routes);
  # Every database (including additionaldbs) with its owner, for the postgresql host.
  databases = concatMap (s: concatMap (d:
    map (name: { inherit name; inherit (d) owner; }) ([ d.name ] ++ d.additional)) s.dbs) enabled;
  clients = concatMap (s: s.clients) enabled;
  # Applications that own an OIDC client get an issuer at /application/o/<slug>/.
  slugs = unique (map (c: c.slug) clients);
  # The public name of the identity provider: the authentik host's proxy domain.
  authDomain = ((byName "authentik").interface or { }).proxy.domain or "auth.${domain}";
  issuer = slug: "https://${authDomain}/application/o/${slug}/";
  sortByPathLength = sort (a: b: builtins.stringLength a.path > builtins.stringLength b.path);
}
