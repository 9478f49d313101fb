# Generates the lab's toplevels from the manifest, with plain builtins only.
#
# Result: { <service> = { config.system.build.toplevel = <derivation>; }; }
# for every enabled service. A toplevel holds
#   bin/switch-to-configuration   the generated header + runtime/lib.sh
#   etc/<daemon>/...              that host's config, baked from the manifest
# It is a pure function of the manifest and the runtime files it references,
# so an unchanged host keeps a byte-identical store path.
{ manifest, runtime, evalWork ? 0 }:
let
  inherit (builtins) attrNames concatMap concatStringsSep filter map toJSON;
  m = import ./model.nix { inherit manifest; };
  render = import ./render.nix { inherit m; };

  # Only the files a role runs are referenced, so editing the app server does
  # not change the dns host's toplevel.
  src = name: path: builtins.path { inherit path; name = "nixmox-lab-${name}"; };
  lib = src "lib.sh" (runtime + "/lib.sh");

  shellQuote = s: "'" + builtins.replaceStrings [ "'" ] [ "'\\''" ] s + "'";

  # What each role puts under etc/: { <relative path> = <text>; }.
  filesFor = s:
    if s.role == "dns" then { "unbound/unbound.conf" = render.unbound s; }
    else if s.role == "postgresql" then {
      "postgresql/databases" = render.databases;
      "postgresql/settings" = render.pgSettings s;
    } // appFiles s

    else if s.role == "caddy" then {
      "caddy/Caddyfile" = render.caddyfile s;
      "caddy/domains" = concatStringsSep "\n" m.domains + "\n";
    }
    else if s.role == "authentik" then { "authentik/config.json" = toJSON (render.authentikConfig s); }
    else appFiles s;

  # The application server's files: every application's, and the database
  # host's when it has routes (its admin UI).
  appFiles = s: if s.role != "app" && s.routes == [ ] then { } else {
    "app/config.json" = toJSON (render.appConfig s);
    "app/listen" = concatStringsSep "\n" (map (l: "${l.host} ${toString l.port}") (render.appListen s)) + "\n";
  };

  # An application host's package, named the way nixpkgs names packages
  # (`<name>-<version>`), so a new version shows in a closure diff as one
  # package changing, as it would on a real NixOS host.
  appPackage = s: derivation {
    name = if s ? version then "${s.name}-${s.version}" else s.name;
    system = "x86_64-linux";
    builder = "/bin/sh";
    args = [ "-c" ''
      /bin/mkdir -p "$out/share/${s.name}"
      echo ${shellQuote (s.version or "")} > "$out/share/${s.name}/version"
    '' ];
  };

  toplevel = s:
    let
      files = filesFor s;
      # The application's package: referenced from the system, so it is in its closure.
      linkPackage = if s.role == "app" then ''
        /bin/ln -s ${appPackage s} "$out/sw"
      '' else "";
      roleSrc = src s.role (runtime + "/${s.role}");
      header = builtins.toFile "switch-header-${s.name}" ''
        HOST=${shellQuote s.name}
        ROLE=${shellQuote s.role}
        IP=${shellQuote s.ip}
        CIDR=${shellQuote m.cidr}
        ROLE_SRC=${roleSrc}
        ${if s.role == "postgresql" && s.routes != [ ] then "APP_SRC=${src "app" (runtime + "/app")}" else ""}
      '';
      copyFiles = concatStringsSep "\n" (map (rel: ''
        /bin/mkdir -p "$(/usr/bin/dirname "$out/etc/${rel}")"
        /bin/cp ${builtins.toFile (baseNameOf rel) files.${rel}} "$out/etc/${rel}"
      '') (attrNames files));
    in
    derivation ({
      name = "nixos-system-${s.name}-lab";
      system = "x86_64-linux";
      # Builds run unsandboxed on the lab machine (DESIGN.md §6), so host
      # tools are used by absolute path instead of a stdenv.
      builder = "/bin/sh";
      args = [ "-c" ''
        set -e
        /bin/mkdir -p "$out/bin" "$out/etc"
        ${copyFiles}
        ${linkPackage}
        { echo '#!/bin/bash'
          echo '# switch-to-configuration for lab host ${s.name} (generated; see lab/lib.sh)'
          echo "TOPLEVEL=$out"
          /bin/cat ${header} ${lib}
          echo 'main "$@"'
        } > "$out/bin/switch-to-configuration"
        /bin/chmod 555 "$out/bin/switch-to-configuration"
        echo ${shellQuote s.name} > "$out/nixmox-host"
        # Where this system was built: the addresses of the network
        # namespace the build ran in (tests/fleet_lab.rs reads it to prove
        # a build ran on a lab host, not on the machine nixmox runs on).
        /usr/bin/ip -4 -o addr show > "$out/built-on" 2>/dev/null || /sbin/ip -4 -o addr show > "$out/built-on" 2>/dev/null || :
      '' ];
    } // workOf s);

  # The stand-in for nixpkgs (see ../scale.nix): `evalWork` thousand
  # additions while the system is evaluated, folded into an attribute of
  # its derivation so that evaluating it cannot skip them. 0: no attribute,
  # and the systems are byte-identical to a lab without the knob.
  workOf = s: if evalWork <= 0 then { } else {
    evalWork = toString (builtins.foldl'
      (a: i: a + builtins.foldl' builtins.add i (builtins.genList (x: x) 1000))
      (builtins.stringLength s.name)
      (builtins.genList (x: x) evalWork));
  };
in
builtins.listToAttrs (map (s: {
  name = s.name;
  value.config.system.build.toplevel = toplevel s;
}) m.enabled)
