# The lab stack: the whole NixMox stack on one machine. Every address is a lab
# host: a network namespace `nixmox lab up` creates on the lab bridge
# (10.213.0.0/24, never routed off the machine).
{
  network = {
    domain = "nixmox.test";
    dns_server = "10.213.0.2";
    gateway = "10.213.0.1";
    network_cidr = "10.213.0.0/24";
    outposts.ldap.base_dn = "dc=nixmox,dc=test";
  };

  core_services = {
    dns = {
      ip = "10.213.0.2";
      hostname = "dns.nixmox.test";
      vmid = 9002;
      ports = [ 53 ];
      interface.health = {
        startup = "test -e /run/current-system";
        readiness = "tcp://10.213.0.2:53";
      };
    };
    # The database server, with an admin UI (pgAdmin's place): a core service
    # with an OIDC client of its own. Its secret comes from tf:auth-core,
    # which runs after the core, so this host is deployed again after it in
    # the same run; its liveness (checked by verify) needs that secret.
    postgresql = {
      ip = "10.213.0.3";
      hostname = "postgresql.nixmox.test";
      vmid = 9003;
      depends_on = [ "dns" ];
      ports = [ 5432 5050 ];
      interface = {
        auth = {
          type = "oidc";
          provider = "authentik";
          oidc = {
            client_id = "pgadmin-oidc";
            redirect_uris = [ "https://pgadmin.nixmox.test/oauth/callback" ];
          };
        };
        proxy = { domain = "pgadmin.nixmox.test"; upstream = "10.213.0.3:5050"; };
        health = {
          readiness = "tcp://10.213.0.3:5432";
          liveness = "http://10.213.0.3:5050/healthz";
          interval = 1;
          timeout = 60;
        };
      };
    };
    caddy = {
      ip = "10.213.0.4";
      hostname = "caddy.nixmox.test";
      vmid = 9004;
      depends_on = [ "dns" ];
      ports = [ 80 443 ];
      interface.health.readiness = "tcp://10.213.0.4:443";
    };
    # The identity provider, with the LDAP outpost network.outposts asks for:
    # the outpost's token is made by tf:auth-core, so this host too is
    # deployed again after it; its liveness is the outpost's ping, which
    # answers only once the token works.
    authentik = {
      ip = "10.213.0.5";
      hostname = "authentik.nixmox.test";
      vmid = 9005;
      depends_on = [ "postgresql" "caddy" ];
      ports = [ 9000 9300 ];
      # Its bootstrap token (the admin API's, which tf:auth-core uses too)
      # and the lab user's password, from the lab's SOPS file into the
      # host's env file, as real Authentik takes AUTHENTIK_BOOTSTRAP_*.
      nixos.env = {
        AUTHENTIK_BOOTSTRAP_TOKEN = { sops = "authentik.bootstrap_token"; };
        AUTHENTIK_BOOTSTRAP_PASSWORD = { sops = "authentik.labuser_password"; };
      };
      interface = {
        db = { host = "10.213.0.3"; name = "authentik"; owner = "authentik"; };
        proxy = { domain = "auth.nixmox.test"; upstream = "10.213.0.5:9000"; };
        health = {
          readiness = "http://10.213.0.5:9000/-/health/ready/";
          liveness = "http://10.213.0.5:9300/outpost.goauthentik.io/ping";
          interval = 1;
          timeout = 60;
        };
      };
    };
  };

  # The lab's own applications, and as many generated ones as ./scale.nix
  # asks for (none by default; see ./apps.nix).
  services = import ./apps.nix (import ./scale.nix) // {
    # Confidential OIDC client, its own database, one proxy.
    wiki = {
      version = "1.4";
      ip = "10.213.0.10";
      hostname = "wiki.nixmox.test";
      vmid = 9010;
      depends_on = [ "postgresql" "caddy" "authentik" ];
      tags = [ "docs" "web" ];
      ports = [ 8080 ];
      interface = {
        db = {
          host = "10.213.0.3";
          name = "wiki";
          owner = "wiki";
          mode = "native-migration";
          migrations = [ "migrations/wiki/001-pages.sql" ];
        };
        auth = {
          type = "oidc";
          provider = "authentik";
          oidc.redirect_uris = [ "https://docs.nixmox.test/oauth/callback" ];
        };
        proxy = { domain = "docs.nixmox.test"; upstream = "10.213.0.10:8080"; };
        health = {
          startup = "test -e /run/current-system";
          readiness = "http://10.213.0.10:8080/healthz";
          interval = 1;
          timeout = 60;
        };
      };
    };

    # Public OIDC client; depends on another application.
    notes = {
      version = "2.0";
      ip = "10.213.0.11";
      hostname = "notes.nixmox.test";
      vmid = 9011;
      depends_on = [ "postgresql" "caddy" "authentik" "wiki" ];
      tags = [ "docs" ];
      ports = [ 8080 ];
      interface = {
        dbs.notes = { host = "10.213.0.3"; name = "notes"; owner = "notes"; additionaldbs = [ "notes_search" ]; };
        auth = {
          type = "oidc";
          provider = "authentik";
          oidc = {
            client_type = "public";
            redirect_uris = [ "https://jot.nixmox.test/callback" ];
          };
        };
        proxy = { domain = "jot.nixmox.test"; upstream = "10.213.0.11:8080"; };
        health = {
          readiness = "http://10.213.0.11:8080/healthz";
          interval = 1;
          timeout = 60;
        };
      };
    };

    # Several routes: one behind forward auth, one with its own headers and Caddy snippet.
    dash = {
      version = "0.9";
      ip = "10.213.0.12";
      hostname = "dash.nixmox.test";
      vmid = 9012;
      depends_on = [ "caddy" "authentik" ];
      tags = [ "ops" ];
      ports = [ 8080 8081 ];
      interface = {
        proxy = {
          board = {
            domain = "board.nixmox.test";
            upstream = "10.213.0.12:8080";
            auth = { type = "forward_auth"; provider = "authentik"; };
          };
          metrics = {
            domain = "metrics.nixmox.test";
            path = "/metrics";
            upstream = "10.213.0.12:8081";
            headers = { "X-Lab" = "nixmox"; };
            extra_config = "encode gzip";
          };
        };
        health = {
          readiness = "http://10.213.0.12:8080/healthz";
          interval = 1;
          timeout = 60;
        };
      };
    };
  };

  # The lab's systems: examples/lab/flake.nix, built locally (nothing can be
  # fetched here, and the lab's builders use the host's tools).
  nixos = {
    flake = ".";
    nix_config = "experimental-features = nix-command flakes\nsubstituters =\nsandbox = false";
    # SQL as the superuser on the postgresql host, over its socket (peer auth).
    psql = "runuser -u postgres -- psql -h /var/lib/lab/pg-run";
    ssh = {
      key = "/var/lib/nixmox-lab/ssh/id_ed25519";
      known_hosts_file = "/var/lib/nixmox-lab/ssh/known_hosts";
    };
    # Every host gets the lab's age key (for sops-nix), as a secret.
    age_key_file = "/var/lib/nixmox-lab/secrets/age.key";
    age_key_target = "/var/lib/lab/sops-nix/key.txt";
  };

  # The lab's SOPS file, a section per service, encrypted to the lab's age
  # key; `nixmox lab up` makes both once. Values named { sops = "…"; } are
  # read from it, and Terraform outputs are written back into it.
  secrets = {
    sops_file = "/var/lib/nixmox-lab/secrets/lab.sops.yaml";
    age_key_file = "/var/lib/nixmox-lab/secrets/age.key";
  };

  verify = {
    # Proxy certificates chain to the lab's CA.
    ca_file = "/var/lib/nixmox-lab/ca/ca.crt";
    # `verify` logs in as the stand-in's lab user and runs each OIDC client's
    # whole authorization-code flow, with the password the lab's SOPS file
    # holds (the one the authentik host was given).
    # NIXMOX_VERIFY_PASSWORD, when set, wins over it.
    user = {
      username = "labuser";
      password_env = "NIXMOX_VERIFY_PASSWORD";
      password = { sops = "authentik.labuser_password"; };
      groups = [ "lab-admins" ];
    };
  };

  # `nixmox serve`: the stack in a browser. Its login goes through the
  # lab's identity provider: tf:auth-core registers nixmox's own client
  # (issuer /application/o/nixmox/, redirect URI <url>/auth/callback); only
  # members of lab-admins may log in. Reading is open on loopback.
  serve = {
    url = "http://127.0.0.1:8470";
    oidc = { client_id = "nixmox"; groups = [ "lab-admins" ]; };
  };

  terraform = {
    infra.modules = [ "terraform/infra" ];
    auth_core = {
      modules = [ "terraform/auth-core" ];
      # The admin API's token, from the lab's SOPS file.
      variables.authentik_token = { sops = "authentik.bootstrap_token"; };
    };
  };

  health_check_timeout = 120;
  retry_attempts = 30;
  retry_delay = 1;
}
