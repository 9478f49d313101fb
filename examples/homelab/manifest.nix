# A realistic homelab stack, for `nixmox validate`, `plan --offline` and `graph`.
#
# The addresses are fictional: this manifest is never applied or verified.
# (The lab stack that really deploys on one machine is examples/lab/.)
{
  network = {
    domain = "home.arpa";
    dns_server = "192.168.50.2";
    gateway = "192.168.50.1";
    network_cidr = "192.168.50.0/24";
    vlan_tag = 50;
    ssh_keys = {
      admin = [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheHomelabExampleOnly0000000 admin@laptop"
      ];
      root = [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheHomelabExampleOnly0000000 admin@laptop"
      ];
    };
    outposts = {
      ldap.base_dn = "dc=home,dc=arpa";
      radius = {
        shared_secret = "example-radius-secret-not-real";
        client_networks = [ "192.168.50.0/24" ];
      };
    };
  };

  core_services = {
    dns = {
      enable = true;
      ip = "192.168.50.2";
      hostname = "dns.home.arpa";
      vmid = 902;
      resources = { cores = 1; memory = 512; disk_gb = 8; };
      onboot = true;
      start = true;
      interface.health = {
        startup = "systemctl is-active --quiet unbound";
        liveness = "systemctl is-active --quiet unbound";
        interval = 5;
        timeout = 60;
        retries = 3;
      };
    };

    postgresql = {
      enable = true;
      ip = "192.168.50.3";
      hostname = "postgresql.home.arpa";
      vmid = 903;
      version = "15";
      resources = { cores = 4; memory = 4096; disk_gb = 64; };
      onboot = true;
      start = true;
      ports = [ 5432 5050 ];
      interface = {
        auth = {
          type = "oidc";
          provider = "authentik";
          oidc = {
            client_id = "pgadmin-oidc";
            client_type = "confidential";
            redirect_uris = [ "https://pgadmin.home.arpa/oauth2/authorize" ];
            scopes = [ "openid" "email" "profile" ];
            username_claim = "preferred_username";
            groups_claim = "groups";
          };
        };
        proxy = {
          domain = "pgadmin.home.arpa";
          path = "/";
          upstream = "192.168.50.3:5050";
        };
        health = {
          startup = "systemctl is-active --quiet postgresql";
          readiness = "tcp://192.168.50.3:5432";
          liveness = "systemctl is-active --quiet postgresql";
        };
      };
    };

    caddy = {
      enable = true;
      ip = "192.168.50.4";
      hostname = "caddy.home.arpa";
      vmid = 904;
      resources = { cores = 2; memory = 1024; disk_gb = 8; };
      ports = [ 80 443 2019 ];
      interface.health = {
        startup = "systemctl is-active --quiet caddy";
        readiness = "http://192.168.50.4:2019/config/";
      };
    };

    authentik = {
      enable = true;
      ip = "192.168.50.5";
      hostname = "authentik.home.arpa";
      vmid = 905;
      version = "2024.8";
      resources = { cores = 2; memory = 2048; disk_gb = 16; };
      depends_on = [ "postgresql" ];
      ports = [ 9000 9443 ];
      interface = {
        db = {
          host = "192.168.50.3";
          name = "authentik";
          owner = "authentik";
          port = 5432;
        };
        proxy = {
          domain = "auth.home.arpa";
          path = "/";
          upstream = "192.168.50.5:9000";
        };
        health = {
          startup = "systemctl is-active --quiet authentik";
          readiness = "https://auth.home.arpa/-/health/ready/";
          liveness = "https://auth.home.arpa/-/health/live/";
          interval = 10;
          timeout = 300;
          retries = 10;
        };
      };
    };
  };

  services = {
    # Single proxy, db, confidential OIDC client with the default client id (vaultwarden-oidc).
    vaultwarden = {
      enable = true;
      ip = "192.168.50.10";
      hostname = "vaultwarden.home.arpa";
      vmid = 910;
      version = "1.32";
      resources = { cores = 2; memory = 1024; disk_gb = 16; };
      depends_on = [ "postgresql" "caddy" "authentik" ];
      tags = [ "admin" ];
      ports = [ 8080 ];
      interface = {
        db = { host = "192.168.50.3"; name = "vaultwarden"; owner = "vaultwarden"; port = 5432; };
        auth = {
          type = "oidc";
          provider = "authentik";
          oidc = {
            client_type = "confidential";
            redirect_uris = [ "https://vault.home.arpa/identity/connect/oidc-signin" ];
            scopes = [ "openid" "email" "profile" "offline_access" ];
            username_claim = "preferred_username";
            groups_claim = "groups";
          };
        };
        proxy = {
          domain = "vault.home.arpa";
          path = "/";
          upstream = "192.168.50.10:8080";
          headers = { "X-Real-IP" = "{remote_host}"; };
        };
        health = {
          startup = "systemctl is-active --quiet vaultwarden";
          readiness = "http://192.168.50.10:8080/alive";
          liveness = "curl -fsS http://localhost:8080/alive";
          interval = 10;
          timeout = 120;
          retries = 5;
        };
      };
    };

    # Public OIDC client, a proxy under a path, and the spec's database spellings
    # (database/role, native migrations applied by nixmox).
    guacamole = {
      enable = true;
      ip = "192.168.50.11";
      hostname = "guacamole.home.arpa";
      vmid = 911;
      resources = { cores = 2; memory = 2048; disk_gb = 16; };
      depends_on = [ "postgresql" "caddy" "authentik" ];
      tags = [ "admin" ];
      ports = [ 8280 4822 ];
      interface = {
        db = {
          host = "postgresql.home.arpa";
          database = "guacamole";
          role = "guacamole";
          mode = "native-migration";
          migrations = [ "./migrations/guacamole/001-schema.sql" "./migrations/guacamole/002-admin.sql" ];
        };
        auth = {
          type = "oidc";
          provider = "authentik";
          oidc = {
            client_id = "guacamole-oidc";
            client_type = "public";
            redirect_uris = [ "https://guac.home.arpa/guacamole/" ];
            scopes = [ "openid" "email" "profile" ];
          };
        };
        proxy = {
          domain = "guac.home.arpa";
          path = "/guacamole";
          upstream = "192.168.50.11:8280";
          tls = true;
          authz = true;
        };
        health.startup = "systemctl is-active --quiet tomcat";
      };
    };

    # Several named sub-proxies: one behind forward auth, one with its own headers and Caddy snippet.
    monitoring = {
      enable = true;
      ip = "192.168.50.12";
      hostname = "monitoring.home.arpa";
      vmid = 912;
      resources = { cores = 2; memory = 2048; disk_gb = 32; };
      depends_on = [ "postgresql" "caddy" "authentik" ];
      tags = [ "ops" ];
      ports = [ 9090 3000 9093 3100 ];
      interface = {
        db = { host = "192.168.50.3"; name = "grafana"; owner = "grafana"; };
        auth = {
          type = "oidc";
          provider = "authentik";
          oidc = {
            client_id = "monitoring-oidc";
            redirect_uris = [ "https://grafana.home.arpa/login/generic_oauth" ];
            scopes = [ "openid" "email" "profile" ];
          };
        };
        proxy = {
          grafana = {
            domain = "grafana.home.arpa";
            path = "/";
            upstream = "192.168.50.12:3000";
            auth = "inherit";          # the service's OIDC client, said out loud
          };
          loki = {                     # Alloy pushes here: never behind a login
            domain = "loki.home.arpa";
            path = "/loki/api/v1/push";
            upstream = "192.168.50.12:3100";
            auth = "none";
          };
          prometheus = {
            domain = "prometheus.home.arpa";
            path = "/";
            upstream = "192.168.50.12:9090";
            auth = {
              type = "forward_auth";
              provider = "authentik";
              forward_auth_upstream = "192.168.50.5:9000";
            };
          };
          alertmanager = {
            domain = "alertmanager.home.arpa";
            path = "/";
            upstream = "192.168.50.12:9093";
            headers = { "X-Frame-Options" = "DENY"; };
            extra_config = ''
              encode gzip
              header -Server
            '';
            auth = { type = "forward_auth"; provider = "authentik"; };
          };
        };
        health = {
          startup = "systemctl is-active --quiet prometheus && systemctl is-active --quiet grafana";
          readiness = "http://192.168.50.12:3000/api/health";
        };
      };
    };

    # Several databases (one with additional databases) and per-route OIDC clients.
    media = {
      enable = true;
      ip = "192.168.50.13";
      hostname = "media.home.arpa";
      vmid = 913;
      resources = { cores = 4; memory = 4096; disk_gb = 256; };
      depends_on = [ "postgresql" "caddy" "authentik" ];
      tags = [ "family" ];
      ports = [ 8096 8989 7878 ];
      interface = {
        dbs = {
          sonarr = { host = "192.168.50.3"; name = "sonarr"; owner = "sonarr"; port = 5432; additionaldbs = [ "sonarr-log" ]; };
          radarr = { host = "192.168.50.3"; name = "radarr"; owner = "radarr"; port = 5432; additionaldbs = [ "radarr-log" ]; };
        };
        proxy = {
          jellyfin = {
            domain = "jellyfin.home.arpa";
            path = "/";
            upstream = "192.168.50.13:8096";
            auth = {
              type = "oidc";
              provider = "authentik";
              oidc = {
                client_id = "jellyfin-oidc";
                redirect_uris = [ "https://jellyfin.home.arpa/sso/OID/redirect/authentik" ];
              };
            };
            extra_config = ''
              request_body {
                max_size 10GB
              }
            '';
          };
          sonarr = {
            domain = "sonarr.home.arpa";
            path = "/";
            upstream = "192.168.50.13:8989";
            auth = { type = "forward_auth"; provider = "authentik"; };
          };
          radarr = {
            domain = "radarr.home.arpa";
            path = "/";
            upstream = "192.168.50.13:7878";
            auth = { type = "forward_auth"; provider = "authentik"; };
          };
        };
        health = {
          startup = "systemctl is-active --quiet jellyfin";
          readiness = "http://192.168.50.13:8096/health";
        };
      };
    };

    # Terraform-managed database plus Terraform for both per-service phases.
    nextcloud = {
      enable = true;
      ip = "192.168.50.14";
      hostname = "nextcloud.home.arpa";
      vmid = 914;
      resources = { cores = 4; memory = 4096; disk_gb = 128; };
      depends_on = [ "postgresql" "caddy" "authentik" ];
      tags = [ "family" ];
      ports = [ 80 ];
      interface = {
        db = { host = "192.168.50.3"; database = "nextcloud"; role = "nextcloud"; mode = "terraform"; };
        auth = {
          type = "oidc";
          provider = "authentik";
          oidc = {
            redirect_uris = [ "https://cloud.home.arpa/apps/user_oidc/code" ];
            scopes = [ "openid" "email" "profile" "nextcloud" ];
          };
        };
        proxy = { domain = "cloud.home.arpa"; path = "/"; upstream = "192.168.50.14:80"; };
        terraform = {
          modules = [ "./terraform/nextcloud/infra" ];
          variables = { bucket_name = "nextcloud-data"; quota_gb = 500; };
          targets = [ "minio_bucket.data" "postgresql_database.nextcloud" ];
          apply_order = [ "postgresql_database.nextcloud" ];
          config = {
            modules = [ "./terraform/nextcloud/config" ];
            variables = { admin_group = "nextcloud-admins"; };
          };
        };
        health = {
          startup = "systemctl is-active --quiet phpfpm-nextcloud";
          readiness = "http://192.168.50.14/status.php";
          liveness = "curl -fsS http://localhost/status.php";
        };
      };
    };

    forgejo = {
      enable = true;
      ip = "192.168.50.15";
      hostname = "forgejo.home.arpa";
      vmid = 915;
      resources = { cores = 2; memory = 2048; disk_gb = 64; };
      depends_on = [ "postgresql" "caddy" "authentik" ];
      tags = [ "dev" ];
      ports = [ 3000 2222 ];
      interface = {
        db = { host = "192.168.50.3"; name = "forgejo"; owner = "forgejo"; };
        auth = {
          type = "oidc";
          provider = "authentik";
          oidc.redirect_uris = [ "https://git.home.arpa/user/oauth2/authentik/callback" ];
        };
        proxy = { domain = "git.home.arpa"; upstream = "192.168.50.15:3000"; };
        health.readiness = "http://192.168.50.15:3000/api/healthz";
      };
    };

    # An application that depends on another application.
    woodpecker = {
      enable = true;
      ip = "192.168.50.16";
      hostname = "ci.home.arpa";
      vmid = 916;
      resources = { cores = 2; memory = 2048; disk_gb = 32; };
      depends_on = [ "forgejo" "postgresql" "caddy" ];
      tags = [ "dev" "ops" ];
      ports = [ 8000 ];
      interface = {
        db = { host = "192.168.50.3"; name = "woodpecker"; owner = "woodpecker"; };
        proxy = {
          domain = "woodpecker.home.arpa";
          upstream = "192.168.50.16:8000";
          auth = { type = "forward_auth"; provider = "authentik"; };
        };
        health.readiness = "http://192.168.50.16:8000/healthz";
      };
    };

    # Disabled: kept in the manifest, left out of the plan.
    mail = {
      enable = false;
      ip = "192.168.50.17";
      hostname = "mail.home.arpa";
      vmid = 917;
      depends_on = [ "postgresql" "caddy" "authentik" ];
      ports = [ 25 587 993 ];
      interface.health.startup = "systemctl is-active --quiet postfix";
    };
  };

  deployment_phases = {
    tf_infra = [ "dns" "postgresql" "caddy" "authentik" ];
    nix_core = [ "dns" "postgresql" "caddy" "authentik" ];
    tf_auth_core = [ "authentik" ];
    services = [ "vaultwarden" "guacamole" "monitoring" "media" "nextcloud" "forgejo" "woodpecker" ];
  };

  health_check_timeout = 600;
  retry_attempts = 5;
  retry_delay = 15;
  enable_rollback = true;
  enable_health_monitoring = true;
  enable_dependency_graphing = true;
  enable_deployment_logging = true;
}
