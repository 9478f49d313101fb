# Generates the lab's extra application hosts from ./scale.nix: app01 …
# appNN at 10.213.0.101 …, each depending on the core like wiki. Plain
# builtins only, so both the manifest and the flake's systems read it.
{ apps ? 0, db ? true, proxy ? true, oidc ? true, versions ? { }, ... }:
let
  inherit (builtins) genList listToAttrs substring toString;
  pad = n: let s = toString n; in if n < 10 then "0${s}" else s;
  app = k:
    let
      name = "app${pad k}";
      ip = "10.213.0.${toString (100 + k)}";
    in {
      inherit name;
      value = {
        version = versions.${name} or "1.0";
        inherit ip;
        hostname = "${name}.nixmox.test";
        vmid = 9100 + k;
        depends_on = [ "postgresql" "caddy" "authentik" ];
        tags = [ "generated" ];
        ports = [ 8080 ];
        interface = {
          health = {
            readiness = "http://${ip}:8080/healthz";
            interval = 1;
            timeout = 60;
          };
        } // (if db then {
          db = { host = "10.213.0.3"; name = name; owner = name; };
        } else { }) // (if oidc then {
          auth = {
            type = "oidc";
            provider = "authentik";
            oidc.redirect_uris = [ "https://${name}-web.nixmox.test/oauth/callback" ];
          };
        } else { }) // (if proxy then {
          proxy = { domain = "${name}-web.nixmox.test"; upstream = "${ip}:8080"; };
        } else { });
      };
    };
in
if apps < 0 || apps > 32 then throw "scale.nix: apps must be from 0 to 32 (the lab's 10.213.0.101-132), not ${toString apps}"
else listToAttrs (genList (i: app (i + 1)) apps)
