# A small stack: the four core services and three applications, one of which
# depends on another. The same stack is written in manifest.json, manifest.toml
# and manifest.yaml; all four give the identical plan. Fictional addresses:
# validate, plan and graph only.
{
  network = {
    domain = "stack.example";
    dns_server = "10.77.0.2";
    gateway = "10.77.0.1";
    network_cidr = "10.77.0.0/24";
    ssh_keys.root = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyExampleKeyExampleKey0000000 ops@example" ];
  };
  core_services = {
    dns = { ip = "10.77.0.2"; hostname = "dns.stack.example"; vmid = 200; };
    postgresql = { ip = "10.77.0.3"; hostname = "postgresql.stack.example"; vmid = 201; };
    caddy = { ip = "10.77.0.4"; hostname = "caddy.stack.example"; vmid = 202; };
    authentik = {
      ip = "10.77.0.5";
      hostname = "authentik.stack.example";
      vmid = 203;
      depends_on = [ "postgresql" ];
      ports = [ 9000 ];
      interface = {
        db = { name = "authentik"; owner = "authentik"; };
        proxy = { domain = "auth.stack.example"; upstream = "10.77.0.5:9000"; };
      };
    };
  };
  services = {
    wiki = {
      ip = "10.77.0.10";
      hostname = "wiki.stack.example";
      vmid = 210;
      depends_on = [ "postgresql" "authentik" ];
      ports = [ 3000 ];
      interface = {
        db = { name = "wiki"; owner = "wiki"; };
        auth = {
          type = "oidc";
          provider = "authentik";
          oidc.redirect_uris = [ "https://docs.stack.example/login/callback" ];
        };
        proxy = { domain = "docs.stack.example"; upstream = "10.77.0.10:3000"; };
        health.readiness = "http://10.77.0.10:3000/healthz";
      };
    };
    search = {
      ip = "10.77.0.11";
      hostname = "search.stack.example";
      vmid = 211;
      depends_on = [ "wiki" ];
      ports = [ 7700 ];
      interface.proxy = {
        domain = "find.stack.example";
        upstream = "10.77.0.11:7700";
        auth = { type = "forward_auth"; provider = "authentik"; };
      };
    };
    status = {
      ip = "10.77.0.12";
      hostname = "status.stack.example";
      vmid = 212;
      ports = [ 3001 ];
      interface.proxy = { domain = "uptime.stack.example"; upstream = "10.77.0.12:3001"; };
    };
  };
  retry_attempts = 4;
}
